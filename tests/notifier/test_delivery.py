"""From billing's event on the broker to an email in a real SMTP server and a signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import time
from email.message import EmailMessage

import pytest

from notifier.rendering import default_renderer
from tests.notifier.conftest import (
    EVENT_TYPES,
    LINKED,
    MAX_ATTEMPTS,
    WEBHOOK_SECRET,
    Delivery,
    Notifier,
    notice,
    service_headers,
)

NBSP = "\u00a0"


def verify_signature(delivery: Delivery, *, tolerance: int = 300) -> None:
    """What the receiving service does: ``t=<unix>,v1=<hmac_sha256(secret, "<t>.<body>")>``."""
    parts = dict(part.split("=", 1) for part in delivery.headers["cinema-signature"].split(","))
    timestamp = int(parts["t"])
    assert abs(time.time() - timestamp) <= tolerance
    expected = hmac.new(
        WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + delivery.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)


def part(mail: EmailMessage, subtype: str) -> str:
    """The text of the email's ``text/<subtype>`` alternative."""
    body = mail.get_body(preferencelist=(subtype,))
    assert isinstance(body, EmailMessage), f"no text/{subtype} part"
    content: str = body.get_content()
    return content


def lines(text: str) -> list[str]:
    """SMTP turns line ends into CRLF: compare the lines."""
    return text.strip().splitlines()


class TestEveryEvent:
    @pytest.mark.parametrize("locale", ["ru", "en"])
    @pytest.mark.parametrize("event_type", EVENT_TYPES)
    async def test_is_emailed_and_posted_to_the_webhook_in_the_persons_language(
        self, notifier: Notifier, event_type: str, locale: str
    ) -> None:
        event = notice(event_type, locale=locale)
        event_id = await notifier.publish(event)
        rows = await notifier.wait_for(event_id, email="sent", webhook="sent")

        expected = default_renderer().render(event)
        [mail] = notifier.smtp.mailbox.to(str(event.email))
        assert mail["Subject"] == expected.subject
        assert mail["From"] == "Cinema <billing@cinema.local>"
        assert mail["X-Notification-ID"] == str(rows["email"].id)
        assert lines(part(mail, "plain")) == lines(expected.text)
        assert lines(part(mail, "html")) == lines(expected.html)

        [delivery] = notifier.webhook.for_user(event.user_id)
        verify_signature(delivery)
        body = delivery.json()
        assert delivery.headers["x-notification-id"] == body["notification_id"]
        assert body["notification_id"] == str(rows["webhook"].id)
        assert body["event_id"] == str(event_id)
        assert body["event_type"] == event_type
        assert body["locale"] == locale
        assert body["subject"] == expected.subject
        assert body["text"] == expected.text
        assert body["data"]["user_id"] == str(event.user_id)

    async def test_amounts_and_dates_reach_the_reader_formatted(self, notifier: Notifier) -> None:
        event = notice("subscription.renewed", timezone="Asia/Vladivostok")
        await notifier.wait_for(await notifier.publish(event), email="sent")
        [mail] = notifier.smtp.mailbox.to(str(event.email))
        text = part(mail, "plain")
        assert f"Оплачено: 1{NBSP}527,45{NBSP}₽." in text
        assert "2 декабря 2026\u202fг., 07:30 (UTC+10:00)" in text  # noqa: RUF001


class TestDuplicates:
    async def test_the_same_event_delivered_three_times_sends_one_email_and_one_webhook(
        self, notifier: Notifier
    ) -> None:
        event = notice("subscription.activated")
        event_id = await notifier.publish(event, times=3)
        rows = await notifier.wait_for(event_id, email="sent", webhook="sent")
        # Let any straggling copy be handled before counting.
        await notifier.wait_for(await notifier.publish(notice("wallet.topped_up")), email="sent")
        assert len(notifier.smtp.mailbox.to(str(event.email))) == 1
        assert len(notifier.webhook.for_user(event.user_id)) == 1
        assert rows["email"].attempts == rows["webhook"].attempts == 1

    @pytest.mark.parametrize("event_type", sorted(LINKED))
    async def test_a_notice_with_a_link_delivered_twice_is_sent_once_with_its_link(
        self, notifier: Notifier, event_type: str
    ) -> None:
        event = notice(event_type, locale="en")
        link = getattr(event, LINKED[event_type])
        event_id = await notifier.publish(event, times=2)
        await notifier.wait_for(event_id, email="sent", webhook="sent")
        await notifier.wait_for(await notifier.publish(notice("wallet.topped_up")), email="sent")
        [mail] = notifier.smtp.mailbox.to(str(event.email))
        assert link in part(mail, "plain")
        [delivery] = notifier.webhook.for_user(event.user_id)
        assert delivery.json()["data"][LINKED[event_type]] == link
        assert link in delivery.json()["text"]

    async def test_a_person_without_an_email_address_gets_only_the_webhook(
        self, notifier: Notifier
    ) -> None:
        event = notice("wallet.topped_up", email=None)
        event_id = await notifier.publish(event)
        rows = await notifier.wait_for(event_id, webhook="sent", email="skipped")
        assert rows["email"].skip_reason == "the person has no email address"
        assert len(notifier.webhook.for_user(event.user_id)) == 1
        assert notifier.smtp.mailbox.messages == []


class TestRetries:
    async def test_smtp_refusing_twice_delivers_on_the_third_attempt(
        self, notifier: Notifier
    ) -> None:
        notifier.smtp.mailbox.refuse_next = 2
        event = notice("subscription.renewal_failed")
        rows = await notifier.wait_for(await notifier.publish(event), email="sent")
        assert rows["email"].attempts == 3
        assert notifier.smtp.mailbox.refused == 2
        assert len(notifier.smtp.mailbox.to(str(event.email))) == 1

    async def test_smtp_down_for_good_is_failed_then_resent_once_it_is_back(
        self, notifier: Notifier
    ) -> None:
        await notifier.smtp.stop()
        event = notice("subscription.grace_started")
        event_id = await notifier.publish(event)
        rows = await notifier.wait_for(event_id, email="failed", webhook="sent")
        assert rows["email"].attempts == MAX_ATTEMPTS
        assert rows["email"].last_error

        listed = await notifier.http.get(
            "/api/v1/notifications",
            params={"user_id": str(event.user_id), "status": "failed"},
            headers=service_headers(),
        )
        assert listed.status_code == 200, listed.text
        [failed] = listed.json()["items"]
        assert failed["id"] == str(rows["email"].id)
        assert failed["channel"] == "email"
        assert failed["last_error"]

        await notifier.smtp.start()
        resent = await notifier.http.post(
            f"/api/v1/notifications/{failed['id']}/resend", headers=service_headers()
        )
        assert resent.status_code == 202, resent.text
        assert resent.json()["status"] == "pending"
        assert resent.json()["attempts"] == 0
        rows = await notifier.wait_for(event_id, email="sent")
        assert rows["email"].attempts == 1
        assert len(notifier.smtp.mailbox.to(str(event.email))) == 1
        assert len(notifier.webhook.for_user(event.user_id)) == 1  # the webhook was not resent

    async def test_a_broken_smtp_server_does_not_hold_back_the_webhook(
        self, notifier: Notifier
    ) -> None:
        notifier.smtp.mailbox.refuse_next = 1_000
        event = notice("refund.completed")
        event_id = await notifier.publish(event)
        await notifier.wait_for(event_id, webhook="sent")
        rows = await notifier.rows(event_id)
        assert rows["email"].status in ("pending", "failed")
        await notifier.wait_for(event_id, email="failed")

    async def test_a_failing_webhook_is_retried_until_it_answers(self, notifier: Notifier) -> None:
        notifier.webhook.fail_next = 2
        event = notice("purchase.completed")
        rows = await notifier.wait_for(await notifier.publish(event), webhook="sent")
        assert rows["webhook"].attempts == 3
        assert len(notifier.webhook.for_user(event.user_id)) == 1


class TestChannels:
    @pytest.mark.parametrize("notifier_overrides", [{"webhook_enabled": False}])
    async def test_a_disabled_webhook_gets_no_notification(self, notifier: Notifier) -> None:
        event = notice("subscription.expired")
        rows = await notifier.wait_for(await notifier.publish(event), email="sent")
        assert set(rows) == {"email"}
        assert notifier.webhook.for_user(event.user_id) == []

    @pytest.mark.parametrize("notifier_overrides", [{"email_enabled": False}])
    async def test_disabled_email_sends_only_the_webhook(self, notifier: Notifier) -> None:
        event = notice("subscription.expired")
        rows = await notifier.wait_for(await notifier.publish(event), webhook="sent")
        assert set(rows) == {"webhook"}
        assert notifier.smtp.mailbox.to(str(event.email)) == []
