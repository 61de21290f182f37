"""etl settings (environment prefix ``ETL_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

SERVICE = "etl"
SCHEMA = "etl"

DEFAULT_SOURCE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/movies_admin"


class EtlSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ETL_", extra="ignore", frozen=True)

    source_url: str = Field(
        DEFAULT_SOURCE_URL,
        description="SQLAlchemy URL of the movie admin's database (table content.film_work).",
    )
    billing_url: str = Field(
        "http://127.0.0.1:8000", description="billing's base URL (its admin bulk-upsert API)."
    )
    batch_size: int = Field(
        500, ge=1, le=1000, description="Movies read and loaded per batch (billing takes ≤1,000)."
    )
    interval_seconds: float = Field(
        30.0, gt=0, description="Pause between two passes of `cinema etl run`."
    )
    full_pass_interval_seconds: float = Field(
        3600.0,
        ge=0,
        description="How often the full pass marks movies gone from the source (off sale).",
    )
    settle_seconds: float = Field(
        5.0,
        ge=0,
        description=(
            "Rows modified less than this long ago (source clock) wait for the next pass, so a"
            " source transaction that commits late with an older `modified` is not skipped."
        ),
    )
    backoff_initial_seconds: float = Field(
        1.0, gt=0, description="First wait after the source or billing could not be reached."
    )
    backoff_max_seconds: float = Field(
        60.0, gt=0, description="Longest wait between two attempts (the wait doubles up to it)."
    )
    http_timeout_seconds: float = Field(30.0, gt=0, description="Timeout of one call to billing.")
