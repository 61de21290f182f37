"""Staff accounts: creating and managing one, and checking a login with the failed-login limit.

Accounts are managed from the command line (``cinema admin …``): create, change the role,
deactivate (its back-office session ends at its next request), activate again, set a new
password (which also clears its failed logins), list. A role change applies at the account's next
request too (:mod:`billing_api.admin.ui.login`).

Passwords are kept as Argon2id hashes (argon2-cffi's defaults, RFC 9106's second recommended
profile); a login for an unknown email still runs one verification, so the answer takes as long
whether or not the address has an account. Every failed login is a row of
``staff_login_failure``; with ``login_max_failures`` of them for the email, or
``login_max_failures_per_ip`` from the client's address, within the window, the next logins are
refused before the password is even looked at, until the oldest of them leaves the window.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from billing_api.admin import roles
from billing_api.config import AdminUISettings
from billing_api.models import StaffLoginFailure, StaffUser
from shared.errors import AppError, Conflict, NotFound

MIN_PASSWORD_LENGTH = 12
_hasher = PasswordHasher()
_DECOY_HASH = _hasher.hash("a password nobody has: compared when the email has no account")


class StaffEmailTaken(Conflict):
    default_detail = "a staff account with this email exists already"


class StaffAccountInvalid(AppError):
    status_code = 422
    default_detail = "the staff account is not valid"


class StaffUserNotFound(NotFound):
    default_detail = "no staff account has this email"


@dataclass(frozen=True, slots=True)
class LoginThrottled:
    """Too many failed logins lately: the page asks to wait ``minutes``."""

    minutes: int


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _check_role(role: str) -> None:
    if role not in roles.STAFF_ROLES:
        raise StaffAccountInvalid(f"unknown role {role!r}: one of {', '.join(roles.STAFF_ROLES)}")


async def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffAccountInvalid(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    return await asyncio.to_thread(_hasher.hash, password)


async def create_user(session: AsyncSession, *, email: str, role: str, password: str) -> StaffUser:
    """A new active staff account; the password is hashed here and never kept in clear."""
    address = normalize_email(email)
    if "@" not in address or len(address) > 320 or any(c.isspace() for c in address):
        raise StaffAccountInvalid(f"not an email address: {email!r}")
    _check_role(role)
    password_hash = await _hash(password)
    taken = await session.scalar(sa.select(StaffUser.id).where(StaffUser.email == address))
    if taken is not None:
        raise StaffEmailTaken(f"{address} has a staff account already")
    user = StaffUser(email=address, password_hash=password_hash, role=role, active=True)
    session.add(user)
    await session.flush()
    return user


async def _account(session: AsyncSession, email: str) -> StaffUser:
    """The account of ``email`` (active or not), locked for the change."""
    user = await session.scalar(
        sa.select(StaffUser).where(StaffUser.email == normalize_email(email)).with_for_update()
    )
    if user is None:
        raise StaffUserNotFound(f"no staff account has the email {normalize_email(email)}")
    return user


async def set_role(session: AsyncSession, *, email: str, role: str) -> StaffUser:
    """Give the account another role (it applies at the account's next request)."""
    _check_role(role)
    user = await _account(session, email)
    user.role = role
    await session.flush()
    return user


async def set_active(session: AsyncSession, *, email: str, active: bool) -> StaffUser:
    """Deactivate the account (it cannot log in, and its session ends at its next request),
    or let it log in again."""
    user = await _account(session, email)
    user.active = active
    await session.flush()
    return user


async def set_password(session: AsyncSession, *, email: str, password: str) -> StaffUser:
    """A new password for the account; its failed logins are forgotten, so it may log in now."""
    password_hash = await _hash(password)
    user = await _account(session, email)
    user.password_hash = password_hash
    await session.execute(sa.delete(StaffLoginFailure).where(StaffLoginFailure.email == user.email))
    await session.flush()
    return user


async def list_users(session: AsyncSession) -> list[StaffUser]:
    """Every staff account, by email."""
    return list(await session.scalars(sa.select(StaffUser).order_by(StaffUser.email)))


async def active_user(session: AsyncSession, email: str) -> StaffUser | None:
    """The active account of ``email``; ``None`` when it has none or it was deactivated."""
    return await session.scalar(
        sa.select(StaffUser).where(
            StaffUser.email == normalize_email(email), StaffUser.active.is_(True)
        )
    )


async def _failures_since(
    session: AsyncSession, column: InstrumentedAttribute[str], value: str, since: datetime
) -> int:
    count = await session.scalar(
        sa.select(sa.func.count())
        .select_from(StaffLoginFailure)
        .where(column == value, StaffLoginFailure.failed_at > since)
    )
    return int(count or 0)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def throttled(
    session: AsyncSession, settings: AdminUISettings, *, login: str, ip: str, now: datetime
) -> LoginThrottled | None:
    """Whether ``login`` (an email or the configured username) or ``ip`` failed too often within
    the window: then the next attempt is refused before any password is looked at.

    Attempts on the same login, or from the same address, wait for each other here (transaction
    advisory locks, the login's first, held until the failure is written): counted side by side,
    a burst of guesses sent at once would all find the count below the limit."""
    for key in (f"staff-login:{login}", f"staff-login-ip:{ip}"):
        await session.execute(
            sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(key, 0)))
        )
    since = now - timedelta(minutes=settings.login_window_minutes)
    by_login = await _failures_since(session, StaffLoginFailure.email, login, since)
    by_ip = await _failures_since(session, StaffLoginFailure.ip, ip, since)
    if by_login >= settings.login_max_failures or by_ip >= settings.login_max_failures_per_ip:
        return LoginThrottled(settings.login_window_minutes)
    return None


async def record_failure(
    session: AsyncSession, settings: AdminUISettings, *, login: str, ip: str, now: datetime
) -> None:
    """Count one failed login (and forget those the window has passed)."""
    since = now - timedelta(minutes=settings.login_window_minutes)
    await session.execute(sa.delete(StaffLoginFailure).where(StaffLoginFailure.failed_at <= since))
    session.add(StaffLoginFailure(email=login[:320], ip=ip[:64], failed_at=now))
    await session.flush()


async def log_in(
    session: AsyncSession,
    settings: AdminUISettings,
    *,
    email: str,
    password: str,
    ip: str,
    now: datetime,
) -> StaffUser | LoginThrottled | None:
    """The active account ``email`` and ``password`` name, ``None`` when they name none (the
    failure is counted), or :class:`LoginThrottled` when this email or address failed too often
    within the window (nothing is checked then). The caller commits either way."""
    address = normalize_email(email)[:320]
    waiting = await throttled(session, settings, login=address, ip=ip, now=now)
    if waiting is not None:
        return waiting
    user = await session.scalar(sa.select(StaffUser).where(StaffUser.email == address))
    matches = await asyncio.to_thread(
        _verify, _DECOY_HASH if user is None else user.password_hash, password
    )
    if user is None or not matches or not user.active:
        await record_failure(session, settings, login=address, ip=ip, now=now)
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = await asyncio.to_thread(_hasher.hash, password)
    user.last_login_at = now
    await session.execute(sa.delete(StaffLoginFailure).where(StaffLoginFailure.email == address))
    await session.flush()
    return user
