"""Price quotes: months-count tiers, personal discounts and promo codes, as pure functions."""
