"""Who a portal request acts for, and how a portal form acts: with its CSRF token, once.

Every page renders its forms with the session's CSRF token and a fresh per-render key
(``form_key``). Sending a form claims its key in ``portal_form_submission`` in the action's own
transaction: a form sent twice (a double click, a reload after the POST, the back button) finds
the key taken and is sent where the first one went, without acting again. An action that fails
rolls its claim back with everything else, so the same form may then be sent again.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.deps import SettingsDep
from billing_api.models import PortalFormSubmission
from billing_api.portal import csrf, sessions
from billing_api.portal.sessions import PortalSession
from shared.errors import Forbidden, Unauthorized, UnprocessableEntity

KEY_FIELD = "form_key"


class NoPortalSession(Unauthorized):
    default_detail = "no portal session: open a new portal link from the app"


class CsrfRefused(Forbidden):
    default_detail = "the form's CSRF token is missing or wrong; nothing was changed"


class FormIncomplete(UnprocessableEntity):
    default_detail = "the form is missing its key; open the page again"


async def current_session(request: Request, settings: SettingsDep) -> PortalSession:
    found = sessions.read_session(settings, request.cookies.get(sessions.COOKIE))
    if found is None:
        raise NoPortalSession()
    return found


PortalDep = Annotated[PortalSession, Depends(current_session)]


class SentForm:
    """A POSTed portal form whose CSRF token held."""

    def __init__(self, fields: dict[str, str], key: str) -> None:
        self.fields = fields
        self.key = key

    def get(self, name: str) -> str | None:
        return self.fields.get(name)


async def sent_form(request: Request, portal: PortalDep, settings: SettingsDep) -> SentForm:
    """The form, once its CSRF token is checked (403 before anything is read or changed)."""
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    if not csrf.is_valid(settings, portal.link_id, fields.get(csrf.FIELD)):
        raise CsrfRefused()
    key = fields.get(KEY_FIELD, "")
    if not 16 <= len(key) <= 64:
        raise FormIncomplete()
    return SentForm(fields, key)


FormDep = Annotated[SentForm, Depends(sent_form)]


def new_key() -> str:
    return secrets.token_urlsafe(24)


Action = Callable[[], Awaitable[str]]


async def act_once(
    session: AsyncSession, portal: PortalSession, form: SentForm, action: Action
) -> RedirectResponse:
    """Run ``action`` (which answers where to send the browser) unless this form acted already;
    either way answer 303 to where the form's first sending went (Post/Redirect/Get)."""
    claimed = await session.scalar(
        insert(PortalFormSubmission)
        .values(link_id=portal.link_id, form_key=form.key)
        .on_conflict_do_nothing()
        .returning(PortalFormSubmission.form_key)
    )
    if claimed is None:
        earlier = await session.scalar(
            sa.select(PortalFormSubmission.redirect_to).where(
                PortalFormSubmission.link_id == portal.link_id,
                PortalFormSubmission.form_key == form.key,
            )
        )
        return RedirectResponse(earlier or "/portal?done=again", status_code=303)
    location = await action()
    await session.execute(
        sa.update(PortalFormSubmission)
        .where(
            PortalFormSubmission.link_id == portal.link_id,
            PortalFormSubmission.form_key == form.key,
        )
        .values(redirect_to=location)
    )
    return RedirectResponse(location, status_code=303)
