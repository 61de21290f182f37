"""What each back-office role may do, decided here once for the admin API and the admin UI.

The roles are cumulative, each one everything the one before may do and more:

- ``viewer`` reads customers, money, the catalog and the audit trail;
- ``support`` also refunds up to ``BILLING_ADMIN_SUPPORT_REFUND_LIMIT`` of a payment and makes
  customer-care changes (complimentary grants and their revocation, gift revocation, household
  member removal);
- ``finance`` also reads revenue reports and exports, and refunds any amount;
- ``admin`` also edits the catalog and discounts and manages staff accounts.

A staff account has one role; a JWT may carry several (its rights are their union) and is
judged by the same functions, so an ``admin`` token keeps every right it always had.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from shared.auth.principal import ADMIN_ROLE

VIEWER = "viewer"
SUPPORT = "support"
FINANCE = "finance"
ADMIN = ADMIN_ROLE
STAFF_ROLES: tuple[str, ...] = (VIEWER, SUPPORT, FINANCE, ADMIN)
"""From the fewest rights to the most."""


class Right(StrEnum):
    READ = "read"
    REFUND_UP_TO_LIMIT = "refund_up_to_limit"
    REFUND_ANY = "refund_any"
    GRANT = "grant"
    REPORT = "report"
    EDIT_CATALOG = "edit_catalog"
    MANAGE_STAFF = "manage_staff"


_ADDED: dict[str, frozenset[Right]] = {
    VIEWER: frozenset({Right.READ}),
    SUPPORT: frozenset({Right.REFUND_UP_TO_LIMIT, Right.GRANT}),
    FINANCE: frozenset({Right.REFUND_ANY, Right.REPORT}),
    ADMIN: frozenset({Right.EDIT_CATALOG, Right.MANAGE_STAFF}),
}
RIGHTS: dict[str, frozenset[Right]] = {
    role: frozenset().union(*(_ADDED[lower] for lower in STAFF_ROLES[: index + 1]))
    for index, role in enumerate(STAFF_ROLES)
}
"""Each role's rights: its own and those of every role below it."""

REPORT_ROLES = frozenset(role for role, rights in RIGHTS.items() if Right.REPORT in rights)


def rights_of(roles: Iterable[str]) -> frozenset[Right]:
    """The union of the rights of ``roles``; roles that are not staff roles give none."""
    return frozenset().union(*(RIGHTS.get(role, frozenset()) for role in roles))


def can_read(roles: Iterable[str]) -> bool:
    return Right.READ in rights_of(roles)


def can_refund_at_all(roles: Iterable[str]) -> bool:
    rights = rights_of(roles)
    return Right.REFUND_ANY in rights or Right.REFUND_UP_TO_LIMIT in rights


def refund_limit(roles: Iterable[str], support_limit: int) -> int | None:
    """The largest refund ``roles`` may make, in minor units; ``None``: any amount."""
    rights = rights_of(roles)
    if Right.REFUND_ANY in rights:
        return None
    return support_limit if Right.REFUND_UP_TO_LIMIT in rights else 0


def can_refund(roles: Iterable[str], amount: int, *, support_limit: int) -> bool:
    limit = refund_limit(roles, support_limit)
    return can_refund_at_all(roles) and (limit is None or amount <= limit)


def can_grant(roles: Iterable[str]) -> bool:
    return Right.GRANT in rights_of(roles)


def can_report(roles: Iterable[str]) -> bool:
    return Right.REPORT in rights_of(roles)


def can_edit_catalog(roles: Iterable[str]) -> bool:
    return Right.EDIT_CATALOG in rights_of(roles)


def can_manage_staff(roles: Iterable[str]) -> bool:
    return Right.MANAGE_STAFF in rights_of(roles)
