"""Tables of the ``billing`` schema, one module per domain: catalog, discounts, subscriptions,
purchases, payments, refunds, receipts, the ledger, plumbing and the back office. Constraints
that protect money live in them, in the database; every name is re-exported here.
"""

from billing_api.models.back_office import AdminAudit, ComplimentaryGrant
from billing_api.models.base import Base, status_column, when
from billing_api.models.catalog import Movie, Plan, PlanMovie
from billing_api.models.discounts import (
    MonthTier,
    PersonalDiscount,
    PromoCode,
    PromoRedemption,
    PromoRedemptionStatus,
)
from billing_api.models.gifts import Gift, GiftCodeFailure, GiftStatus
from billing_api.models.households import HouseholdMember, HouseholdMemberStatus
from billing_api.models.ledger import LedgerEntry, LedgerTransaction
from billing_api.models.payments import Payment, PaymentPurpose, PaymentStatus
from billing_api.models.plumbing import EntitlementVersion, IdempotencyKey, IdempotencyKeyStatus
from billing_api.models.portal import PortalFormSubmission, PortalLink
from billing_api.models.purchases import Purchase, PurchaseStatus
from billing_api.models.receipts import Receipt, ReceiptCounter, ReceiptKind
from billing_api.models.refunds import Refund, RefundStatus
from billing_api.models.staff import StaffLoginFailure, StaffUser
from billing_api.models.subscriptions import (
    RenewalSource,
    Subscription,
    SubscriptionPause,
    SubscriptionStatus,
)

__all__ = [
    "AdminAudit",
    "Base",
    "ComplimentaryGrant",
    "EntitlementVersion",
    "Gift",
    "GiftCodeFailure",
    "GiftStatus",
    "HouseholdMember",
    "HouseholdMemberStatus",
    "IdempotencyKey",
    "IdempotencyKeyStatus",
    "LedgerEntry",
    "LedgerTransaction",
    "MonthTier",
    "Movie",
    "Payment",
    "PaymentPurpose",
    "PaymentStatus",
    "PersonalDiscount",
    "Plan",
    "PlanMovie",
    "PortalFormSubmission",
    "PortalLink",
    "PromoCode",
    "PromoRedemption",
    "PromoRedemptionStatus",
    "Purchase",
    "PurchaseStatus",
    "Receipt",
    "ReceiptCounter",
    "ReceiptKind",
    "Refund",
    "RefundStatus",
    "RenewalSource",
    "StaffLoginFailure",
    "StaffUser",
    "Subscription",
    "SubscriptionPause",
    "SubscriptionStatus",
    "status_column",
    "when",
]
