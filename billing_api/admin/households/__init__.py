"""Back office: households — find them by code or email, remove a member."""
