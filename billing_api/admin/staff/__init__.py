"""Back-office staff accounts: who they are, how they log in, and the CLI that creates them."""
