"""The admin UI's editable views share one rule: every create, edit and delete runs the admin
service the API uses, in a transaction of its own, so events and audit rows are written the same
way. This is the base those views build on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import ValidationError as PydanticValidationError
from sqladmin import ModelView
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from shared.errors import AppError

T = TypeVar("T")


def actor(request: Request) -> str:
    """Who the audit row names: the logged-in UI user."""
    return str(request.session.get("actor", "ui:unknown"))


class ServiceBackedView(ModelView):
    """A view whose create/edit/delete run an admin service in one transaction of their own."""

    can_export = False
    can_delete = False

    async def _run(self, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        try:
            async with self.session_maker() as session, session.begin():
                return await work(session)
        except PydanticValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise ValueError(problems) from None
        except AppError as exc:
            raise ValueError(exc.detail) from None


def sent(data: dict[str, Any], *names: str) -> dict[str, Any]:
    """The form fields among ``names`` with empty text turned into ``None``."""
    return {name: (None if data.get(name) == "" else data.get(name)) for name in names}


async def reloaded(session: AsyncSession, model: type[T], pk: Any) -> T:
    """The row as the service left it (a service may have changed it after it was loaded)."""
    row = await session.get(model, pk, populate_existing=True)
    assert row is not None
    return row
