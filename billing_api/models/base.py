"""What every table of the ``billing`` schema shares: the declarative base with the suite's
naming convention, and the column helpers for timestamps and statuses."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, mapped_column

from billing_api.config import SCHEMA
from shared.db import make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata(SCHEMA)


def when(*, nullable: bool = True) -> Any:
    return mapped_column(sa.DateTime(timezone=True), nullable=nullable)


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def status_column(enum: type[StrEnum], *, length: int, default: StrEnum) -> Any:
    """A ``status`` column holding one of ``enum``'s values, loaded as its member.

    Stored as a plain ``VARCHAR(length)`` with a ``CHECK`` named ``ck_<table>_status_known``:
    the database refuses any other value, whoever writes it. A new member needs a migration
    that widens that check (``migrations/versions/0012_status_checks.py`` shows how).
    """
    return mapped_column(
        sa.Enum(
            enum,
            name="status_known",
            native_enum=False,
            create_constraint=True,
            length=length,
            values_callable=_values,
        ),
        default=default,
    )
