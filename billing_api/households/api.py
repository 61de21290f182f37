"""Households: the owner's seats under a subscription, and joining one with a code."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response, status

from billing_api.deps import CustomerDep, SessionDep, SettingsDep
from billing_api.households import service
from billing_api.households.schemas import (
    JoinIn,
    MemberInviteIn,
    MemberOut,
    MembershipOut,
    MembershipsOut,
    MembersOut,
)

members_router = APIRouter(prefix="/api/v1/subscriptions", tags=["households"])
households_router = APIRouter(prefix="/api/v1/households", tags=["households"])


@members_router.post(
    "/{subscription_id}/members", response_model=MemberOut, status_code=status.HTTP_201_CREATED
)
async def invite_member(
    subscription_id: UUID,
    body: MemberInviteIn,
    customer: CustomerDep,
    session: SessionDep,
    settings: SettingsDep,
) -> MemberOut:
    """Invite someone to share my subscription: an email with the code goes to them."""
    member = await service.invite(session, settings, customer, subscription_id, body.email)
    return service.member_out(member)


@members_router.get("/{subscription_id}/members", response_model=MembersOut)
async def list_members(
    subscription_id: UUID, customer: CustomerDep, session: SessionDep
) -> MembersOut:
    """My household: seats, invitations and members."""
    return await service.members(session, customer.id, subscription_id)


@members_router.delete(
    "/{subscription_id}/members/{member_id}", status_code=status.HTTP_204_NO_CONTENT
)
async def remove_member(
    subscription_id: UUID, member_id: UUID, customer: CustomerDep, session: SessionDep
) -> Response:
    """Remove a member (their access ends at once) or take back an invitation."""
    await service.remove_by_owner(session, customer.id, subscription_id, member_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@households_router.post("/join", response_model=MembershipOut)
async def join_household(body: JoinIn, customer: CustomerDep, session: SessionDep) -> MembershipOut:
    """Join the household an invitation is for: access through its owner's subscription."""
    member = await service.join(session, customer, body.code)
    return service.membership_out(member)


@households_router.get("/memberships", response_model=MembershipsOut)
async def list_memberships(customer: CustomerDep, session: SessionDep) -> MembershipsOut:
    """The households I am a member of now."""
    found = await service.memberships(session, customer.id)
    return MembershipsOut(items=[service.membership_out(member) for member in found])


@households_router.post(
    "/memberships/{member_id}/leave",
    response_model=MembershipOut,
    responses={404: {"description": "No membership of mine has this id."}},
)
async def leave_household(
    member_id: UUID, customer: CustomerDep, session: SessionDep
) -> MembershipOut:
    """Leave a household: my access through it ends at once and its owner's seat is free."""
    return service.membership_out(await service.leave(session, customer.id, member_id))
