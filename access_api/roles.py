"""Role sync: bring the auth service's roles for a user in line with the user's active grants.

The rule: a user should hold exactly the roles of their grants still valid now (``desired``), among
the roles billing manages (``managed``: every plan's role, every role we granted before, every
role in the user's grants). So the syncer grants each desired role and revokes each managed role
that is not desired; roles billing never manages (``moderator``, ``admin``…) are never touched.

It is idempotent: every call states the end result (``POST`` a role, ``DELETE`` a role), and
"already there" (409) or "already gone" (404) count as success, so a retry after a timeout or a
crash half-way through repeats harmless calls and converges to the same state.

The projection only marks users due (:func:`schedule`, or :func:`schedule_many` for a batch: one
upsert in its own transaction); the syncer claims due rows with ``SKIP LOCKED`` and moves their
``due_at`` forward by a lease before any network call, so no lock is held while the auth service
answers. A user rescheduled meanwhile keeps the earlier time, and a user whose role merely expires
is due again at that ``valid_until``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from access_api.config import SERVICE, AccessSettings
from access_api.models import PlanCoverage, RoleSync, UserGrants
from shared import clock
from shared.auth import AuthSettings, mint_service_token

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
"""How long a claimed user is hidden from other syncers; a crashed sync is retried after it."""
MAX_BACKOFF = timedelta(minutes=5)
BATCH_SIZE = 100


def role_sync_enabled(settings: AccessSettings) -> bool:
    """Role sync runs only when the auth service's URL is configured."""
    return bool(settings.auth_url)


def _valid_until(grant: Mapping[str, Any]) -> datetime | None:
    value = grant.get("valid_until")
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def desired_roles(grants: Sequence[Mapping[str, Any]], now: datetime) -> set[str]:
    """Roles of the grants still valid at ``now``."""
    return {
        grant["role"]
        for grant in grants
        if grant.get("role") and ((until := _valid_until(grant)) is None or until > now)
    }


def next_change(grants: Sequence[Mapping[str, Any]], now: datetime) -> datetime | None:
    """When a role must be revoked by time alone: the earliest future ``valid_until`` of a role."""
    ends = [
        until
        for grant in grants
        if grant.get("role") and (until := _valid_until(grant)) is not None and until > now
    ]
    return min(ends, default=None)


def backoff(attempts: int) -> timedelta:
    """1 s, 2 s, 4 s… after the 1st, 2nd, 3rd failure, at most :data:`MAX_BACKOFF`."""
    return min(timedelta(seconds=2 ** min(max(attempts - 1, 0), 20)), MAX_BACKOFF)


async def schedule(session: AsyncSession, user_id: UUID, *, at: datetime) -> None:
    """Make the user due at ``at`` or earlier; one upsert, no network."""
    await schedule_many(session, [user_id], at=at)


async def schedule_many(session: AsyncSession, user_ids: Sequence[UUID], *, at: datetime) -> None:
    """:func:`schedule` for several users in one upsert (rows locked in the order given)."""
    users = sa.func.unnest(sa.bindparam("user_ids", list(user_ids), type_=ARRAY(sa.Uuid)))
    statement = insert(RoleSync).from_select(
        ["user_id", "due_at", "attempts", "synced_roles"],
        sa.select(
            users,
            sa.literal(at, sa.DateTime(timezone=True)),
            sa.literal(0),
            sa.literal([], ARRAY(sa.String(100))),
        ),
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[RoleSync.user_id],
            # LEAST ignores NULL: a user with nothing pending becomes due at ``at``.
            set_={"due_at": sa.func.least(RoleSync.due_at, statement.excluded.due_at)},
        )
    )


class RoleCallRejected(Exception):
    """The auth service answered a role call with an unexpected status."""


class RoleSyncer:
    """Claims due users and converges their roles in the auth service."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        settings: AccessSettings,
        auth_settings: AuthSettings,
    ) -> None:
        if not role_sync_enabled(settings):
            raise ValueError("role sync needs ACCESS_AUTH_URL")
        self._sessions = sessions
        self._http = http
        self._settings = settings
        self._auth_settings = auth_settings
        self._token: tuple[str, datetime] | None = None

    async def run(self) -> None:
        """Sync due users forever; a full batch is followed at once by the next one."""
        while True:
            handled = 0
            try:
                handled = await self.sync_due()
            except Exception:
                logger.exception("role sync failed; retrying")
            if handled < BATCH_SIZE:
                await asyncio.sleep(self._settings.role_sync_interval_seconds)

    async def sync_due(self, now: datetime | None = None, *, limit: int = BATCH_SIZE) -> int:
        """Sync up to ``limit`` due users, one at a time; the number of users handled."""
        now = now or clock.now()
        async with self._sessions.begin() as session:
            plan_roles = {
                role
                for role in await session.scalars(sa.select(PlanCoverage.role).distinct())
                if role
            }
        handled = 0
        while handled < limit and await self._sync_next(now, plan_roles):
            handled += 1
        return handled

    async def _sync_next(self, now: datetime, plan_roles: set[str]) -> bool:
        lease = now + LEASE
        claimed = await self._claim(now, lease)
        if claimed is None:
            return False
        user_id, synced, attempts, grants = claimed
        desired = desired_roles(grants, now)
        managed = {*plan_roles, *synced, *(g["role"] for g in grants if g.get("role"))}
        values: dict[str, Any]
        try:
            await self._converge(user_id, desired, managed - desired)
        except Exception as exc:  # one user's failure never stops the others
            logger.warning("role sync of user %s failed (try %d): %r", user_id, attempts + 1, exc)
            next_due: datetime | None = now + backoff(attempts + 1)
            # Some roles may have been granted before the failure: keep them managed (revocable).
            synced_roles = sorted({*synced, *desired})
            values = {"attempts": attempts + 1, "last_error": repr(exc)[:500]}
        else:
            next_due = next_change(grants, now)
            synced_roles = sorted(desired)
            values = {"attempts": 0, "last_error": None, "synced_at": now}
        async with self._sessions.begin() as session:
            # Still our lease: set the next time. Rescheduled meanwhile: keep the earlier time.
            due_at = sa.case(
                (RoleSync.due_at == lease, next_due),
                else_=sa.func.least(RoleSync.due_at, next_due),
            )
            await session.execute(
                sa.update(RoleSync)
                .where(RoleSync.user_id == user_id)
                .values(due_at=due_at, synced_roles=synced_roles, **values)
            )
        return True

    async def _claim(
        self, now: datetime, lease: datetime
    ) -> tuple[UUID, list[str], int, list[dict[str, Any]]] | None:
        """Take the most overdue unlocked user, hiding it from other syncers until ``lease``."""
        async with self._sessions.begin() as session:
            due = (
                sa.select(RoleSync.user_id)
                .where(RoleSync.due_at <= now)
                .order_by(RoleSync.due_at)
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            claimed = (
                await session.execute(
                    sa.update(RoleSync)
                    .where(RoleSync.user_id == due)
                    .values(due_at=lease)
                    .returning(RoleSync.user_id, RoleSync.synced_roles, RoleSync.attempts)
                )
            ).one_or_none()
            if claimed is None:
                return None
            grants = await session.scalar(
                sa.select(UserGrants.grants).where(UserGrants.user_id == claimed.user_id)
            )
        return claimed.user_id, claimed.synced_roles, claimed.attempts, grants or []

    async def _converge(self, user_id: UUID, grant: set[str], revoke: set[str]) -> None:
        url = self._settings.auth_url or ""
        roles_url = url.rstrip("/") + self._settings.auth_roles_path.format(user_id=user_id)
        headers = {"Authorization": f"Bearer {self._bearer()}"}
        for role in sorted(grant):
            response = await self._http.post(roles_url, json={"role": role}, headers=headers)
            _check(response, tolerated=409)
        for role in sorted(revoke):
            response = await self._http.delete(
                f"{roles_url}/{quote(role, safe='')}", headers=headers
            )
            _check(response, tolerated=404)

    def _bearer(self) -> str:
        if self._settings.auth_token is not None:
            return self._settings.auth_token.get_secret_value()
        minted_at = clock.now()
        if self._token is None or self._token[1] <= minted_at:
            ttl = self._auth_settings.internal_token_ttl_seconds
            token = mint_service_token(self._auth_settings, SERVICE)
            # Renew at half its life, so a token never expires during a slow call.
            self._token = (token, minted_at + timedelta(seconds=ttl / 2))
        return self._token[0]


def _check(response: httpx.Response, *, tolerated: int) -> None:
    if not (response.is_success or response.status_code == tolerated):
        raise RoleCallRejected(
            f"{response.request.method} {response.request.url.path}: {response.status_code}"
        )
