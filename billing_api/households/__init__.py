"""Households: an owner shares a live subscription with the people they invite."""
