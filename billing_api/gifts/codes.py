"""Gift codes: unguessable, easy to read aloud and to type back.

A code is 16 characters from a 31-letter alphabet without look-alikes (no ``0/O``, ``1/I/L``):
about 79 random bits from :mod:`secrets`, shown in groups of four (``ABCD-EFGH-JKMN-PQRS``). It is
stored as shown, so the buyer can read it again; what a user types is normalised to that form
(case, spaces and dashes do not matter) and looked up by the unique index, never compared in
Python.
"""

from __future__ import annotations

import secrets

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # 31 letters: no 0/O, 1/I/L
LENGTH = 16
GROUP = 4


def new_code() -> str:
    """A fresh code, grouped for reading."""
    return _grouped("".join(secrets.choice(ALPHABET) for _ in range(LENGTH)))


def normalise(typed: str) -> str | None:
    """The stored form of what a user typed, or None when it cannot be a code."""
    letters = "".join(ch for ch in typed.upper() if ch not in " -\t")
    if len(letters) != LENGTH or any(ch not in ALPHABET for ch in letters):
        return None
    return _grouped(letters)


def _grouped(letters: str) -> str:
    return "-".join(letters[i : i + GROUP] for i in range(0, len(letters), GROUP))


def redeem_url(account_url: str, code: str) -> str:
    """The link in the recipient's email: the account page's gifts view with the code filled in
    (``{BILLING_ACCOUNT_URL}/gifts?code=…``), where a signed-in user redeems it."""
    return f"{account_url.rstrip('/')}/gifts?code={code}"
