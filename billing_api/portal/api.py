"""``POST /api/v1/portal-sessions``: an app asks for a link that opens the customer portal."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit
from uuid import UUID

from fastapi import APIRouter, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from billing_api.deps import SessionDep, SettingsDep
from billing_api.portal import sessions
from shared import locales
from shared.auth import CurrentPrincipal
from shared.errors import Forbidden, UnprocessableEntity

router = APIRouter(prefix="/api/v1", tags=["portal"])


def _web_address(url: str) -> str:
    """Only an absolute http(s) address: the portal links back to it, and a ``javascript:``
    or relative one would be a way into the page."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("return_url must be an absolute http or https URL")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValueError("return_url must not contain spaces or control characters")
    return url


def _our_language(tag: str) -> str:
    language = locales.language_of(tag)
    if language is None:
        raise ValueError(f"locale must be one of {', '.join(locales.LOCALES)}")
    return language


class PortalSessionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"return_url": "https://cinema.example/account", "locale": "en"}]
        },
    )

    user_id: UUID | None = Field(
        None,
        description="Whose portal: required with a service token; with a user's own token it "
        "may only name that user.",
    )
    return_url: Annotated[str, AfterValidator(_web_address)] | None = Field(
        None,
        max_length=2000,
        description="Where the portal's 'back to the app' link leads (absolute http(s) URL).",
    )
    locale: Annotated[str, AfterValidator(_our_language)] | None = Field(
        None,
        min_length=2,
        max_length=35,
        description="ru or en (a region such as en-US is reduced to its language); unset: "
        "the browser's Accept-Language, else ru.",
    )


class PortalSessionOut(BaseModel):
    url: str = Field(description="Open once in a browser, before expires_at.")
    expires_at: datetime


class UserIdRequired(UnprocessableEntity):
    default_detail = "a service token must name the user: send user_id"


@router.post(
    "/portal-sessions",
    response_model=PortalSessionOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        403: {"description": "A user's token naming another user."},
        422: {"description": "A service token without user_id, or a bad return_url or locale."},
    },
)
async def create_portal_session(
    body: PortalSessionIn, principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep
) -> PortalSessionOut:
    """A single-use link that opens the customer portal in a browser for a few minutes."""
    if principal.is_service:
        if body.user_id is None:
            raise UserIdRequired()
        user_id = body.user_id
        email = await sessions.known_email(session, user_id)
    elif principal.user_id is None:
        raise Forbidden("this endpoint is for end users and services")
    elif body.user_id is not None and body.user_id != principal.user_id:
        raise Forbidden("a user's token opens that user's portal only")
    else:
        user_id, email = principal.user_id, principal.email
    link = await sessions.create_link(
        session,
        settings,
        user_id=user_id,
        email=email,
        locale=body.locale,
        return_url=body.return_url,
    )
    return PortalSessionOut(url=link.url, expires_at=link.expires_at)
