"""The admin UI's login: an admin JWT or the configured username and password, a signed session
cookie scoped to ``/admin``, and same-origin checks on every request that changes something."""

from __future__ import annotations

import hmac
import time
from typing import Any
from urllib.parse import urlsplit

from sqladmin.authentication import AuthenticationBackend
from starlette.requests import Request

from billing_api.config import AdminUISettings
from shared.auth import TokenVerifier
from shared.errors import AppError

SESSION_KEY = "billing_admin"


class AdminLogin(AuthenticationBackend):
    def __init__(self, settings: AdminUISettings, verifier: TokenVerifier) -> None:
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

    async def _who(self, username: str, password: str) -> str | None:
        if password.count(".") == 2:  # a JWT: only its subject with the admin role gets in
            try:
                principal = await self.verifier.verify_async(password)
            except AppError:
                return None
            return principal.subject if principal.is_admin else None
        wanted_user, wanted_password = self.settings.username, self.settings.password
        if not wanted_user or wanted_password is None:
            return None
        same_user = hmac.compare_digest(username.encode(), wanted_user.encode())
        same_password = hmac.compare_digest(
            password.encode(), wanted_password.get_secret_value().encode()
        )
        return f"ui:{wanted_user}" if same_user and same_password else None

    async def login(self, request: Request) -> bool:
        form = await request.form()
        username, password = form.get("username", ""), form.get("password", "")
        if not isinstance(username, str) or not isinstance(password, str):
            return False
        actor = await self._who(username.strip(), password.strip())
        if actor is None:
            return False
        request.session.clear()
        request.session.update(
            {"actor": actor, "until": time.time() + self.settings.session_hours * 3600}
        )
        return True

    async def logout(self, request: Request) -> bool:
        request.session.clear()
        return True

    async def authenticate(self, request: Request) -> bool:
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            return False
        until = request.session.get("until")
        return (
            bool(request.session.get("actor")) and isinstance(until, float) and until > time.time()
        )

    async def get_user_id(self, request: Request) -> Any:
        return request.session.get("actor")


def _same_origin(request: Request) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"
