"""Renewals paid from the wallet: subscriptions whose ``renewal_source`` is ``wallet_then_card``.

Decided at the claim (:mod:`billing_api.lifecycle.renewal_claims`), in the claim's transaction,
under billing's lock order (the subscriptions, then their pending wallet payments, then each
wallet's advisory lock, wallets in user and currency order so two runs never wait on each other
crosswise):

* **The balance covers the renewal**: the money is taken from the wallet at once (the ledger's
  ``wallet_spend``, keyed by the payment id, as at checkout) and the payment is a ``wallet``
  one. Like a free renewal it is settled by this run as succeeded, without the gateway: the
  period runs on from the old end. The balance is read under the wallet's lock, so a checkout
  paying from the same wallet at the same moment either comes first (and the renewal goes to
  the card) or waits and finds the balance without the renewal: never an overdraft.
* **It does not, and there is a card**: the card is charged as before.
* **It does not, and there is no card**: the renewal is a ``wallet`` payment settled by this run
  as failed (:data:`SHORT_REASON`), which schedules the dunning retries and tells the subscriber
  to top the wallet up; a retry after a top-up is paid from the wallet.

A wallet payment committed by a run that died before settling it stays pending; the next run
after the lease takes it up again as it is, a wallet payment (never a card charge): paid if its
money was taken already (:func:`billing_api.ledger.wallet_spends.spent`, so never twice), else
paid now if the balance covers it, else failed. Anything that ends such a payment without
completing it gives its money back (:func:`billing_api.ledger.wallet_spends.give_back`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.gateway import GatewayPayment
from billing_api.ledger import service as ledger
from billing_api.ledger import wallet_spends
from billing_api.models import PaymentStatus

WalletOutcome = Literal["paid", "short", "undecided"]
PAID: WalletOutcome = "paid"  # taken from the wallet: settled here as succeeded
SHORT: WalletOutcome = "short"  # not enough and no card to fall back on: settled here as failed
UNDECIDED: WalletOutcome = "undecided"  # an earlier run's pending wallet payment, not decided yet

SHORT_REASON = "not enough money in the wallet"


@dataclass(frozen=True)
class Draw:
    """A renewal the wallet may pay."""

    payment_id: UUID
    user_id: UUID
    amount: int
    currency: str
    description: str
    card: bool  # whether the card is charged when the wallet falls short


async def draw(session: AsyncSession, draws: Sequence[Draw]) -> dict[UUID, WalletOutcome]:
    """Pay what the wallets cover; the outcome of each renewal the wallet pays or fails (one
    left out is charged to its card). The caller holds the subscriptions' and payments' locks;
    the wallets' are taken here, in user and currency order."""
    outcomes: dict[UUID, WalletOutcome] = {}
    for renewal in sorted(draws, key=lambda d: (d.user_id, d.currency, d.payment_id)):
        await ledger.lock_wallet(session, renewal.user_id, renewal.currency)
        taken = await wallet_spends.take(
            session,
            payment_id=renewal.payment_id,
            user_id=renewal.user_id,
            amount=renewal.amount,
            currency=renewal.currency,
            description=renewal.description,
        )
        if taken:
            outcomes[renewal.payment_id] = PAID
        elif not renewal.card:
            outcomes[renewal.payment_id] = SHORT
    return outcomes


def settled_here(payment_id: UUID, outcome: WalletOutcome) -> GatewayPayment:
    """A wallet renewal's outcome without the gateway, settled like any charge's answer."""
    assert outcome != UNDECIDED, "a wallet renewal is decided at its claim"
    paid = outcome == PAID
    return GatewayPayment(
        payment_id=payment_id,
        status=PaymentStatus.SUCCEEDED if paid else PaymentStatus.FAILED,
        provider="",
        checkout_url=None,
        expires_at=None,
        payment_method_ref=None,
        failure_code=None if paid else "wallet_insufficient_funds",
        failure_message=None if paid else SHORT_REASON,
    )
