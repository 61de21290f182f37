"""Refunds: quoting what can be given back, refunding to the card or the wallet, and the
gateway's refund and dispute events."""
