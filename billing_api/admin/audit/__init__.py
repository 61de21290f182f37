"""The audit trail of back-office changes: who changed what, when, and what it looked like before
and after."""
