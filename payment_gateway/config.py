"""payment_gateway settings (environment prefix ``GATEWAY_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared import production
from shared.settings import ServiceSettings

SERVICE = "payment_gateway"
SCHEMA = "gateway"

DEV_SANDBOX_WEBHOOK_SECRET = "whsec_sandbox_dev_only_change_me"


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
    stripe_publishable_key: str | None = Field(
        None,
        description=(
            "Stripe publishable key (pk_…), for the page where a cardholder confirms a renewal"
            " that needs 3-D Secure (PUBLIC_URL/stripe/actions/{payment_id})."
        ),
    )
    webhook_max_attempts: int = Field(
        10,
        ge=1,
        description=(
            "Failed processing attempts of one webhook event before it is parked (no longer"
            " retried; a refresh of its payment or an operator settles it)."
        ),
    )
    webhook_max_backoff_seconds: float = Field(
        600.0,
        gt=0,
        description="Longest wait between two tries of a failing webhook event (1 s, 2 s, 4 s …).",
    )
    sandbox_enabled: bool | None = Field(
        None,
        description=(
            "Serve the sandbox provider (test cards, no real money). By default only in"
            " development (CINEMA_ENV=development) and only when Stripe is not in use."
        ),
    )
    sandbox_webhook_secret: SecretStr = Field(
        SecretStr(DEV_SANDBOX_WEBHOOK_SECRET), description="Signs sandbox webhooks."
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
        """Whether the sandbox serves: as set, else in development when Stripe is not in use.

        Outside development it is off unless ``GATEWAY_SANDBOX_ENABLED=true``: anyone could
        otherwise "pay" with a test card on a deployment that forgot its Stripe key.
        """
        if self.sandbox_enabled is not None:
            return self.sandbox_enabled
        return production.is_development() and self.default_provider == "sandbox"

    def production_problems(self) -> list[str]:
        """A provider to take payments with, and the secret of every webhook it accepts."""
        problems: list[str | None] = []
        if self.default_provider == "stripe" and self.stripe_api_key is None:
            problems.append("GATEWAY_STRIPE_API_KEY is not set (GATEWAY_PROVIDER is stripe)")
        if self.default_provider == "sandbox" and not self.sandbox_on:
            problems.append(
                "GATEWAY_STRIPE_API_KEY is not set and the sandbox is off outside development"
                " (set GATEWAY_SANDBOX_ENABLED=true to take test payments only)"
            )
        if self.stripe_api_key is not None:
            problems.append(
                production.secret_problem("GATEWAY_STRIPE_API_KEY", self.stripe_api_key)
            )
            problems.append(
                production.secret_problem(
                    "GATEWAY_STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret
                )
            )
        if self.sandbox_on:
            problems.append(
                production.secret_problem(
                    "GATEWAY_SANDBOX_WEBHOOK_SECRET",
                    self.sandbox_webhook_secret,
                    development_value=DEV_SANDBOX_WEBHOOK_SECRET,
                )
            )
        return [problem for problem in problems if problem is not None]
