"""Event contracts: the envelope and every v1 payload, one frozen class per event type.

Payload classes are named in the past tense after what happened and carry their routing key in
``event_type``. Fields are only ever added (with defaults), never renamed or removed, so an older
consumer keeps reading newer events.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Literal, TypeVar
from uuid import UUID, uuid4

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared import clock
from shared.money import Money


class EventPayload(BaseModel):
    """Base of every payload; subclasses set ``event_type`` and register themselves."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    event_type: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[EventPayload]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.event_type:
            if cls.event_type in EventPayload.registry:
                raise TypeError(f"event type {cls.event_type!r} is declared twice")
            EventPayload.registry[cls.event_type] = cls


P = TypeVar("P", bound=EventPayload)


class Envelope(BaseModel, Generic[P]):
    """What travels on the bus: metadata around one payload."""

    model_config = ConfigDict(frozen=True)

    id: UUID = Field(default_factory=uuid4)
    type: str
    version: int = 1
    occurred_at: AwareDatetime
    producer: str
    correlation_id: str | None = None
    data: P


class UnknownEventType(ValueError):
    pass


def envelope_class(payload_class: type[P]) -> type[Envelope[P]]:
    """The parametrised envelope for one payload class (pydantic caches these)."""
    return Envelope[payload_class]  # type: ignore[valid-type]


def wrap(
    payload: P, *, producer: str, correlation_id: str | None = None, event_id: UUID | None = None
) -> Envelope[P]:
    """Put a payload into a fresh envelope stamped with the suite clock."""
    return envelope_class(type(payload))(
        id=event_id or uuid4(),
        type=payload.event_type,
        occurred_at=clock.now(),
        producer=producer,
        correlation_id=correlation_id,
        data=payload,
    )


def encode(envelope: Envelope[Any]) -> bytes:
    """The bytes that travel for ``envelope``: compact UTF-8 JSON, written in one pass.

    pydantic-core serialises the model straight to bytes: the same bytes as
    ``orjson.dumps(envelope.model_dump(mode="json"))``, without building the dict in between
    (about half the time). The outbox stores exactly these bytes and the relay publishes them.
    """
    return envelope.__pydantic_serializer__.to_json(envelope)


def decode(body: bytes | str) -> Envelope[EventPayload]:
    """Parse a message body into an envelope whose ``data`` is the typed payload."""
    raw = orjson.loads(body)
    event_type = raw.get("type") if isinstance(raw, dict) else None
    payload_class = EventPayload.registry.get(event_type or "")
    if payload_class is None:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    return envelope_class(payload_class).model_validate(raw)


# --- shared pieces ---------------------------------------------------------------------------


class Customer(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID
    email: str | None = None


class PaymentEvent(EventPayload):
    """Fields every payment event from the gateway carries."""

    payment_id: UUID
    customer: Customer
    amount: Money
    provider: str
    provider_ref: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class RefundEvent(EventPayload):
    refund_id: UUID
    payment_id: UUID
    customer: Customer
    amount: Money
    provider: str
    provider_ref: str | None = None


class UserNotice(EventPayload):
    """Business events a person is told about: who, where to write and in which language."""

    user_id: UUID
    email: str | None = None
    locale: str = "ru"
    timezone: str | None = None


class PlanSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    plan_id: UUID
    code: str
    name: str


class CardSummary(BaseModel):
    """What may be shown of a saved card: never its number, only brand, last four and expiry."""

    model_config = ConfigDict(frozen=True)

    brand: str | None = None  # "visa", "mastercard", "mir", as the provider names it
    last4: str | None = None
    exp_month: int | None = Field(None, ge=1, le=12)
    exp_year: int | None = Field(None, ge=2000, le=2200)


# --- payment_gateway → billing -----------------------------------------------------------------


class PaymentSucceeded(PaymentEvent):
    event_type = "payment.succeeded"
    payment_method_ref: str | None = None
    card: CardSummary | None = None  # the card saved (or charged), when the provider says


class PaymentFailed(PaymentEvent):
    event_type = "payment.failed"
    failure_code: str | None = None
    failure_message: str | None = None
    # A decline that can never succeed with this card (lost, stolen, expired, closed account):
    # retrying it is pointless, the payer must give another card. Decided by the gateway, which
    # knows its providers' decline codes.
    hard_decline: bool = False


class PaymentActionRequired(PaymentEvent):
    """An off-session charge the cardholder must confirm (3-D Secure) at ``action_url``."""

    event_type = "payment.action_required"
    action_url: str
    failure_code: str | None = None


class PaymentExpired(PaymentEvent):
    event_type = "payment.expired"


class PaymentDisputed(PaymentEvent):
    """The payer disputed the charge at their bank; the provider holds ``disputed_amount`` back."""

    event_type = "payment.disputed"
    reason: str | None = None
    disputed_amount: Money | None = None  # None from older producers: the whole amount
    dispute_ref: str | None = None  # the provider's dispute


class RefundSucceeded(RefundEvent):
    event_type = "refund.succeeded"


class RefundFailed(RefundEvent):
    event_type = "refund.failed"
    failure_message: str | None = None


# --- billing → notifier ------------------------------------------------------------------------


class SubscriptionActivated(UserNotice):
    event_type = "subscription.activated"
    subscription_id: UUID
    plan: PlanSummary
    amount: Money
    current_period_end: AwareDatetime
    trial: bool = False
    receipt_url: str | None = None  # the signed link to the receipt of the money moved


class SubscriptionRenewed(UserNotice):
    event_type = "subscription.renewed"
    subscription_id: UUID
    plan: PlanSummary
    amount: Money
    current_period_end: AwareDatetime
    receipt_url: str | None = None  # the signed link to the receipt of the money moved


class SubscriptionPlanChanged(UserNotice):
    """An upgrade took effect: paid now, less the credit for the unused part of the old period.
    (A downgrade takes effect at renewal; ``subscription.renewed`` then names the new plan.)"""

    event_type = "subscription.plan_changed"
    subscription_id: UUID
    plan: PlanSummary
    previous_plan: PlanSummary
    amount: Money
    credit: Money
    current_period_end: AwareDatetime
    receipt_url: str | None = None  # the signed link to the receipt of the money moved


class SubscriptionRenewalFailed(UserNotice):
    event_type = "subscription.renewal_failed"
    subscription_id: UUID
    plan: PlanSummary
    amount: Money
    next_attempt_at: AwareDatetime | None = None
    reason: str | None = None
    update_url: str | None = None  # where the subscriber updates the card or pays what is due
    # "card" or "wallet_then_card": whether the wallet is tried before the card (a plain str, so
    # a consumer older than a new value still reads the event)
    renewal_source: str = "card"


class SubscriptionExpiring(UserNotice):
    event_type = "subscription.expiring"
    subscription_id: UUID
    plan: PlanSummary
    current_period_end: AwareDatetime


class SubscriptionGraceStarted(UserNotice):
    event_type = "subscription.grace_started"
    subscription_id: UUID
    plan: PlanSummary
    amount_due: Money
    grace_until: AwareDatetime
    update_url: str | None = None  # where the subscriber updates the card or pays what is due
    renewal_source: str = "card"  # as in SubscriptionRenewalFailed


class SubscriptionPaymentActionRequired(UserNotice):
    """A renewal waits for the cardholder to confirm it (3-D Secure) at ``action_url``;
    unconfirmed by ``confirm_by`` (the next dunning step) it counts as a failed renewal."""

    event_type = "subscription.payment_action_required"
    subscription_id: UUID
    plan: PlanSummary
    payment_id: UUID
    amount: Money
    action_url: str
    confirm_by: AwareDatetime | None = None


class SubscriptionPaymentMethodRequired(UserNotice):
    """A renewal was declined for good (the card is lost, stolen, expired or closed): no retry
    is made, access runs on through the grace until ``grace_until``, the card must be replaced."""

    event_type = "subscription.payment_method_required"
    subscription_id: UUID
    plan: PlanSummary
    amount_due: Money
    reason: str | None = None
    grace_until: AwareDatetime | None = None
    update_url: str | None = None


class PaymentMethodExpiring(UserNotice):
    """The saved card expires before the subscription's next renewal."""

    event_type = "payment_method.expiring"
    subscription_id: UUID
    plan: PlanSummary
    card: CardSummary
    next_renewal_at: AwareDatetime | None = None
    update_url: str | None = None


class SubscriptionPaused(UserNotice):
    """A pause was asked for (``starts_at`` is the end of the paid period) or has begun; no
    access and no charge until ``resumes_at``, when the subscription renews as usual."""

    event_type = "subscription.paused"
    subscription_id: UUID
    plan: PlanSummary
    starts_at: AwareDatetime
    resumes_at: AwareDatetime


class SubscriptionResumed(UserNotice):
    """A pause was taken back before it began, or ended early by the subscriber."""

    event_type = "subscription.resumed"
    subscription_id: UUID
    plan: PlanSummary
    resumed_at: AwareDatetime
    current_period_end: AwareDatetime | None = None


class SubscriptionExpired(UserNotice):
    event_type = "subscription.expired"
    subscription_id: UUID
    plan: PlanSummary
    expired_at: AwareDatetime


class SubscriptionCanceled(UserNotice):
    event_type = "subscription.canceled"
    subscription_id: UUID
    plan: PlanSummary
    canceled_at: AwareDatetime
    access_until: AwareDatetime | None = None
    refund_amount: Money | None = None


class PurchaseCompleted(UserNotice):
    event_type = "purchase.completed"
    purchase_id: UUID
    movie_id: UUID
    movie_title: str
    kind: Literal["buy", "rent"]
    amount: Money
    valid_until: AwareDatetime | None = None
    receipt_url: str | None = None  # the signed link to the receipt of the money moved


class RefundCompleted(UserNotice):
    event_type = "refund.completed"
    refund_id: UUID
    payment_id: UUID
    amount: Money
    description: str | None = None
    receipt_url: str | None = None  # the signed link to the receipt of the money moved


class WalletToppedUp(UserNotice):
    event_type = "wallet.topped_up"
    payment_id: UUID | None = None
    amount: Money
    balance: Money
    receipt_url: str | None = None  # the signed link to the receipt of the money moved


class GiftEvent(UserNotice):
    """A gift's story, told to its buyer (``user_id``, ``email``) -- except
    :class:`GiftDelivered`, whose ``email`` is the recipient's."""

    gift_id: UUID
    plan: PlanSummary
    months: int


class GiftPurchased(GiftEvent):
    event_type = "gift.purchased"
    amount: Money
    code: str
    recipient_email: str
    deliver_at: AwareDatetime | None = None  # None: delivered at once
    expires_at: AwareDatetime | None = None
    receipt_url: str | None = None  # the signed link to the receipt of the money moved


class GiftDelivered(GiftEvent):
    """Sent to ``email`` = the recipient: the code, the link that redeems it and the buyer's
    message."""

    event_type = "gift.delivered"
    code: str
    redeem_url: str
    message: str | None = None
    from_email: str | None = None
    expires_at: AwareDatetime | None = None


class GiftRedeemed(GiftEvent):
    event_type = "gift.redeemed"
    recipient_email: str
    redeemed_at: AwareDatetime


class GiftExpiring(GiftEvent):
    event_type = "gift.expiring"
    code: str
    recipient_email: str
    expires_at: AwareDatetime


# --- billing → access_api ----------------------------------------------------------------------


class Grant(BaseModel):
    """One reason a user may watch: a subscription, a purchased movie or a gift."""

    model_config = ConfigDict(frozen=True)

    source: Literal["subscription", "purchase", "complimentary", "household"]
    source_id: UUID
    plan_id: UUID | None = None
    movie_id: UUID | None = None
    role: str | None = None
    valid_until: AwareDatetime | None = None


class EntitlementsChanged(EventPayload):
    """A full snapshot of one user's grants; ``version`` grows with every change."""

    event_type = "entitlements.changed"
    user_id: UUID
    version: int
    grants: tuple[Grant, ...] = ()


class PlanChanged(EventPayload):
    """A full snapshot of what a plan covers; ``version`` grows with every change."""

    event_type = "plan.changed"
    plan_id: UUID
    code: str
    version: int
    all_movies: bool
    movie_ids: tuple[UUID, ...] = ()
    role: str | None = None
    active: bool = True


def event_types() -> list[str]:
    """Every routing key the suite knows."""
    return sorted(EventPayload.registry)


# --- households (billing → notifier) -------------------------------------------------------------


class HouseholdInvited(UserNotice):
    """An owner invited ``email`` to share their subscription. ``user_id`` is the owner's (the
    invited person may have no account yet); ``email`` and ``locale`` are the invitation's."""

    event_type = "household.invited"
    member_id: UUID
    subscription_id: UUID
    plan: PlanSummary
    owner_email: str | None = None
    code: str
    join_url: str


class HouseholdJoined(UserNotice):
    """A person joined a household: they watch through its owner's subscription until it ends."""

    event_type = "household.joined"
    member_id: UUID
    subscription_id: UUID
    plan: PlanSummary
    owner_email: str | None = None


class HouseholdRemoved(UserNotice):
    """A member lost access through a household: ``reason`` is ``removed_by_owner``,
    ``removed_by_staff``, ``seats_reduced`` (the owner's plan has fewer seats) or
    ``subscription_ended``."""

    event_type = "household.removed"
    member_id: UUID
    subscription_id: UUID
    plan: PlanSummary
    reason: str
