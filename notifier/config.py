"""notifier settings (environment prefix ``NOTIFIER_``)."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared import production
from shared.settings import ServiceSettings

SERVICE = "notifier"
SCHEMA = "notifier"

DEV_WEBHOOK_SECRET = "notifier_webhook_dev_only_change_me"


class NotifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore", frozen=True)

    email_enabled: bool = Field(True, description="Send notifications by email (SMTP).")
    webhook_enabled: bool | None = Field(
        None,
        description="Send notifications to the webhook; by default on when WEBHOOK_URL is set.",
    )
    smtp_host: str = Field(
        "127.0.0.1", description="SMTP server (a local mailpit/aiosmtpd in dev)."
    )
    smtp_port: int = Field(1025, ge=1, le=65535, description="SMTP port.")
    smtp_username: str | None = Field(None, description="SMTP login; no AUTH when unset.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_starttls: bool = Field(False, description="Upgrade the connection with STARTTLS.")
    smtp_use_tls: bool = Field(False, description="Connect over implicit TLS (port 465 style).")
    smtp_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one SMTP exchange.")
    mail_from: str = Field("Cinema <billing@cinema.local>", description="From: of every email.")
    webhook_url: str | None = Field(
        None, description="The cinema notification service's endpoint for notifications."
    )
    webhook_secret: SecretStr = Field(
        SecretStr(DEV_WEBHOOK_SECRET), description="HMAC-SHA256 secret signing webhook bodies."
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one webhook call.")
    retry_delays_seconds: Annotated[tuple[float, ...], NoDecode] = Field(
        (1.0, 5.0, 30.0, 120.0, 600.0),
        description="Waits after the 1st, 2nd… failed attempt (comma-separated); the last repeats.",
    )
    max_attempts: int = Field(6, ge=1, description="Attempts before a notification is failed.")
    sender_interval_seconds: float = Field(
        1.0, gt=0, description="How often each channel's sender looks for due notifications."
    )
    sender_batch_size: int = Field(
        20, ge=1, le=500, description="Notifications one sender sends concurrently."
    )
    sender_lease_seconds: float = Field(
        120.0, gt=0, description="How long a claimed notification is hidden from other senders."
    )

    @field_validator("retry_delays_seconds", mode="before")
    @classmethod
    def _split_delays(cls, value: Any) -> Any:
        if isinstance(value, str):
            # "1,5,30" or "[1, 5, 30]"
            parts = value.strip().strip("[]").split(",")
            return tuple(float(part) for part in parts if part.strip())
        return value

    @field_validator("retry_delays_seconds")
    @classmethod
    def _check_delays(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError("at least one delay, none negative")
        return value

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> Self:
        if self.webhook_enabled and not self.webhook_url:
            raise ValueError("NOTIFIER_WEBHOOK_ENABLED needs NOTIFIER_WEBHOOK_URL")
        return self

    def production_problems(self) -> list[str]:
        """The webhook's signing secret, when the webhook is on (email needs no secret)."""
        if not self.webhook_on:
            return []
        problem = production.secret_problem(
            "NOTIFIER_WEBHOOK_SECRET", self.webhook_secret, development_value=DEV_WEBHOOK_SECRET
        )
        return [] if problem is None else [problem]

    @property
    def webhook_on(self) -> bool:
        if self.webhook_enabled is not None:
            return self.webhook_enabled
        return bool(self.webhook_url)

    def retry_delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        delays = self.retry_delays_seconds
        return delays[min(max(attempts, 1), len(delays)) - 1]
