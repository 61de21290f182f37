"""The access decision as a pure function of a user's grants, the plans and ``now``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True, slots=True)
class PlanInfo:
    code: str
    all_movies: bool
    movie_ids: frozenset[UUID]
    role: str | None
    active: bool

    def covers(self, movie_id: UUID) -> bool:
        return self.active and (self.all_movies or movie_id in self.movie_ids)


@dataclass(frozen=True, slots=True)
class PlanGrant:
    plan_id: UUID
    source: str
    valid_until: datetime | None


@dataclass(frozen=True, slots=True)
class UserAccess:
    """One user's grants, shaped for lookups: purchases by movie, plan grants in a list."""

    purchases: Mapping[UUID, datetime | None]  # movie → valid until (None: forever)
    plan_grants: tuple[PlanGrant, ...]
    grants: tuple[Mapping[str, Any], ...]  # as received, for the grants view

    @classmethod
    def from_grants(cls, grants: Sequence[Mapping[str, Any]]) -> UserAccess:
        purchases: dict[UUID, datetime | None] = {}
        plan_grants = []
        for grant in grants:
            until = parse_moment(grant.get("valid_until"))
            if grant.get("movie_id"):
                movie = UUID(str(grant["movie_id"]))
                known = purchases.get(movie, until)
                # Several purchases of one movie: the longest wins (None is forever).
                purchases[movie] = None if known is None or until is None else max(known, until)
            elif grant.get("plan_id"):
                plan_grants.append(
                    PlanGrant(UUID(str(grant["plan_id"])), str(grant["source"]), until)
                )
        return cls(purchases, tuple(plan_grants), tuple(grants))


EMPTY = UserAccess({}, (), ())


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    source: str | None
    plan_codes: tuple[str, ...]
    valid_until: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "source": self.source,
            "plan_codes": list(self.plan_codes),
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
        }


DENIED = Decision(False, None, (), None)


def parse_moment(value: Any) -> datetime | None:
    """A timestamp from a snapshot (ISO text) or already parsed."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return None if a is None or b is None else max(a, b)


def decide(
    access: UserAccess, plans: Mapping[UUID, PlanInfo], movie_id: UUID, now: datetime
) -> Decision:
    """May the user watch ``movie_id`` at ``now``, through which grant, and until when."""
    source: str | None = None
    until: datetime | None = now  # placeholder until a grant matches
    codes: list[str] = []
    if movie_id in access.purchases:
        bought_until = access.purchases[movie_id]
        if bought_until is None or bought_until > now:
            source, until = "purchase", bought_until
    for grant in access.plan_grants:
        if grant.valid_until is not None and grant.valid_until <= now:
            continue
        plan = plans.get(grant.plan_id)
        if plan is None or not plan.covers(movie_id):
            continue
        codes.append(plan.code)
        if source is None:
            source, until = grant.source, grant.valid_until
        else:
            until = _later(until, grant.valid_until)
    if source is None:
        return DENIED
    return Decision(True, source, tuple(sorted(set(codes))), until)
