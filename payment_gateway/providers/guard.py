"""What every provider adapter is wrapped in: each call recorded before it is made, and every
answer the adapter could not read turned into :class:`ProviderAnswerUnreadable`.

An adapter reads a remote system's answers, and a remote answer can lack a field, carry a wrong
type or not be JSON at all; a stand-in or a new API version does that more often than the real
thing. Whatever the adapter then raises (``KeyError``, ``AttributeError``, ``TypeError``,
``ValueError``…) reaches the gateway as a :class:`ProviderError` (the documented 502), never as
a 500, and the call that may have charged, refunded or created something is already on record:
a ``provider_call`` row committed in its own transaction before the call and marked afterwards
(``answered``, ``refused``, ``unreadable``), which stays even when the request rolls back.

The wrapping is done once, by :class:`~.registry.Providers`, for every adapter; an adapter only
implements the protocol of :mod:`.base`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from payment_gateway.models import ProviderCallState
from payment_gateway.providers.base import (
    FETCH_CONCURRENCY,
    CheckoutCreated,
    CheckoutRequest,
    Customer,
    InvalidWebhook,
    OffSessionRequest,
    PaymentProvider,
    ProviderAnswerUnreadable,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    RefundRequest,
    WebhookNotice,
    WebhookSourceRefused,
)
from payment_gateway.providers.calls import DETAIL_LIMIT, ProviderCalls

T = TypeVar("T")


def _outcome(
    error: BaseException | None, ref: str | None
) -> tuple[ProviderCallState, str | None, str | None]:
    if error is None:
        return ProviderCallState.ANSWERED, ref, None
    state = (
        ProviderCallState.UNREADABLE
        if isinstance(error, ProviderAnswerUnreadable)
        else ProviderCallState.REFUSED
    )
    return state, None, str(error)


class GuardedProvider(PaymentProvider):
    """Any adapter, with its calls recorded and its failures mapped (see the module).

    It overrides every member of the protocol and hands each to the adapter: a member it
    inherited would run the protocol's default instead of the adapter's own (a webhook sender
    check, a bulk read). A test holds it to that (``test_provider_guard``).
    """

    def __init__(self, inner: PaymentProvider, calls: ProviderCalls | None) -> None:
        self.inner = inner
        self.calls = calls
        self.name = inner.name

    def __getattr__(self, attribute: str) -> Any:
        # What an adapter offers beyond the protocol (e.g. Stripe's action page details).
        return getattr(self.inner, attribute)

    async def _read(self, operation: str, call: Awaitable[Any], kind: type[T]) -> T:
        """The adapter's answer, or :class:`ProviderAnswerUnreadable` for anything else."""
        try:
            answer = await call
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderAnswerUnreadable(
                f"{self.name} {operation}: the answer could not be read"
                f" ({type(exc).__name__}: {exc})"[:DETAIL_LIMIT]
            ) from exc
        if not isinstance(answer, kind):
            raise ProviderAnswerUnreadable(
                f"{self.name} {operation}: answered {type(answer).__name__}, not {kind.__name__}"
            )
        return answer

    async def _recorded(
        self,
        operation: str,
        subject: Mapping[str, Any],
        call: Callable[[], Awaitable[Any]],
        kind: type[T],
    ) -> T:
        """Record the call, make it (only once recorded), read it, mark how it ended."""
        ids = await self.calls.start(self.name, operation, [subject]) if self.calls else []
        try:
            answer = await self._read(operation, call(), kind)
        except ProviderError as exc:
            if ids and self.calls:
                await self.calls.finish(ids, [_outcome(exc, None)])
            raise
        if ids and self.calls:
            await self.calls.finish(ids, [_outcome(None, _ref_of(answer))])
        return answer

    # --- calls that may move money or create something: recorded -----------------------------

    async def create_customer(self, customer: Customer) -> str | None:
        async def create() -> _CustomerRef:
            ref = await self.inner.create_customer(customer)
            if ref is not None and not isinstance(ref, str):
                raise ProviderAnswerUnreadable(f"{self.name} create_customer: answered {ref!r}")
            return _CustomerRef(ref)

        subject = {"customer_id": customer.id}
        return (await self._recorded("create_customer", subject, create, _CustomerRef)).provider_ref

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutCreated:
        subject = {"payment_id": request.payment_id, "customer_id": request.customer.id}
        return await self._recorded(
            "create_checkout", subject, lambda: self.inner.create_checkout(request), CheckoutCreated
        )

    async def charge_off_session(self, request: OffSessionRequest) -> ProviderPayment:
        subject = {"payment_id": request.payment_id, "customer_id": request.customer.id}
        return await self._recorded(
            "charge_off_session",
            subject,
            lambda: self.inner.charge_off_session(request),
            ProviderPayment,
        )

    async def charge_off_session_many(
        self, requests: Sequence[OffSessionRequest]
    ) -> list[ProviderPayment | ProviderError]:
        """Each charge recorded before the batch is asked; answered per charge, one the adapter
        could not read as :class:`ProviderAnswerUnreadable` (all of them when the whole answer
        could not be read: which went through is then unknown)."""
        subjects = [{"payment_id": r.payment_id, "customer_id": r.customer.id} for r in requests]
        try:
            ids = (
                await self.calls.start(self.name, "charge_off_session", subjects)
                if self.calls
                else []
            )
        except ProviderError as exc:  # not recorded, so not asked: each charge may be sent again
            return [exc for _ in requests]
        answers = await self._charge_many(requests)
        if ids and self.calls:
            await self.calls.finish(
                ids,
                [
                    _outcome(a, None)
                    if isinstance(a, ProviderError)
                    else _outcome(None, a.provider_ref)
                    for a in answers
                ],
            )
        return answers

    async def _charge_many(
        self, requests: Sequence[OffSessionRequest]
    ) -> list[ProviderPayment | ProviderError]:
        if type(self.inner).charge_off_session_many is PaymentProvider.charge_off_session_many:
            # The protocol's default, one charge at a time, each read on its own.
            limit = asyncio.Semaphore(FETCH_CONCURRENCY)

            async def charge(request: OffSessionRequest) -> ProviderPayment | ProviderError:
                async with limit:
                    try:
                        return await self._read(
                            "charge_off_session",
                            self.inner.charge_off_session(request),
                            ProviderPayment,
                        )
                    except ProviderError as exc:
                        return exc

            return list(await asyncio.gather(*(charge(request) for request in requests)))
        try:
            answers = await self._read(
                "charge_off_session_many", self.inner.charge_off_session_many(requests), list
            )
        except ProviderError as exc:
            # Unreadable: which charges went through is unknown, each kept pending. Refused or
            # unreachable as a whole: none was made, each answered so and may be sent again
            # (never the whole batch's request failing, its calls left "in flight").
            return [exc for _ in requests]
        if len(answers) != len(requests):
            unreadable = ProviderAnswerUnreadable(
                f"{self.name} charge_off_session_many: {len(answers)} answers"
                f" for {len(requests)} charges"
            )
            return [unreadable for _ in requests]
        return [
            answer
            if isinstance(answer, ProviderPayment | ProviderError)
            else ProviderAnswerUnreadable(
                f"{self.name} charge_off_session_many: answered {type(answer).__name__}"
            )
            for answer in answers
        ]

    async def refund(self, request: RefundRequest) -> ProviderRefund:
        subject = {"payment_id": request.payment_id, "refund_id": request.refund_id}
        return await self._recorded(
            "refund", subject, lambda: self.inner.refund(request), ProviderRefund
        )

    async def cancel_payment(self, provider_ref: str) -> ProviderPayment:
        subject = {"provider_ref": provider_ref}
        return await self._recorded(
            "cancel_payment",
            subject,
            lambda: self.inner.cancel_payment(provider_ref),
            ProviderPayment,
        )

    # --- reads: mapped, not recorded -----------------------------------------------------------

    async def fetch_payment(self, provider_ref: str) -> ProviderPayment:
        return await self._read(
            "fetch_payment", self.inner.fetch_payment(provider_ref), ProviderPayment
        )

    async def fetch_payments(self, provider_refs: Sequence[str]) -> Mapping[str, ProviderPayment]:
        found: object = await self._read(
            "fetch_payments", self.inner.fetch_payments(provider_refs), object
        )
        if not isinstance(found, Mapping) or not all(
            isinstance(snapshot, ProviderPayment) for snapshot in found.values()
        ):
            raise ProviderAnswerUnreadable(f"{self.name} fetch_payments: not payments")
        return found  # checked just above

    async def fetch_refund(
        self, payment_provider_ref: str, refund_ref: str
    ) -> ProviderRefund | None:
        found: object = await self._read(
            "fetch_refund", self.inner.fetch_refund(payment_provider_ref, refund_ref), object
        )
        if found is not None and not isinstance(found, ProviderRefund):
            raise ProviderAnswerUnreadable(f"{self.name} fetch_refund: not a refund")
        return found

    # --- webhooks: the adapter's own checks, failing closed --------------------------------------

    def verify_source(self, peer: str | None, headers: Mapping[str, str]) -> None:
        try:
            self.inner.verify_source(peer, headers)
        except WebhookSourceRefused:
            raise
        except Exception as exc:
            # A check that cannot be made refuses: an unsigned webhook is trusted by its sender.
            raise WebhookSourceRefused(
                f"the webhook's sender could not be checked ({type(exc).__name__})"
            ) from exc

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookNotice:
        try:
            notice = self.inner.parse_webhook(body, headers)
        except InvalidWebhook:
            raise
        except Exception as exc:
            # Refused like a bad signature (400, nothing stored): the provider delivers again.
            raise InvalidWebhook(f"the webhook could not be read ({type(exc).__name__})") from exc
        if not isinstance(notice, WebhookNotice):
            raise InvalidWebhook("the webhook could not be read")
        return notice


@dataclass(frozen=True)
class _CustomerRef:
    provider_ref: str | None


def _ref_of(answer: object) -> str | None:
    ref = getattr(answer, "provider_ref", None)
    return ref if isinstance(ref, str) else None


def guard(provider: PaymentProvider, calls: ProviderCalls | None) -> PaymentProvider:
    """``provider`` wrapped (once) in :class:`GuardedProvider`."""
    if isinstance(provider, GuardedProvider):
        return provider
    return GuardedProvider(provider, calls)
