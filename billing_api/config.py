"""billing_api settings (environment prefix ``BILLING_``; the admin UI's ``BILLING_ADMIN_``)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import production
from shared.money import Currency
from shared.ratelimit import Rate, RateLimitSettings, Scopes
from shared.settings import ServiceSettings

SERVICE = "billing_api"
DEV_PORTAL_SECRET = "dev-only-portal-secret-change-me-in-prod"
SCHEMA = "billing"


class BillingSettings(RateLimitSettings, ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore", frozen=True)

    gateway_url: str = Field(
        "http://127.0.0.1:8001", description="Base URL of the payment gateway's internal API."
    )
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Where browsers reach billing (checkout return pages)."
    )
    default_currency: Currency = Field("RUB", description="Currency of wallet top-ups.")
    renewal_lead_minutes: int = Field(
        60, ge=0, description="How long before a period ends the renewal charge is attempted."
    )
    dunning_schedule: str = Field(
        "1h,1d,2d", description="Retries after a failed renewal, counted from the first failure."
    )
    reminder_days: int = Field(3, ge=0, description="Days before a non-renewing end to remind.")
    account_url: str = Field(
        "http://127.0.0.1:8000/account",
        description="The cinema app's account page, where a subscriber updates the card or pays"
        " what is due; notices link to it with ?subscription_id=….",
    )
    card_expiry_notice_days: int = Field(
        14,
        ge=0,
        description="Days before the saved card expires to tell a subscriber whose next renewal"
        " falls after that expiry (payment_method.expiring, once per card).",
    )
    max_pauses_per_year: int = Field(
        2, ge=0, description="Pauses a subscriber may ask for per subscription in any 365 days."
    )
    portal_secret: SecretStr = Field(
        SecretStr(DEV_PORTAL_SECRET),
        description="Signs the customer portal's session cookie and CSRF tokens and the receipt"
        " links in emails; set the same value on every replica.",
    )
    portal_link_seconds: int = Field(
        300, ge=10, le=3600, description="How long a portal link may be opened (once)."
    )
    portal_session_minutes: int = Field(
        30, ge=1, le=24 * 60, description="How long a portal session lasts after its link."
    )
    portal_secure_cookie: bool = Field(
        False, description="Send the portal's cookie over HTTPS only (turn on behind TLS)."
    )
    seller_name: str = Field(
        "Online Cinema LLC", description="The seller's legal name, printed on receipts."
    )
    seller_tax_id: str = Field("", description="The seller's tax id (INN), printed on receipts.")
    seller_address: str = Field("", description="The seller's address, printed on receipts.")
    seller_email: str = Field(
        "support@cinema.example", description="Support email printed on receipts."
    )
    vat_percent: int | None = Field(
        None,
        ge=0,
        le=100,
        description="VAT included in prices, shown on receipts; unset: receipts show no VAT.",
    )
    receipt_font: str = Field(
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        description="A TrueType font with Cyrillic for PDF receipts (Debian's fonts-dejavu-core).",
    )
    reconcile_after_minutes: int = Field(
        15, ge=1, description="Card payments pending this long are asked of the gateway."
    )
    jobs_interval_seconds: float = Field(
        30.0, gt=0, description="How often billing-worker runs the jobs."
    )
    max_total_discount_percent: int = Field(
        50, ge=0, le=100, description="Cap of months-tier + personal discounts together."
    )
    gift_validity_days: int = Field(
        365,
        ge=1,
        le=3650,
        description="Days a paid gift code can be redeemed; unredeemed after that it expires"
        " and its deferred revenue is recognised.",
    )
    gift_expiring_notice_days: int = Field(
        14,
        ge=0,
        description="Days before an unredeemed gift expires to remind its buyer (gift.expiring).",
    )
    gift_max_wrong_codes: int = Field(
        10, ge=1, description="Wrong gift codes one user may send per window before 429."
    )
    gift_wrong_code_window_minutes: int = Field(
        60, ge=1, description="The window of BILLING_GIFT_MAX_WRONG_CODES, in minutes."
    )

    # Limits against abuse (429 past them): "N/second|minute|hour|day", per user and per address.
    # Generous for people; an address may be a whole office or a mobile carrier's NAT.
    rate_limit_checkout_per_user: Rate = Field(
        "30/minute", description="Subscription checkouts (POST /subscriptions) per user."
    )
    rate_limit_checkout_per_ip: Rate = Field("120/minute", description="… per client address.")
    rate_limit_purchase_per_user: Rate = Field(
        "30/minute", description="Purchases (POST /purchases) per user."
    )
    rate_limit_purchase_per_ip: Rate = Field("120/minute", description="… per client address.")
    rate_limit_top_up_per_user: Rate = Field(
        "20/minute", description="Wallet top-ups (POST /wallet/top-ups) per user."
    )
    rate_limit_top_up_per_ip: Rate = Field("120/minute", description="… per client address.")
    rate_limit_refund_per_user: Rate = Field(
        "10/minute", description="Refund requests (POST /payments/{id}/refund) per user."
    )
    rate_limit_refund_per_ip: Rate = Field("60/minute", description="… per client address.")
    rate_limit_gift_per_user: Rate = Field(
        "20/minute", description="Gift purchases (POST /gifts) per user."
    )
    rate_limit_gift_per_ip: Rate = Field("120/minute", description="… per client address.")
    rate_limit_gift_redeem_per_user: Rate = Field(
        "20/minute",
        description="Gift redemptions (POST /gifts/redeem) per user, right or wrong code (wrong"
        " codes also count toward BILLING_GIFT_MAX_WRONG_CODES).",
    )
    rate_limit_gift_redeem_per_ip: Rate = Field("60/minute", description="… per client address.")

    @property
    def rate_limits(self) -> dict[str, Scopes]:
        """The limits by name, as :class:`shared.ratelimit.RateLimiter` takes them."""
        names = ("checkout", "purchase", "top_up", "refund", "gift", "gift_redeem")
        return {
            name: {
                "user": getattr(self, f"rate_limit_{name}_per_user"),
                "ip": getattr(self, f"rate_limit_{name}_per_ip"),
            }
            for name in names
        }

    def production_problems(self) -> list[str]:
        # The admin UI's settings have their own prefix; every billing process checks them, so a
        # deployment cannot start any of them while the UI's cookie secret is the repository's.
        problems = AdminUISettings().production_problems()
        portal = production.secret_problem(
            "BILLING_PORTAL_SECRET", self.portal_secret, development_value=DEV_PORTAL_SECRET
        )
        return problems if portal is None else [portal, *problems]

    @property
    def dunning_offsets(self) -> tuple[timedelta, ...]:
        return tuple(
            parse_duration(part) for part in self.dunning_schedule.split(",") if part.strip()
        )


class AdminUISettings(BaseSettings):
    """The admin UI's login and session (environment prefix ``BILLING_ADMIN_``)."""

    model_config = SettingsConfigDict(env_prefix="BILLING_ADMIN_", extra="ignore", frozen=True)

    username: str | None = None
    """Username of the built-in back-office login; unset: only admin JWTs log in."""
    password: SecretStr | None = None
    """Password of the built-in login (both must be set to enable it)."""
    session_secret: SecretStr = SecretStr("dev-only-admin-session-secret-change-me-in-prod")
    """Signs the UI's session cookie; set the same value on every replica."""
    session_hours: int = 8
    """How long a UI login lasts."""
    secure_cookie: bool = False
    """Send the session cookie over HTTPS only (turn on behind TLS)."""
    support_refund_limit: int = Field(100_000, ge=0)
    """How much of one payment the ``support`` role may refund, all its refunds together, in
    minor units of ``BILLING_DEFAULT_CURRENCY`` (100000: 1 000 ₽); a payment in another currency
    is for the finance role."""
    jwt_login: bool | None = None
    """Whether a pasted admin JWT logs in to the UI; unset: on in development only."""
    login_max_failures: int = Field(5, ge=1)
    """Failed logins per email within the window before the login page says to wait."""
    login_max_failures_per_ip: int = Field(20, ge=1)
    """Failed logins from one client address within the window before it must wait."""
    login_window_minutes: int = Field(15, ge=1)
    """The window of the failed-login limits, in minutes."""

    @property
    def jwt_login_enabled(self) -> bool:
        return production.is_development() if self.jwt_login is None else self.jwt_login

    def production_problems(self) -> list[str]:
        """Outside development the cookie must be signed with a secret of this deployment."""
        problem = production.secret_problem(
            "BILLING_ADMIN_SESSION_SECRET",
            self.session_secret,
            development_value=type(self).model_fields["session_secret"].default,
        )
        return [] if problem is None else [problem]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``1h``, ``2d`` → a timedelta."""
    text = text.strip()
    if len(text) < 2 or text[-1] not in _UNITS or not text[:-1].isdigit():
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 1h, 2d)")
    return timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
