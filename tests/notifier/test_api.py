"""The ops API: who may look, what the list shows, and resending."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from tests import support
from tests.notifier.conftest import (
    Notifier,
    admin_headers,
    notice,
    service_headers,
    user_headers,
)


async def notify(notifier: Notifier, user_id: UUID, event_type: str = "wallet.topped_up") -> UUID:
    """Publish an event for ``user_id`` and wait until both channels sent it."""
    event_id = await notifier.publish(notice(event_type, user_id=user_id))
    await notifier.wait_for(event_id, email="sent", webhook="sent")
    return event_id


async def listed(notifier: Notifier, **params: Any) -> dict[str, Any]:
    response = await notifier.http.get(
        "/api/v1/notifications", params=params, headers=service_headers()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestAccess:
    async def test_a_user_token_is_forbidden(self, notifier: Notifier) -> None:
        user_id = uuid4()
        response = await notifier.http.get(
            "/api/v1/notifications", params={"user_id": str(user_id)}, headers=user_headers(user_id)
        )
        assert response.status_code == 403
        assert response.json()["error"] == "Forbidden"
        resend = await notifier.http.post(
            f"/api/v1/notifications/{uuid4()}/resend", headers=user_headers(user_id)
        )
        assert resend.status_code == 403

    async def test_no_token_is_unauthorized(self, notifier: Notifier) -> None:
        response = await notifier.http.get("/api/v1/notifications")
        assert response.status_code == 401

    @pytest.mark.parametrize("headers", [admin_headers, service_headers])
    async def test_admins_and_services_may_list(self, notifier: Notifier, headers: Any) -> None:
        response = await notifier.http.get("/api/v1/notifications", headers=headers())
        assert response.status_code == 200
        assert set(response.json()) == {"items", "next_cursor"}


class TestList:
    async def test_filters_by_user(self, notifier: Notifier) -> None:
        alice, bob = uuid4(), uuid4()
        await notify(notifier, alice)
        await notify(notifier, bob)
        page = await listed(notifier, user_id=str(alice))
        assert {item["user_id"] for item in page["items"]} == {str(alice)}
        assert {item["channel"] for item in page["items"]} == {"email", "webhook"}
        assert page["next_cursor"] is None

    async def test_filters_by_status(self, notifier: Notifier) -> None:
        user_id = uuid4()
        await notify(notifier, user_id)
        notifier.smtp.mailbox.refuse_next = 1_000
        failing = await notifier.publish(notice("refund.completed", user_id=user_id))
        await notifier.wait_for(failing, email="failed", webhook="sent")
        notifier.smtp.mailbox.refuse_next = 0

        failed = await listed(notifier, user_id=str(user_id), status="failed")
        assert [(i["event_type"], i["channel"]) for i in failed["items"]] == [
            ("refund.completed", "email")
        ]
        sent = await listed(notifier, user_id=str(user_id), status="sent")
        assert len(sent["items"]) == 3

    async def test_pages_newest_first_with_a_cursor(self, notifier: Notifier) -> None:
        user_id = uuid4()
        for _ in range(3):
            await notify(notifier, user_id)
        first = await listed(notifier, user_id=str(user_id), limit=4)
        assert len(first["items"]) == 4
        assert first["next_cursor"]
        second = await listed(notifier, user_id=str(user_id), limit=4, cursor=first["next_cursor"])
        assert len(second["items"]) == 2
        assert second["next_cursor"] is None
        everything = first["items"] + second["items"]
        assert len({item["id"] for item in everything}) == 6
        stamps = [(item["created_at"], item["id"]) for item in everything]
        assert stamps == sorted(stamps, reverse=True)

    async def test_an_unknown_status_is_rejected(self, notifier: Notifier) -> None:
        response = await notifier.http.get(
            "/api/v1/notifications", params={"status": "lost"}, headers=service_headers()
        )
        assert response.status_code == 422


class TestSkipped:
    @pytest.mark.parametrize("notifier_overrides", [{"webhook_enabled": False}])
    async def test_a_person_without_an_email_address_and_no_webhook_is_listed_as_skipped(
        self, notifier: Notifier
    ) -> None:
        user_id = uuid4()
        event_id = await notifier.publish(notice("purchase.completed", user_id=user_id, email=None))
        await notifier.wait_for(event_id, email="skipped")

        page = await listed(notifier, user_id=str(user_id))
        [item] = page["items"]
        assert (item["event_type"], item["channel"], item["status"]) == (
            "purchase.completed",
            "email",
            "skipped",
        )
        assert item["skip_reason"] == "the person has no email address"
        assert item["attempts"] == 0
        assert [i["id"] for i in (await listed(notifier, status="skipped"))["items"]] == [
            item["id"]
        ]
        resend = await notifier.http.post(
            f"/api/v1/notifications/{item['id']}/resend", headers=service_headers()
        )
        assert resend.status_code == 409
        assert resend.json()["error"] == "NotificationSkipped"
        assert notifier.smtp.mailbox.messages == []

    @pytest.mark.parametrize(
        "notifier_overrides", [{"email_enabled": False, "webhook_enabled": False}]
    )
    async def test_an_event_while_no_channel_is_enabled_is_listed_as_skipped(
        self, notifier: Notifier
    ) -> None:
        user_id = uuid4()
        event_id = await notifier.publish(notice("refund.completed", user_id=user_id), times=2)
        await notifier.wait_for(event_id, none="skipped")
        [item] = (await listed(notifier, user_id=str(user_id)))["items"]
        assert (item["channel"], item["status"], item["skip_reason"]) == (
            "none",
            "skipped",
            "no notification channel is enabled (email off, no webhook)",
        )


class TestResend:
    async def test_a_sent_notification_is_sent_again(self, notifier: Notifier) -> None:
        user_id = uuid4()
        event_id = await notify(notifier, user_id)
        webhook_row = (await notifier.rows(event_id))["webhook"]
        response = await notifier.http.post(
            f"/api/v1/notifications/{webhook_row.id}/resend", headers=admin_headers()
        )
        assert response.status_code == 202, response.text

        async def twice() -> bool:
            return len(notifier.webhook.for_user(user_id)) == 2

        await support.eventually(twice)
        first, second = notifier.webhook.for_user(user_id)
        # The same notification: the receiver can tell it is a resend by its id.
        assert first.json()["notification_id"] == second.json()["notification_id"]
        assert first.json() == second.json()

    async def test_an_unknown_notification_is_not_found(self, notifier: Notifier) -> None:
        response = await notifier.http.post(
            f"/api/v1/notifications/{uuid4()}/resend", headers=service_headers()
        )
        assert response.status_code == 404
        assert response.json()["error"] == "NotificationNotFound"

    @pytest.mark.parametrize("notifier_overrides", [{"retry_delays_seconds": (3600.0,)}])
    async def test_a_notification_waiting_for_its_next_attempt_is_left_alone(
        self, notifier: Notifier
    ) -> None:
        await notifier.smtp.stop()
        event_id = await notifier.publish(notice("wallet.topped_up"))

        async def first_attempt_failed() -> bool:
            row = (await notifier.rows(event_id)).get("email")
            return row is not None and row.last_error is not None

        await support.eventually(first_attempt_failed)
        email = (await notifier.rows(event_id))["email"]
        assert (email.status, email.attempts) == ("pending", 1)
        response = await notifier.http.post(
            f"/api/v1/notifications/{email.id}/resend", headers=service_headers()
        )
        assert response.status_code == 409
        assert response.json()["error"] == "NotificationPending"


class TestOperations:
    async def test_health_and_metrics_are_served(self, notifier: Notifier) -> None:
        await notify(notifier, uuid4())
        ready = await notifier.http.get("/health/ready")
        assert ready.status_code == 200, ready.text
        metrics = await notifier.http.get("/metrics")
        assert 'notifier_deliveries_total{channel="email",outcome="sent"}' in metrics.text
        assert 'notifier_deliveries_total{channel="webhook",outcome="sent"}' in metrics.text
