"""The renewal run's step for charges still waiting for the cardholder's confirmation.

A claimed renewal whose payment is ``requires_action`` is not charged again: at its next dunning
step the gateway is asked to cancel it, and its answer (final: ``succeeded`` if the cardholder
confirmed first, else ``failed``) is settled with the charges' answers. The design, and why it
neither loses a confirmation nor charges a period twice, is in
:mod:`billing_api.activation.confirmations`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from billing_api.gateway import GatewayPayment, GatewayRefused, GatewayUnavailable
from billing_api.lifecycle.renewal_claims import RenewalCharge
from billing_api.lifecycle.service import JobContext

logger = logging.getLogger(__name__)

CONCURRENCY = 8


async def cancel_unconfirmed(
    ctx: JobContext, renewals: Sequence[RenewalCharge]
) -> list[GatewayPayment]:
    """The gateway's final answer for each unconfirmed charge it could cancel; one it could not
    be asked about stays ``requires_action`` until the run after the lease asks again."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def cancel(renewal: RenewalCharge) -> GatewayPayment | None:
        async with limit:
            try:
                return await ctx.gateway.cancel_payment(renewal.payment_id)
            except GatewayRefused as exc:  # billing and the gateway disagree: a bug
                logger.error("unconfirmed renewal %s not cancelled: %s", renewal.payment_id, exc)
            except GatewayUnavailable as exc:
                logger.warning("unconfirmed renewal %s not cancelled: %s", renewal.payment_id, exc)
            return None

    answers = await asyncio.gather(*(cancel(renewal) for renewal in renewals))
    return [answer for answer in answers if answer is not None]
