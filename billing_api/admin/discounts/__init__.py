"""Back-office discounts: months-count tiers, personal discounts and promo codes."""
