"""Tables of the ``billing`` schema: catalog, discounts, subscriptions, purchases, payments, the
ledger and idempotency keys. Constraints that protect money live here, in the database.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from billing_api.config import SCHEMA
from shared.db import Timestamps, UUIDPrimaryKey, make_metadata, utc_now


class Base(DeclarativeBase):
    metadata = make_metadata(SCHEMA)


def when(*, nullable: bool = True) -> Any:
    return mapped_column(sa.DateTime(timezone=True), nullable=nullable)


# --- catalog -------------------------------------------------------------------------------


class Plan(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "plan"
    __table_args__ = (
        sa.CheckConstraint("price_amount >= 0", name="price_not_negative"),
        sa.CheckConstraint("max_months BETWEEN 1 AND 12", name="max_months_range"),
        sa.CheckConstraint(
            "(period_unit = 'month' AND period_days IS NULL)"
            " OR (period_unit = 'day' AND period_days > 0)",
            name="period_shape",
        ),
        sa.CheckConstraint(
            "refund_policy IN ('window_then_prorata', 'window_only', 'none')",
            name="refund_policy_known",
        ),
    )

    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    price_amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    period_unit: Mapped[str] = mapped_column(sa.String(5), default="month")
    period_days: Mapped[int | None]
    max_months: Mapped[int] = mapped_column(default=12)
    all_movies: Mapped[bool] = mapped_column(default=False)
    role: Mapped[str | None] = mapped_column(sa.String(100))
    grace_days: Mapped[int] = mapped_column(default=2)
    trial_days: Mapped[int] = mapped_column(default=0)
    refund_window_minutes: Mapped[int] = mapped_column(default=60)
    refund_policy: Mapped[str] = mapped_column(sa.String(30), default="window_then_prorata")
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)
    # The ``active`` the last ``plan.changed`` said (access_api grants nothing for a plan it
    # was told is inactive): a renewal that would charge for such a plan republishes it first.
    published_active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())


class Movie(Timestamps, Base):
    """A movie billing can sell.

    Two flags, each with one owner: ``in_source`` is whether the movie admin still has the movie
    (written only by the ETL's bulk upsert and its full pass), ``available`` is whether staff sell
    it (written only by admins). A movie is on sale when both hold, so a source edit never puts
    back on sale a film staff took off, and staff's choice survives the film leaving the source
    and coming back.
    """

    __tablename__ = "movie"
    __table_args__ = (
        sa.CheckConstraint(
            "purchase_amount IS NULL OR purchase_amount > 0", name="purchase_positive"
        ),
        sa.CheckConstraint(
            "(rent_amount IS NULL AND rent_hours IS NULL) OR (rent_amount > 0 AND rent_hours > 0)",
            name="rent_shape",
        ),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(500))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    purchase_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    rent_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    rent_hours: Mapped[int | None]
    currency: Mapped[str] = mapped_column(sa.String(3))
    available: Mapped[bool] = mapped_column(default=True)
    in_source: Mapped[bool] = mapped_column(default=True, server_default=sa.true())

    @property
    def on_sale(self) -> bool:
        return self.available and self.in_source


class PlanMovie(Base):
    __tablename__ = "plan_movie"

    plan_id: Mapped[UUID] = mapped_column(sa.ForeignKey("plan.id"), primary_key=True)
    movie_id: Mapped[UUID] = mapped_column(sa.ForeignKey("movie.id"), primary_key=True)


# --- discounts -----------------------------------------------------------------------------


class MonthTier(UUIDPrimaryKey, Base):
    """``percent`` off when buying at least ``min_months``; per plan, or global (plan NULL)."""

    __tablename__ = "month_tier"
    __table_args__ = (
        sa.UniqueConstraint("plan_id", "min_months", postgresql_nulls_not_distinct=True),
        sa.CheckConstraint("percent BETWEEN 1 AND 100", name="percent_range"),
        sa.CheckConstraint("min_months BETWEEN 1 AND 12", name="months_range"),
    )

    plan_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("plan.id"))
    min_months: Mapped[int]
    percent: Mapped[int]


class PersonalDiscount(Timestamps, Base):
    __tablename__ = "personal_discount"
    __table_args__ = (sa.CheckConstraint("percent BETWEEN 1 AND 100", name="percent_range"),)

    user_id: Mapped[UUID] = mapped_column(primary_key=True)
    percent: Mapped[int]
    reason: Mapped[str] = mapped_column(sa.String(500), default="")


class PromoCode(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "promo_code"
    __table_args__ = (
        sa.CheckConstraint(
            "(kind = 'percent' AND percent BETWEEN 1 AND 100 AND amount IS NULL)"
            " OR (kind = 'fixed' AND amount > 0 AND currency IS NOT NULL AND percent IS NULL)",
            name="kind_shape",
        ),
        sa.CheckConstraint(
            "max_redemptions IS NULL OR redemptions <= max_redemptions", name="within_max"
        ),
    )

    code: Mapped[str] = mapped_column(sa.String(64), unique=True)  # stored upper-case
    kind: Mapped[str] = mapped_column(sa.String(10))
    percent: Mapped[int | None]
    amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    plan_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("plan.id"))
    valid_from: Mapped[datetime | None] = when()
    valid_until: Mapped[datetime | None] = when()
    max_redemptions: Mapped[int | None]
    # Reserved at checkout and kept when paid; released when the payment fails or expires.
    redemptions: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)


class PromoRedemption(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "promo_redemption"
    __table_args__ = (
        sa.Index(
            "uq_promo_redemption_once_per_user",
            "promo_code_id",
            "user_id",
            unique=True,
            postgresql_where=sa.text("status <> 'released'"),
        ),
    )

    promo_code_id: Mapped[UUID] = mapped_column(sa.ForeignKey("promo_code.id"))
    user_id: Mapped[UUID]
    payment_id: Mapped[UUID] = mapped_column(unique=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="reserved")


# --- what people buy -----------------------------------------------------------------------


class SubscriptionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    GRACE = "grace"
    EXPIRED = "expired"
    ABANDONED = "abandoned"
    CANCELED = "canceled"


class Subscription(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "subscription"
    __table_args__ = (
        # One checkout at a time per user and plan: concurrent checkouts meet here.
        sa.Index(
            "uq_subscription_one_pending",
            "user_id",
            "plan_id",
            unique=True,
            postgresql_where=sa.text("status = 'pending'"),
        ),
        # One trial per user and plan, ever (an abandoned trial checkout does not count).
        sa.Index(
            "uq_subscription_one_trial",
            "user_id",
            "plan_id",
            unique=True,
            postgresql_where=sa.text("trial AND status <> 'abandoned'"),
        ),
        sa.CheckConstraint("months BETWEEN 1 AND 12", name="months_range"),
    )

    user_id: Mapped[UUID] = mapped_column(index=True)
    email: Mapped[str | None] = mapped_column(sa.String(320))
    locale: Mapped[str] = mapped_column(sa.String(10), default="ru")
    plan_id: Mapped[UUID] = mapped_column(sa.ForeignKey("plan.id"))
    status: Mapped[str] = mapped_column(sa.String(10), default=SubscriptionStatus.PENDING)
    months: Mapped[int] = mapped_column(default=1)
    current_period_start: Mapped[datetime | None] = when()
    current_period_end: Mapped[datetime | None] = when()
    auto_renew: Mapped[bool] = mapped_column(default=True)
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    payment_method_ref: Mapped[str | None] = mapped_column(sa.String(255))
    latest_payment_id: Mapped[UUID | None]
    canceled_at: Mapped[datetime | None] = when()
    # Renewal and dunning: when the next off-session charge is due, and how many have failed.
    next_renewal_at: Mapped[datetime | None] = when()
    renewal_attempts: Mapped[int] = mapped_column(default=0)
    dunning_started_at: Mapped[datetime | None] = when()
    grace_until: Mapped[datetime | None] = when()
    # The period end a "your subscription ends soon" reminder was sent for (sent once).
    reminded_for: Mapped[datetime | None] = when()
    # Trials: the first period is free, the card is saved at checkout, the first charge is the
    # renewal at ``trial_end``.
    trial: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    trial_end: Mapped[datetime | None] = when()
    # A downgrade waits for the period end: the renewal then charges and switches to this plan.
    pending_plan_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("plan.id"))


class Purchase(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "purchase"
    __table_args__ = (
        sa.Index(
            "uq_purchase_one_pending",
            "user_id",
            "movie_id",
            "kind",
            unique=True,
            postgresql_where=sa.text("status = 'pending'"),
        ),
    )

    user_id: Mapped[UUID] = mapped_column(index=True)
    email: Mapped[str | None] = mapped_column(sa.String(320))
    locale: Mapped[str] = mapped_column(sa.String(10), default="ru")
    movie_id: Mapped[UUID] = mapped_column(sa.ForeignKey("movie.id"))
    kind: Mapped[str] = mapped_column(sa.String(4))
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    valid_until: Mapped[datetime | None] = when()
    latest_payment_id: Mapped[UUID | None]


class PaymentPurpose(StrEnum):
    SUBSCRIPTION = "subscription"
    RENEWAL = "renewal"
    PURCHASE = "purchase"
    TOP_UP = "top_up"
    TRIAL = "trial"  # a zero-amount checkout that only saves the card
    UPGRADE = "upgrade"  # a plan change paid now, less the unused part of the current period


class Payment(UUIDPrimaryKey, Timestamps, Base):
    """One attempt to take money for something; its id is the gateway's idempotency key."""

    __tablename__ = "payment"
    __table_args__ = (
        sa.CheckConstraint("amount >= 0", name="amount_not_negative"),
        sa.CheckConstraint("refunded_amount BETWEEN 0 AND amount", name="refunds_within_amount"),
        sa.Index("ix_payment_user_created", "user_id", "created_at"),
        # Reconciliation takes the card payments whose next ask is due, the longest-due first.
        sa.Index(
            "ix_payment_reconcile_due",
            sa.text("coalesce(reconcile_next_at, created_at)"),
            postgresql_where=sa.text(
                "status = 'pending' AND method = 'card' AND reconcile_parked_at IS NULL"
            ),
        ),
    )

    user_id: Mapped[UUID]
    email: Mapped[str | None] = mapped_column(sa.String(320))
    purpose: Mapped[str] = mapped_column(sa.String(15))
    subscription_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("subscription.id"))
    purchase_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("purchase.id"))
    # The plan a subscription or upgrade payment buys (an upgrade's target plan).
    plan_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("plan.id"))
    method: Mapped[str] = mapped_column(sa.String(10))  # card | wallet | free
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    base_amount: Mapped[int] = mapped_column(sa.BigInteger)
    discount_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    quote: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    promo_code_id: Mapped[UUID | None] = mapped_column(sa.ForeignKey("promo_code.id"))
    months: Mapped[int] = mapped_column(default=1)
    description: Mapped[str] = mapped_column(sa.String(500))
    checkout_url: Mapped[str | None] = mapped_column(sa.Text)
    expires_at: Mapped[datetime | None] = when()  # when the checkout stops being payable
    provider: Mapped[str | None] = mapped_column(sa.String(20))
    payment_method_ref: Mapped[str | None] = mapped_column(sa.String(255))
    refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    paid_at: Mapped[datetime | None] = when()
    failure_message: Mapped[str | None] = mapped_column(sa.String(500))
    # A card checkout saves the card for renewals: kept so that the checkout, committed before
    # the gateway is asked, can be opened again from the row alone (retry, reconciliation).
    save_payment_method: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Reconciliation of a payment still pending: how many times the gateway was asked without
    # settling it, when it may be asked next (NULL: never asked), and when asking was given up
    # (the gateway's own event still settles a parked payment).
    reconcile_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    reconcile_next_at: Mapped[datetime | None] = when()
    reconcile_parked_at: Mapped[datetime | None] = when()


class Refund(UUIDPrimaryKey, Timestamps, Base):
    """Money given back for (part of) a payment; its id is the gateway's idempotency key.

    A refund made at the provider (its dashboard) takes the id the gateway gave it; either way
    ``provider_ref`` names the provider's refund once known, at most once per payment.
    """

    __tablename__ = "refund"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.UniqueConstraint("payment_id", "provider_ref"),
        # The send_queued_refunds job takes the queued refunds whose next try is due first.
        sa.Index(
            "ix_refund_queued_due",
            sa.text("coalesce(next_attempt_at, created_at)"),
            postgresql_where=sa.text("status = 'queued'"),
        ),
    )

    payment_id: Mapped[UUID] = mapped_column(sa.ForeignKey("payment.id"), index=True)
    user_id: Mapped[UUID]
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    rule: Mapped[str] = mapped_column(sa.String(200))
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    completed_at: Mapped[datetime | None] = when()
    provider_ref: Mapped[str | None] = mapped_column(sa.String(255))
    # Billing refunded on its own (no one asked): a failed try is retried, then ``parked``.
    billing_decided: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Failed tries to give this money back (a retry carries its failed refund's count on).
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = when()
    retry_of: Mapped[UUID | None] = mapped_column(sa.ForeignKey("refund.id"))


# --- ledger --------------------------------------------------------------------------------


class LedgerTransaction(UUIDPrimaryKey, Base):
    """One money movement; its entries balance (checked by the database at commit)."""

    __tablename__ = "ledger_transaction"
    __table_args__ = (sa.UniqueConstraint("kind", "reference"),)

    kind: Mapped[str] = mapped_column(sa.String(30))
    # What caused it (payment id, refund id…): the unique key makes posting idempotent.
    reference: Mapped[str] = mapped_column(sa.String(100))
    user_id: Mapped[UUID | None] = mapped_column(index=True)
    description: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)


class LedgerEntry(Base):
    __tablename__ = "ledger_entry"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("side IN ('debit', 'credit')", name="side_known"),
        sa.Index("ix_ledger_entry_account", "account", "currency"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    transaction_id: Mapped[UUID] = mapped_column(sa.ForeignKey("ledger_transaction.id"), index=True)
    account: Mapped[str] = mapped_column(sa.String(100))
    side: Mapped[str] = mapped_column(sa.String(6))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))


# --- plumbing ------------------------------------------------------------------------------


class EntitlementVersion(Base):
    """The per-user counter stamped on ``entitlements.changed`` snapshots."""

    __tablename__ = "entitlement_version"

    user_id: Mapped[UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class IdempotencyKey(Base):
    """The first response to a POST with an ``Idempotency-Key``, replayed for 24 hours."""

    __tablename__ = "idempotency_key"
    __table_args__ = (sa.Index("ix_idempotency_key_expires", "expires_at"),)

    subject: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    method: Mapped[str] = mapped_column(sa.String(10))
    path: Mapped[str] = mapped_column(sa.String(500))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(12), default="in_progress")
    response_status: Mapped[int | None]
    response_body: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    response_content_type: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # The claim's owner (a takeover sets a new one), and when its request's transaction first
    # committed as that owner: from then on the claim is never taken over.
    owner: Mapped[UUID | None]
    effect_committed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


# --- back office ---------------------------------------------------------------------------


class AdminAudit(UUIDPrimaryKey, Base):
    """One change made by back-office staff (admin API, admin UI or the ETL's service token).

    Written in the same transaction as the change it describes, so a change without its audit
    row (or the other way round) cannot be committed.
    """

    __tablename__ = "admin_audit"
    __table_args__ = (
        sa.Index("ix_admin_audit_entity", "entity", "entity_id"),
        sa.Index("ix_admin_audit_created", "created_at"),
    )

    actor: Mapped[str] = mapped_column(sa.String(255))  # the token's subject or the UI login
    action: Mapped[str] = mapped_column(sa.String(64))  # e.g. plan.create, refund.override
    entity: Mapped[str] = mapped_column(sa.String(64))
    entity_id: Mapped[str] = mapped_column(sa.String(100))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)


class ComplimentaryGrant(UUIDPrimaryKey, Timestamps, Base):
    """Access to a plan given by staff for free until ``valid_until`` (``revoked_at`` ends it)."""

    __tablename__ = "complimentary_grant"

    user_id: Mapped[UUID] = mapped_column(index=True)
    plan_id: Mapped[UUID] = mapped_column(sa.ForeignKey("plan.id"))
    valid_until: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(sa.String(500))
    granted_by: Mapped[str] = mapped_column(sa.String(255))
    revoked_at: Mapped[datetime | None] = when()
