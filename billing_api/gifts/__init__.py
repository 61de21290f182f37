"""Gift subscriptions: bought like any order, redeemed by code into a subscription."""
