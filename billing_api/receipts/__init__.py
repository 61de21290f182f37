"""Receipts: a numbered record of every captured payment and every succeeded refund.

Numbers (``2026-000123``) are gapless per year and given by the database, not by this package:
deferred constraint triggers on ``payment`` and ``refund`` (migration ``0019_receipts``) insert
the ``receipt`` row at COMMIT of the very transaction that moved the money, whichever code path
did it (checkout, wallet, set-based renewals, plan changes, top-ups, refunds). A rolled-back
transaction consumes no number; the per-year counter row's lock serialises numbering and is the
last lock a transaction takes. Zero-amount payments (trials, card updates, free orders) have no
receipt.

Here: :mod:`.service` loads what a receipt shows, :mod:`.render` writes it as HTML or PDF in
Russian or English, :mod:`.api` serves it, :mod:`.links` signs the links emails carry.
"""
