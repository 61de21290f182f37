"""Tables of the ``etl`` schema (``outbox``/``inbox`` come from :mod:`shared.tables`)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from etl.config import SCHEMA
from shared.db import make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata(SCHEMA)
