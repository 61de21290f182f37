"""etl settings (environment prefix ``ETL_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

SERVICE = "etl"
SCHEMA = "etl"


class EtlSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ETL_", extra="ignore", frozen=True)
