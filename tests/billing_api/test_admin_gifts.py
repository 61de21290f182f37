"""Gifts in the back office: found by code or email, revoked (audited) through the API and the
UI; a revoked code no longer redeems."""

from __future__ import annotations

from uuid import UUID, uuid4

from tests.billing_api.conftest import Suite
from tests.billing_api.test_admin_api import ADMIN_ID, admin, admin_headers
from tests.billing_api.test_admin_ui import admin_token, login
from tests.billing_api.test_gift_refunds import balance
from tests.billing_api.test_gifts import FRIEND, gift_by_wallet


class TestSearch:
    async def test_staff_find_a_gift_by_its_code_typed_loosely_or_by_email(
        self, suite: Suite
    ) -> None:
        gift = await gift_by_wallet(suite, suite.as_user(email="buyer@example.com"))
        await gift_by_wallet(suite, suite.as_user(email="other@example.com"))
        loose = gift["code"].replace("-", "").lower()
        for search in (loose, "buyer@example", gift["id"]):
            found = await admin(suite, "GET", "/api/v1/admin/gifts", params={"search": search})
            assert [g["id"] for g in found.json()["items"]] == [gift["id"]], search
        both = await admin(suite, "GET", "/api/v1/admin/gifts", params={"search": FRIEND})
        assert len(both.json()["items"]) == 2

    async def test_users_are_not_let_in(self, suite: Suite) -> None:
        response = await suite.as_user().get("/api/v1/admin/gifts")
        assert response.status_code == 403


class TestRevoke:
    async def test_a_revoked_code_no_longer_redeems_and_the_revoke_is_audited(
        self, suite: Suite
    ) -> None:
        gift = await gift_by_wallet(suite, suite.as_user())
        response = await admin(
            suite, "POST", f"/api/v1/admin/gifts/{gift['id']}/revoke", json={"reason": "fraud"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "revoked"
        audit = await suite.scalar(
            "SELECT actor || ' ' || reason || ' ' || (before->>'status') || ' '"
            " || (after->>'status') FROM admin_audit WHERE action = 'gift.revoke'"
        )
        assert audit == f"{ADMIN_ID} fraud paid revoked"
        redeem = await suite.as_user().post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        assert redeem.status_code == 409
        assert await balance(suite, "deferred_revenue:gifts") == 0
        again = await admin(
            suite, "POST", f"/api/v1/admin/gifts/{gift['id']}/revoke", json={"reason": "twice"}
        )
        assert again.status_code == 409
        assert await suite.scalar("SELECT count(*) FROM admin_audit") == 1

    async def test_a_redeemed_gift_is_not_revoked(self, suite: Suite) -> None:
        gift = await gift_by_wallet(suite, suite.as_user())
        await suite.as_user().post("/api/v1/gifts/redeem", json={"code": gift["code"]})
        response = await suite.http.post(
            f"/api/v1/admin/gifts/{gift['id']}/revoke",
            json={"reason": "too late"},
            headers=admin_headers(),
        )
        assert response.status_code == 409
        assert await suite.scalar("SELECT count(*) FROM admin_audit") == 0

    async def test_an_unknown_gift_is_404(self, suite: Suite) -> None:
        response = await admin(
            suite, "POST", f"/api/v1/admin/gifts/{uuid4()}/revoke", json={"reason": "x"}
        )
        assert response.status_code == 404


class TestUI:
    async def test_the_gift_list_searches_by_code_and_revokes_with_an_audit_row(
        self, suite: Suite
    ) -> None:
        gift = await gift_by_wallet(suite, suite.as_user())
        http = suite.http
        assert (await login(http, "", admin_token())).status_code == 302
        listing = await http.get("/admin/gift/list", params={"search": gift["code"]})
        assert listing.status_code == 200
        assert gift["code"] in listing.text
        revoked = await http.get("/admin/gift/action/revoke", params={"pks": gift["id"]})
        assert revoked.status_code in (302, 303), revoked.text[-500:]
        assert (
            await suite.scalar("SELECT status FROM gift WHERE id = :id", id=UUID(gift["id"]))
            == "revoked"
        )
        assert (
            await suite.scalar("SELECT count(*) FROM admin_audit WHERE action = 'gift.revoke'") == 1
        )
