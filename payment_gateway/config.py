"""payment_gateway settings (environment prefix ``GATEWAY_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

SERVICE = "payment_gateway"
SCHEMA = "gateway"


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    provider: Literal["sandbox", "stripe"] | None = Field(
        None,
        description="Provider for new payments; stripe when a Stripe key is set, else sandbox.",
    )
    public_url: str = Field(
        "http://127.0.0.1:8001", description="Where browsers reach the gateway (checkout pages)."
    )
    checkout_ttl_minutes: int = Field(
        60,
        ge=30,
        le=24 * 60,
        description="How long a checkout stays payable (Stripe: 30 min-24 h).",
    )
    stripe_api_key: SecretStr | None = Field(None, description="Stripe secret key.")
    stripe_webhook_secret: SecretStr | None = Field(None, description="Stripe endpoint secret.")
    stripe_api_base: str | None = Field(None, description="Override of Stripe's API address.")
    sandbox_enabled: bool | None = Field(
        None, description="Serve the sandbox provider; by default only when Stripe is not in use."
    )
    sandbox_webhook_secret: SecretStr = Field(
        SecretStr("whsec_sandbox_dev_only_change_me"), description="Signs sandbox webhooks."
    )
    sandbox_webhook_url: str | None = Field(
        None,
        description="Where the sandbox delivers its webhooks; default PUBLIC_URL/webhooks/sandbox.",
    )

    @property
    def default_provider(self) -> str:
        if self.provider:
            return self.provider
        return "stripe" if self.stripe_api_key else "sandbox"

    @property
    def sandbox_on(self) -> bool:
        if self.sandbox_enabled is not None:
            return self.sandbox_enabled
        return self.default_provider == "sandbox"
