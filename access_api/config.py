"""access_api settings (environment prefix ``ACCESS_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

SERVICE = "access_api"
SCHEMA = "access"


class AccessSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ACCESS_", extra="ignore", frozen=True)

    cache_ttl_seconds: float = Field(
        10.0,
        gt=0,
        description="Safety-net lifetime of a cached user or plan (events evict sooner).",
    )
    cache_max_users: int = Field(200_000, ge=1, description="Users kept in each replica's cache.")
    auth_url: str | None = Field(
        None, description="Base URL of the auth service; role sync is off when unset."
    )
    auth_roles_path: str = Field(
        "/api/v1/users/{user_id}/roles",
        description="POST {role} grants, DELETE <path>/{role} revokes a role.",
    )
    auth_token: SecretStr | None = Field(
        None, description="Token for the auth service; an internal service token when unset."
    )
    role_sync_interval_seconds: float = Field(1.0, gt=0, description="How often due syncs run.")
