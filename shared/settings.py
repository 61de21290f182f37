"""The settings every service shares, read from environment variables.

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix`` (``BILLING_``,
``GATEWAY_``…) and adds only its own knobs. Defaults work on a developer machine where PostgreSQL
and RabbitMQ listen on localhost.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/cinema"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class ServiceSettings(BaseSettings):
    """Connection and plumbing settings common to every service."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL, description="SQLAlchemy URL of this service's database (asyncpg)."
    )
    db_pool_size: int = Field(10, ge=1, description="Connections kept in the database pool.")
    amqp_url: str = Field(DEFAULT_AMQP_URL, description="RabbitMQ URL.")
    broker_prefix: str = Field(
        "",
        description="Prefix for every exchange and queue name; lets several suites share a broker.",
    )
    log_level: str = Field("INFO", description="Python log level.")
    log_json: bool = Field(True, description="Write logs as one JSON object per line.")

    def production_problems(self) -> list[str]:
        """What keeps this service from starting outside development (see
        :mod:`shared.production`); a service with secrets of its own lists them here."""
        return []


class CommandLineSettings(ServiceSettings):
    """Settings of the operator commands (``cinema prepare``, ``cinema dlq``); prefix CINEMA_."""

    model_config = SettingsConfigDict(env_prefix="CINEMA_", extra="ignore", frozen=True)
