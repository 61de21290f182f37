"""Back-office view of customers: who they are, what they have and paid, refunds and gifts."""
