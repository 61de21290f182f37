"""The events a household's transitions publish, each built here and nowhere else."""

from __future__ import annotations

from billing_api.models import HouseholdMember, Plan
from billing_api.subscriptions.notices import plan_summary
from shared import events


def join_url(account_url: str, code: str) -> str:
    """Where an invited person joins: the account app's household page
    (``BILLING_ACCOUNT_URL`` + ``/household?code=…``), which posts the code to
    ``POST /api/v1/households/join``."""
    return f"{account_url.rstrip('/')}/household?code={code}"


def invited(
    member: HouseholdMember, plan: Plan, *, owner_email: str | None, account_url: str
) -> events.HouseholdInvited:
    return events.HouseholdInvited(
        user_id=member.owner_id,
        email=member.email,
        locale=member.locale,
        member_id=member.id,
        subscription_id=member.subscription_id,
        plan=plan_summary(plan),
        owner_email=owner_email,
        code=member.code,
        join_url=join_url(account_url, member.code),
    )


def joined(
    member: HouseholdMember, plan: Plan, *, owner_email: str | None
) -> events.HouseholdJoined:
    assert member.user_id is not None
    return events.HouseholdJoined(
        user_id=member.user_id,
        email=member.email,
        locale=member.locale,
        member_id=member.id,
        subscription_id=member.subscription_id,
        plan=plan_summary(plan),
        owner_email=owner_email,
    )


def removed(member: HouseholdMember, plan: Plan, *, reason: str) -> events.HouseholdRemoved:
    assert member.user_id is not None
    return events.HouseholdRemoved(
        user_id=member.user_id,
        email=member.email,
        locale=member.locale,
        member_id=member.id,
        subscription_id=member.subscription_id,
        plan=plan_summary(plan),
        reason=reason,
    )
