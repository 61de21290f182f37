"""The admin UI's login: a staff account's email and password (the usual way), the configured
username and password, or a pasted JWT with a staff role (for service setups; off in production
unless ``BILLING_ADMIN_JWT_LOGIN`` turns it on). A signed session cookie scoped to ``/admin``
keeps who logged in and their roles; same-origin checks guard every request that changes
something."""

from __future__ import annotations

import hmac
import time
from typing import Any
from urllib.parse import urlsplit

from sqladmin.authentication import AuthenticationBackend
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from billing_api.admin import roles
from billing_api.admin.staff import service as staff
from billing_api.config import AdminUISettings
from shared import clock
from shared.auth import TokenVerifier
from shared.errors import AppError

SESSION_KEY = "billing_admin"
LOGIN_PROBLEM = "staff_login_problem"
"""``request.state`` attribute: why a login was refused, when it is not the password."""


class AdminLogin(AuthenticationBackend):
    def __init__(
        self,
        settings: AdminUISettings,
        verifier: TokenVerifier,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        super().__init__(
            settings.session_secret.get_secret_value(),
            session_cookie=SESSION_KEY,
            max_age=settings.session_hours * 3600,
            path="/admin",
            same_site="strict",
            https_only=settings.secure_cookie,
        )
        self.settings = settings
        self.verifier = verifier
        self.sessions = sessions

    async def _by_token(self, token: str) -> tuple[str, list[str]] | None:
        """A JWT's subject and its staff roles, when it has any."""
        try:
            principal = await self.verifier.verify_async(token)
        except AppError:
            return None
        staff_roles = [role for role in roles.STAFF_ROLES if role in principal.roles]
        return (principal.subject, staff_roles) if roles.can_read(staff_roles) else None

    async def _by_configured_pair(
        self, request: Request, username: str, password: str
    ) -> tuple[str, list[str]] | None:
        """The built-in pair, under the same failed-login limit as staff accounts."""
        wanted_user, wanted_password = self.settings.username, self.settings.password
        if not wanted_user or wanted_password is None:
            return None
        ip, now, login = _address(request), clock.now(), f"ui:{username}"
        async with self.sessions() as session, session.begin():  # failures are kept too
            waiting = await staff.throttled(session, self.settings, login=login, ip=ip, now=now)
            if waiting is not None:
                _say_wait(request, waiting)
                return None
            same_user = hmac.compare_digest(username.encode(), wanted_user.encode())
            same_password = hmac.compare_digest(
                password.encode(), wanted_password.get_secret_value().encode()
            )
            if same_user and same_password:
                return f"ui:{wanted_user}", [roles.ADMIN]
            await staff.record_failure(session, self.settings, login=login, ip=ip, now=now)
            return None

    async def _by_account(
        self, request: Request, email: str, password: str
    ) -> tuple[str, list[str]] | None:
        async with self.sessions() as session, session.begin():  # failures are kept too
            found = await staff.log_in(
                session,
                self.settings,
                email=email,
                password=password,
                ip=_address(request),
                now=clock.now(),
            )
        if isinstance(found, staff.LoginThrottled):
            _say_wait(request, found)
            return None
        return None if found is None else (found.email, [found.role])

    async def _who(
        self, request: Request, username: str, password: str
    ) -> tuple[str, list[str]] | None:
        if password.strip().count(".") == 2 and not username:  # a pasted JWT
            if not self.settings.jwt_login_enabled:
                return None
            return await self._by_token(password.strip())
        if "@" not in username:
            return await self._by_configured_pair(request, username, password.strip())
        return await self._by_account(request, username, password)

    async def login(self, request: Request) -> bool:
        form = await request.form()
        username, password = form.get("username", ""), form.get("password", "")
        if not isinstance(username, str) or not isinstance(password, str):
            return False
        who = await self._who(request, username.strip(), password)
        if who is None:
            return False
        actor, staff_roles = who
        request.session.clear()
        request.session.update(
            {
                "actor": actor,
                "roles": staff_roles,
                "until": time.time() + self.settings.session_hours * 3600,
            }
        )
        return True

    async def logout(self, request: Request) -> bool:
        request.session.clear()
        return True

    async def authenticate(self, request: Request) -> bool:
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            return False
        until = request.session.get("until")
        actor = request.session.get("actor")
        if not (isinstance(actor, str) and actor and isinstance(until, float)):
            return False
        if until <= time.time():
            return False
        if "@" in actor:  # a staff account's session follows the account as it is now
            return await self._account_still_holds(request, actor)
        return True

    async def _account_still_holds(self, request: Request, email: str) -> bool:
        """A deactivated account is logged out at its next request, and a changed role applies
        at once, not when the session's hours run out."""
        async with self.sessions() as session:
            user = await staff.active_user(session, email)
        if user is None:
            request.session.clear()
            return False
        request.session["roles"] = [user.role]
        return True

    async def get_user_id(self, request: Request) -> Any:
        return request.session.get("actor")


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _say_wait(request: Request, waiting: staff.LoginThrottled) -> None:
    message = f"Too many failed logins. Wait {waiting.minutes} minutes and try again."
    setattr(request.state, LOGIN_PROBLEM, message)


def _same_origin(request: Request) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"
