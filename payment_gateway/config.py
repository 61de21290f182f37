"""payment_gateway settings (environment prefix ``GATEWAY_``)."""

from __future__ import annotations

import ipaddress
import os
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared import production
from shared.ratelimit import Rate, RateLimitSettings, Scopes
from shared.settings import ServiceSettings

SERVICE = "payment_gateway"
SCHEMA = "gateway"

DEV_SANDBOX_WEBHOOK_SECRET = "whsec_sandbox_dev_only_change_me"
ProviderName = Literal["sandbox", "stripe", "yookassa"]
PROVIDER_NAMES: tuple[str, ...] = ("sandbox", "stripe", "yookassa")

YOOKASSA_API = "https://api.yookassa.ru/v3"
# Where YooKassa sends its notifications from, as it publishes them
# (https://yookassa.ru/developers/using-api/webhooks, "IP addresses").
YOOKASSA_NOTIFICATION_NETWORKS = (
    "185.71.76.0/27,185.71.77.0/27,77.75.153.0/25,77.75.156.11,77.75.156.35,"
    "77.75.154.128/25,2a02:5180::/32"
)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR ranges (``"185.71.76.0/27, 77.75.156.11"``)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )


def forwarded_for_anyone_problem(forwarded_allow_ips: str | None) -> str | None:
    """Why uvicorn's FORWARDED_ALLOW_IPS unfits a gateway that believes YooKassa by address.

    uvicorn (``shared.serve``) replaces the connection's address with one from X-Forwarded-For
    when the peer is in FORWARDED_ALLOW_IPS. Believing every peer ("*", or a network holding
    every address) takes the header's first address, which the sender writes: anyone could
    then send "X-Forwarded-For: <a YooKassa address>" and be taken for YooKassa.
    """
    entries = {entry.strip() for entry in (forwarded_allow_ips or "").split(",")}
    if entries & {"*", "0.0.0.0/0", "::/0"}:
        return (
            "FORWARDED_ALLOW_IPS believes every peer's X-Forwarded-For, so anyone could pose as"
            " YooKassa: name only the ingress's addresses (e.g. 10.0.0.0/8)"
        )
    return None


def parse_routes(text: str) -> dict[str, str]:
    """``"RUB=yookassa,*=stripe"`` → ``{"RUB": "yookassa", "*": "stripe"}``."""
    routes: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        currency, sep, provider = part.partition("=")
        currency, provider = currency.strip().upper(), provider.strip().lower()
        if not sep or not currency or provider not in PROVIDER_NAMES:
            raise ValueError(
                f"route {part.strip()!r} is not CURRENCY=provider with a provider among"
                f" {', '.join(PROVIDER_NAMES)} (e.g. RUB=yookassa,*=stripe)"
            )
        if currency != "*" and (len(currency) != 3 or not currency.isalpha()):
            raise ValueError(f"route {part.strip()!r}: {currency!r} is not a currency code or *")
        routes[currency] = provider
    return routes


class GatewaySettings(RateLimitSettings, ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    # Card testing: many cards tried against the sandbox's pay page (429 past these).
    rate_limit_sandbox_pay_per_ip: Rate = Field(
        "30/minute", description="Sandbox payments (POST /sandbox/checkout/{id}[/pay]) per address."
    )
    rate_limit_sandbox_pay_per_session: Rate = Field(
        "10/minute", description="Sandbox payment attempts on one checkout session."
    )

    @property
    def rate_limits(self) -> dict[str, Scopes]:
        """The limits by name, as :class:`shared.ratelimit.RateLimiter` takes them."""
        return {
            "sandbox_pay": {
                "ip": self.rate_limit_sandbox_pay_per_ip,
                "session_id": self.rate_limit_sandbox_pay_per_session,
            }
        }

    provider: ProviderName | None = Field(
        None,
        description=(
            "Provider for new payments (the route of every currency GATEWAY_PROVIDER_ROUTES does"
            " not name); stripe when a Stripe key is set, else yookassa when a YooKassa shop is"
            " set, else sandbox."
        ),
    )
    provider_routes: str = Field(
        "",
        description=(
            "Provider of a new checkout by currency, e.g. 'RUB=yookassa,*=stripe' ('*' is every"
            " other currency; without it, GATEWAY_PROVIDER). Refunds and renewals stay with the"
            " provider that took the payment or holds the saved card."
        ),
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

    yookassa_shop_id: str | None = Field(None, description="YooKassa shop id (shopId).")
    yookassa_secret_key: SecretStr | None = Field(None, description="YooKassa secret key.")
    yookassa_api_base: str = Field(YOOKASSA_API, description="YooKassa's API address (v3).")
    yookassa_allowed_ips: str = Field(
        YOOKASSA_NOTIFICATION_NETWORKS,
        description="Addresses and ranges YooKassa notifies from (comma-separated).",
    )
    yookassa_trusted_proxies: str = Field(
        "",
        description=(
            "Proxies (addresses or ranges, comma-separated) whose client-address header is"
            " believed for YooKassa notifications; empty: the connection's own address counts."
        ),
    )
    yookassa_client_ip_header: str = Field(
        "X-Forwarded-For", description="The header a trusted proxy puts the client address in."
    )
    yookassa_receipts: bool = Field(
        False, description="Send a 54-FZ receipt with every YooKassa payment and refund."
    )
    yookassa_vat_code: int = Field(
        1, ge=1, le=12, description="YooKassa vat_code of every receipt item (1: without VAT)."
    )
    yookassa_tax_system_code: int | None = Field(
        None, ge=1, le=6, description="YooKassa tax_system_code of the receipts (when required)."
    )
    yookassa_payment_subject: str = Field(
        "service", description="payment_subject of receipt items the order lines leave open."
    )
    yookassa_payment_mode: str = Field(
        "full_payment", description="payment_mode of receipt items the order lines leave open."
    )

    @field_validator("yookassa_allowed_ips", "yookassa_trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # a typo refuses to start rather than refusing every notification
        return value

    @field_validator("provider_routes")
    @classmethod
    def _routes(cls, value: str) -> str:
        parse_routes(value)
        return value

    @property
    def yookassa_on(self) -> bool:
        return bool(self.yookassa_shop_id) or self.yookassa_secret_key is not None

    @property
    def default_provider(self) -> str:
        if self.provider:
            return self.provider
        if self.stripe_api_key:
            return "stripe"
        return "yookassa" if self.yookassa_on else "sandbox"

    @property
    def routes(self) -> dict[str, str]:
        return parse_routes(self.provider_routes)

    @property
    def routed_providers(self) -> set[str]:
        """Every provider a new payment may be sent to."""
        return {self.default_provider, *self.routes.values()}

    @property
    def sandbox_on(self) -> bool:
        """Whether the sandbox serves: as set, else in development when Stripe is not in use.

        Outside development it is off unless ``GATEWAY_SANDBOX_ENABLED=true``: anyone could
        otherwise "pay" with a test card on a deployment that forgot its Stripe key.
        """
        if self.sandbox_enabled is not None:
            return self.sandbox_enabled
        return production.is_development() and "sandbox" in self.routed_providers

    def production_problems(self) -> list[str]:
        """A provider to take payments with, and the secret of every webhook it accepts."""
        problems: list[str | None] = []
        if self.default_provider == "stripe" and self.stripe_api_key is None:
            problems.append("GATEWAY_STRIPE_API_KEY is not set (GATEWAY_PROVIDER is stripe)")
        routed = self.routed_providers
        if "stripe" in routed and self.default_provider != "stripe" and not self.stripe_api_key:
            problems.append(
                "GATEWAY_STRIPE_API_KEY is not set (GATEWAY_PROVIDER_ROUTES names stripe)"
            )
        if "sandbox" in routed and not self.sandbox_on:
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
        if "yookassa" in routed or self.yookassa_on:
            if not self.yookassa_shop_id:
                problems.append("GATEWAY_YOOKASSA_SHOP_ID is not set (YooKassa takes payments)")
            problems.append(
                production.secret_problem("GATEWAY_YOOKASSA_SECRET_KEY", self.yookassa_secret_key)
            )
            problems.append(forwarded_for_anyone_problem(os.environ.get("FORWARDED_ALLOW_IPS")))
        if self.sandbox_on:
            problems.append(
                production.secret_problem(
                    "GATEWAY_SANDBOX_WEBHOOK_SECRET",
                    self.sandbox_webhook_secret,
                    development_value=DEV_SANDBOX_WEBHOOK_SECRET,
                )
            )
        return [problem for problem in problems if problem is not None]
