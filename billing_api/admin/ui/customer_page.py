"""One customer on one page (``/admin/customer/page/{user_id}``): their subscriptions, payments
with receipt links, wallet, complimentary grants and the audit trail of what staff did for them,
with the two things support does most: refund a payment and give complimentary access.

Both forms run the very service functions of the admin API (``admin.customers.service.refund``
and ``grant``) in a transaction of their own, so the refund, its events and its audit row are
written exactly as the API writes them. The role of the logged-in staff member decides which
forms are shown and is checked again when a form is posted (a ``support`` refund above
``BILLING_ADMIN_SUPPORT_REFUND_LIMIT`` is refused). Forms carry a token kept in the signed
session (besides the same-origin check of every post and the SameSite=Strict cookie).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from pydantic import ValidationError
from sqladmin import expose
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from billing_api import locks
from billing_api.admin import roles
from billing_api.admin.customers import service as customers
from billing_api.admin.customers.schemas import AdminRefundIn, ComplimentaryIn
from billing_api.admin.ui.edit import actor
from billing_api.admin.ui.lists import CustomerView
from billing_api.admin.ui.permissions import staff_roles
from billing_api.config import AdminUISettings, BillingSettings
from billing_api.gateway import GatewayClient
from billing_api.models import (
    AdminAudit,
    ComplimentaryGrant,
    Payment,
    PaymentStatus,
    Plan,
    Refund,
    Subscription,
)
from billing_api.receipts import links
from billing_api.wallet import service as wallet
from shared import money
from shared.errors import AppError

CSRF_KEY = "customer_page_csrf"
FLASH_KEY = "customer_page_flash"
REFUNDABLE = (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED)


def _csrf_token(request: Request) -> str:
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


def _csrf_ok(request: Request, sent: object) -> bool:
    kept = request.session.get(CSRF_KEY)
    return isinstance(kept, str) and isinstance(sent, str) and hmac.compare_digest(kept, sent)


async def _gather(
    session: AsyncSession, settings: BillingSettings, user_id: UUID
) -> dict[str, Any]:
    subscriptions = (
        await session.execute(
            sa.select(Subscription, Plan.name)
            .join(Plan, Plan.id == Subscription.plan_id)
            .where(Subscription.user_id == user_id)
            .order_by(Subscription.created_at.desc())
        )
    ).all()
    payments = (
        await session.scalars(
            sa.select(Payment)
            .options(selectinload(Payment.receipt))
            .where(Payment.user_id == user_id)
            .order_by(Payment.created_at.desc())
            .limit(100)
        )
    ).all()
    grants = (
        await session.scalars(
            sa.select(ComplimentaryGrant)
            .where(ComplimentaryGrant.user_id == user_id)
            .order_by(ComplimentaryGrant.created_at.desc())
        )
    ).all()
    refunds_made = dict(
        (
            await session.execute(
                sa.select(Refund.payment_id, sa.func.count())
                .where(Refund.payment_id.in_([p.id for p in payments]))
                .group_by(Refund.payment_id)
            )
        ).all()
    )
    about = {str(user_id)} | {str(p.id) for p in payments} | {str(g.id) for g in grants}
    audit_rows = (
        await session.scalars(
            sa.select(AdminAudit)
            .where(AdminAudit.entity_id.in_(about))
            .order_by(AdminAudit.created_at.desc())
            .limit(100)
        )
    ).all()
    plans = (await session.scalars(sa.select(Plan).order_by(Plan.name))).all()
    email = next((p.email for p in payments if p.email), None) or next(
        (s.email for s, _ in subscriptions if s.email), None
    )
    return {
        "user_id": user_id,
        "email": email,
        "subscriptions": subscriptions,
        "payments": payments,
        "receipt_url": lambda payment: links.receipt_url(settings, "payment", payment.id),
        "grants": grants,
        "refunds_made": refunds_made,
        "audit_rows": audit_rows,
        "plans": [plan for plan in plans if plan.active],
        "plan_names": {plan.id: plan.name for plan in plans},
        "when": lambda moment: "" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC"),
        "wallet": await wallet.wallet(session, user_id, settings.default_currency),
    }


class CustomerPageView(CustomerView):
    """The customers list, each customer leading to their page."""

    def _billing(self, request: Request) -> Any:
        return request.app.state.billing_app

    @expose("/page/{user_id}", methods=["GET"])
    async def customer_page(self, request: Request) -> Response:
        try:
            user_id = UUID(request.path_params["user_id"])
        except ValueError:
            return Response("not a customer id", status_code=404)
        billing = self._billing(request)
        held = staff_roles(request)
        ui_settings: AdminUISettings = billing.state.admin_ui_settings
        async with self.session_maker() as session:
            context = await _gather(session, billing.state.settings, user_id)
        context.update(
            {
                "csrf": _csrf_token(request),
                "flash": request.session.pop(FLASH_KEY, None),
                "can_refund": roles.can_refund_at_all(held),
                "refund_limit": roles.refund_limit(held, ui_settings.support_refund_limit),
                "can_grant": roles.can_grant(held),
                "refundable": REFUNDABLE,
                "amount": money.format_minor_units,
                "default_currency": billing.state.settings.default_currency,
            }
        )
        return await self.templates.TemplateResponse(request, "customer.html", context)

    def _back(self, request: Request, user_id: str, message: str, ok: bool) -> Response:
        request.session[FLASH_KEY] = {"ok": ok, "text": message}
        url = request.url_for("admin:view-customer-customer_page", user_id=user_id)
        return RedirectResponse(url, status_code=303)

    @expose("/page/{user_id}/refund", methods=["POST"])
    async def refund(self, request: Request) -> Response:
        user_id = request.path_params["user_id"]
        held = staff_roles(request)
        if not roles.can_refund_at_all(held):
            return Response("your role may not refund payments", status_code=403)
        form = await request.form()
        if not _csrf_ok(request, form.get("csrf")):
            return Response("the form expired: reload the page", status_code=403)
        billing = self._billing(request)
        ui_settings: AdminUISettings = billing.state.admin_ui_settings
        gateway: GatewayClient = billing.state.gateway
        try:
            payment_id = UUID(str(form.get("payment_id", "")))
            async with self.session_maker() as session, session.begin():
                # Locked (in billing's lock order) until the refund is written: a second post
                # of the same form, a double click, waits here and then finds the refund made.
                payment = await locks.lock_payment(session, payment_id)
                if payment is None or str(payment.user_id) != user_id:
                    return self._back(request, user_id, "No such payment of this customer.", False)
                if await _refunds_made(session, payment_id) != _int(form.get("refunds_seen")):
                    return self._back(request, user_id, CHANGED, False)
                typed = str(form.get("amount", "")).strip()
                body = AdminRefundIn(
                    reason=str(form.get("reason", "")).strip(),
                    amount=money.to_minor_units(typed, payment.currency) if typed else None,
                )
                made = await customers.refund(
                    session,
                    gateway,
                    actor(request),
                    payment_id,
                    body,
                    limit=roles.refund_limit(held, ui_settings.support_refund_limit),
                    limit_currency=billing.state.settings.default_currency,
                )
        except AppError as exc:
            return self._back(request, user_id, f"Not refunded: {exc.detail}", False)
        except (ValidationError, ValueError) as exc:
            return self._back(request, user_id, f"Not refunded: {_problem(exc)}", False)
        shown = money.format_minor_units(made.amount.amount, made.amount.currency)
        return self._back(request, user_id, f"Refund of {shown} {made.amount.currency} made.", True)

    @expose("/page/{user_id}/grant", methods=["POST"])
    async def grant(self, request: Request) -> Response:
        user_id = request.path_params["user_id"]
        if not roles.can_grant(staff_roles(request)):
            return Response("your role may not grant access", status_code=403)
        form = await request.form()
        if not _csrf_ok(request, form.get("csrf")):
            return Response("the form expired: reload the page", status_code=403)
        try:
            body = ComplimentaryIn(
                plan_id=UUID(str(form.get("plan_id", ""))),
                days=int(str(form.get("days", ""))),
                reason=str(form.get("reason", "")).strip(),
            )
            async with self.session_maker() as session, session.begin():
                await customers.grant(session, actor(request), UUID(user_id), body)
        except AppError as exc:
            return self._back(request, user_id, f"Not granted: {exc.detail}", False)
        except (ValidationError, ValueError) as exc:
            return self._back(request, user_id, f"Not granted: {_problem(exc)}", False)
        return self._back(
            request, user_id, f"Complimentary access for {body.days} days given.", True
        )


CHANGED = (
    "Not refunded: the payment was refunded since the page was loaded."
    " Check it below before refunding again."
)


async def _refunds_made(session: AsyncSession, payment_id: UUID) -> int:
    count = await session.scalar(
        sa.select(sa.func.count()).select_from(Refund).where(Refund.payment_id == payment_id)
    )
    return int(count or 0)


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
    return str(exc)
