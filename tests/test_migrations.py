"""Each service's Alembic environment owns exactly one schema and round-trips cleanly."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from shared import clock, dbadmin
from tests import support

SCHEMAS = {
    "billing_api": "billing",
    "payment_gateway": "gateway",
    "access_api": "access",
    "notifier": "notifier",
    "etl": "etl",
}


@pytest.fixture
def scratch_database() -> Iterator[str]:
    url = support.fresh_database_url()
    asyncio.run(dbadmin.ensure_database(url))
    yield url
    asyncio.run(dbadmin.drop_database(url))


def config(url: str, service: str) -> Config:
    cfg = Config(str(support.ROOT / "alembic.ini"), ini_section=service)
    cfg.attributes["database_url"] = url
    return cfg


async def tables(url: str) -> set[tuple[str, str]]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
        )
        found = {(row[0], row[1]) for row in rows}
    await engine.dispose()
    return found


@pytest.mark.parametrize("service", sorted(SCHEMAS))
def test_upgrade_creates_only_its_schema_and_downgrade_removes_it(
    service: str, scratch_database: str
) -> None:
    schema = SCHEMAS[service]
    command.upgrade(config(scratch_database, service), "head")
    created = asyncio.run(tables(scratch_database))
    assert {name for owner, name in created if owner == schema} >= {
        "outbox",
        "inbox",
        "alembic_version",
    }
    assert {owner for owner, _ in created} == {schema}

    command.check(config(scratch_database, service))  # models and migrations agree

    command.downgrade(config(scratch_database, service), "base")
    assert asyncio.run(tables(scratch_database)) == {(schema, "alembic_version")}


# The revision that moved each outbox to stored bytes, and the one before it.
OUTBOX_PAYLOAD = {
    "billing_api": ("0012", "0013"),
    "payment_gateway": ("0004", "0005"),
    "access_api": ("0002", "0003"),
    "notifier": ("0003", "0004"),
    "etl": ("0002", "0003"),
}


async def run_sql(url: str, *statements: tuple[str, dict[str, Any]]) -> list[list[tuple[Any, ...]]]:
    """Run each statement in its own transaction; the rows of each."""
    engine = create_async_engine(url)
    results: list[list[tuple[Any, ...]]] = []
    try:
        for statement, params in statements:
            async with engine.begin() as conn:
                result = await conn.execute(sa.text(statement), params)
                results.append([tuple(row) for row in result] if result.returns_rows else [])
    finally:
        await engine.dispose()
    return results


@pytest.mark.parametrize("service", sorted(OUTBOX_PAYLOAD))
def test_outbox_moves_to_stored_bytes_without_losing_an_unpublished_event(
    service: str, scratch_database: str
) -> None:
    schema = SCHEMAS[service]
    before, after = OUTBOX_PAYLOAD[service]
    cfg = config(scratch_database, service)
    # Written as the previous release writes: a JSON body.
    old_writer = (
        f"INSERT INTO {schema}.outbox (id, event_type, body, published_at)"
        " VALUES (:id, 'wallet.topped_up', CAST(:body AS jsonb), :published_at)"
    )
    new_writer = (
        f"INSERT INTO {schema}.outbox (id, event_type, payload)"
        " VALUES (:id, 'wallet.topped_up', :payload)"
    )
    numbers = (
        f"SELECT body ->> 'n', convert_from(payload, 'UTF8')::jsonb ->> 'n'"
        f" FROM {schema}.outbox ORDER BY id"
    )
    ids = [uuid4() for _ in range(4)]
    ids.sort()

    command.upgrade(cfg, before)
    asyncio.run(
        run_sql(
            scratch_database,
            (old_writer, {"id": ids[0], "body": '{"n": 1}', "published_at": None}),
            (old_writer, {"id": ids[1], "body": '{"n": 2}', "published_at": clock.now()}),
        )
    )
    command.upgrade(cfg, after)
    # While the deploy rolls, both releases write; the trigger fills the form each one left out.
    asyncio.run(
        run_sql(
            scratch_database,
            (new_writer, {"id": ids[2], "payload": b'{"n": 3}'}),
            (old_writer, {"id": ids[3], "body": '{"n": 4}', "published_at": None}),
        )
    )
    [rows] = asyncio.run(run_sql(scratch_database, (numbers, {})))
    # The waiting event got its bytes; the published one is history and is left as it was.
    assert rows == [("1", "1"), ("2", None), ("3", "3"), ("4", "4")]

    command.downgrade(cfg, before)
    [bodies] = asyncio.run(
        run_sql(scratch_database, (f"SELECT body ->> 'n' FROM {schema}.outbox ORDER BY id", {}))
    )
    assert bodies == [("1",), ("2",), ("3",), ("4",)]


def test_money_moved_before_receipts_is_numbered_per_year_in_the_order_it_moved(
    scratch_database: str,
) -> None:
    cfg = config(scratch_database, "billing_api")
    command.upgrade(cfg, "0018")
    payment = (
        "INSERT INTO billing.payment (id, user_id, purpose, method, status, amount, currency,"
        " base_amount, discount_amount, quote, months, description, refunded_amount, paid_at)"
        " VALUES (:id, :user_id, 'top_up', 'card', :status, :amount, 'RUB', :amount, 0, '{}', 1,"
        " 'Wallet top-up', :refunded, :paid_at)"
    )
    refund = (
        "INSERT INTO billing.refund (id, payment_id, user_id, amount, currency, status, rule,"
        " completed_at) VALUES (:id, :payment_id, :user_id, 500, 'RUB', 'succeeded', 'full',"
        " :completed_at)"
    )
    user = uuid4()
    late_2025, early_2026, mid_2026, zero, pending = (uuid4() for _ in range(5))
    refund_id = uuid4()

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text)

    asyncio.run(
        run_sql(
            scratch_database,
            *(
                (
                    payment,
                    {
                        "id": payment_id,
                        "user_id": user,
                        "status": status,
                        "amount": amount,
                        "refunded": refunded,
                        "paid_at": at(paid_at) if paid_at else None,
                    },
                )
                for payment_id, status, amount, refunded, paid_at in (
                    (mid_2026, "partially_refunded", 1000, 500, "2026-06-01T10:00:00+00:00"),
                    (late_2025, "succeeded", 1000, 0, "2025-12-31T23:00:00+00:00"),
                    (early_2026, "succeeded", 1000, 0, "2026-01-01T00:30:00+03:00"),
                    (zero, "succeeded", 0, 0, "2026-02-01T00:00:00+00:00"),
                    (pending, "pending", 1000, 0, None),
                )
            ),
            (
                refund,
                {
                    "id": refund_id,
                    "payment_id": mid_2026,
                    "user_id": user,
                    "completed_at": at("2026-06-02T10:00:00+00:00"),
                },
            ),
        )
    )
    command.upgrade(cfg, "0019")
    receipts, counters = asyncio.run(
        run_sql(
            scratch_database,
            (
                "SELECT number, coalesce(payment_id, refund_id) FROM billing.receipt"
                " ORDER BY year, sequence",
                {},
            ),
            ("SELECT year, last_number FROM billing.receipt_counter ORDER BY year", {}),
        )
    )
    # 2026-01-01 00:30 in Moscow is still 2025 in UTC (21:30, before the 23:00 payment).
    assert receipts == [
        ("2025-000001", early_2026),
        ("2025-000002", late_2025),
        ("2026-000001", mid_2026),
        ("2026-000002", refund_id),
    ]
    assert counters == [(2025, 2), (2026, 2)]


def test_a_payment_captured_while_receipts_are_installed_gets_a_receipt(
    scratch_database: str,
) -> None:
    cfg = config(scratch_database, "billing_api")
    command.upgrade(cfg, "0018")
    payment_id = uuid4()
    asyncio.run(
        run_sql(
            scratch_database,
            (
                "INSERT INTO billing.payment (id, user_id, purpose, method, status, amount,"
                " currency, base_amount, discount_amount, quote, months, description,"
                " refunded_amount) VALUES (:id, :user_id, 'top_up', 'card', 'pending', 1000,"
                " 'RUB', 1000, 0, '{}', 1, 'Wallet top-up', 0)",
                {"id": payment_id, "user_id": uuid4()},
            ),
        )
    )

    async def capture_during_upgrade() -> list[tuple[Any, ...]]:
        engine = create_async_engine(scratch_database)
        try:
            async with engine.connect() as live, engine.connect() as watch:
                # Live traffic: the provider captured the payment, billing is recording it.
                capture = await live.begin()
                await live.execute(
                    sa.text(
                        "UPDATE billing.payment SET status = 'succeeded', paid_at = now()"
                        " WHERE id = :id"
                    ),
                    {"id": payment_id},
                )
                upgrade = asyncio.create_task(asyncio.to_thread(command.upgrade, cfg, "0019"))

                async def upgrade_waits_for_a_lock() -> bool:
                    waiting = await watch.scalar(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                            " current_database() AND wait_event_type = 'Lock'"
                        )
                    )
                    await watch.rollback()
                    return bool(waiting)

                await support.eventually(upgrade_waits_for_a_lock, timeout=30)
                await capture.commit()
                await upgrade
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.text("SELECT number, payment_id FROM billing.receipt"),
                )
                return [tuple(row) for row in rows]
        finally:
            await engine.dispose()

    year = datetime.now(UTC).year
    assert asyncio.run(capture_during_upgrade()) == [(f"{year}-000001", payment_id)]


def test_a_downgrade_never_takes_back_a_receipt_number_already_given(
    scratch_database: str,
) -> None:
    cfg = config(scratch_database, "billing_api")
    command.upgrade(cfg, "0019")
    insert = (
        "INSERT INTO billing.payment (id, user_id, purpose, method, status, amount, currency,"
        " base_amount, discount_amount, quote, months, description, refunded_amount, paid_at)"
        " VALUES (:id, :user_id, 'top_up', 'card', 'succeeded', 1000, 'RUB', 1000, 0, '{}', 1,"
        " 'Wallet top-up', 0, :paid_at)"
    )
    numbers = "SELECT number, payment_id FROM billing.receipt ORDER BY number"
    # Numbers follow commits: the payment recorded first was captured a moment later.
    captured_later, captured_earlier = uuid4(), uuid4()
    asyncio.run(
        run_sql(
            scratch_database,
            (insert, {"id": captured_later, "user_id": uuid4(), "paid_at": clock.now()}),
            (
                insert,
                {
                    "id": captured_earlier,
                    "user_id": uuid4(),
                    "paid_at": clock.now() - timedelta(seconds=5),
                },
            ),
        )
    )
    year = datetime.now(UTC).year
    given = [(f"{year}-000001", captured_later), (f"{year}-000002", captured_earlier)]
    [before] = asyncio.run(run_sql(scratch_database, (numbers, {})))
    assert before == given

    # Downgrading would drop them and the next upgrade would renumber them by capture time: the
    # customer holding receipt 000001 would find someone else's payment under it.
    with pytest.raises(Exception, match="receipts"):
        command.downgrade(cfg, "0018")
    [after] = asyncio.run(run_sql(scratch_database, (numbers, {})))
    assert after == given

    # An operator who means it says so.
    cfg.cmd_opts = argparse.Namespace(x=["forget_receipts=yes"])
    command.downgrade(cfg, "0018")
    assert ("billing", "receipt") not in asyncio.run(tables(scratch_database))


def test_a_downgrade_refused_half_way_changes_nothing(scratch_database: str) -> None:
    """From the newest revision down to before receipts: 0019 refuses (receipts were given), and
    the whole downgrade rolls back -- the gifts, households and staff tables the later steps
    would have dropped are all still there, at the same revision."""
    cfg = config(scratch_database, "billing_api")
    command.upgrade(cfg, "head")
    asyncio.run(
        run_sql(
            scratch_database,
            (
                "INSERT INTO billing.payment (id, user_id, purpose, method, status, amount,"
                " currency, base_amount, discount_amount, quote, months, description,"
                " refunded_amount, paid_at) VALUES (:id, :user_id, 'top_up', 'card', 'succeeded',"
                " 1000, 'RUB', 1000, 0, '{}', 1, 'Wallet top-up', 0, now())",
                {"id": uuid4(), "user_id": uuid4()},
            ),
        )
    )
    before = asyncio.run(tables(scratch_database))
    version = "SELECT version_num FROM billing.alembic_version"
    [[head]] = asyncio.run(run_sql(scratch_database, (version, {})))

    with pytest.raises(Exception, match="receipts"):
        command.downgrade(cfg, "0018")

    assert asyncio.run(tables(scratch_database)) == before
    assert {("billing", "gift"), ("billing", "staff_user")} <= before
    assert asyncio.run(run_sql(scratch_database, (version, {}))) == [[head]]
