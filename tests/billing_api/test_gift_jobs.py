"""The gift jobs run by real ``cinema billing run-jobs`` processes: two passes at once deliver
each due gift once and expire each lapsed gift once, its revenue recognised once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from shared import clock
from tests import support
from tests.billing_api.conftest import Suite
from tests.billing_api.test_gift_refunds import balance, unbalanced_transactions
from tests.billing_api.test_gifts import gift_by_wallet

CINEMA = str(Path(sys.executable).with_name("cinema"))


async def two_passes_at(env: dict[str, str], at: datetime) -> list[dict[str, Any]]:
    command = [CINEMA, "billing", "run-jobs", "--now", at.isoformat()]
    results = await asyncio.gather(
        *(
            asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, check=False)
            for _ in range(2)
        )
    )
    for result in results:
        assert result.returncode == 0, result.stderr.decode()[-2000:]
    return [orjson.loads(result.stdout) for result in results]


async def test_two_job_processes_deliver_and_expire_each_gift_once(
    suite: Suite, database_url: str, broker_prefix: str
) -> None:
    at = clock.now() + timedelta(days=3)
    buyers = [suite.as_user() for _ in range(3)]
    gifts = [await gift_by_wallet(suite, b, deliver_at=at.isoformat()) for b in buyers]
    env = support.suite_environment(database_url, broker_prefix)
    async with support.served(suite.gateway, support.free_port(), running=True) as gateway_url:
        env["BILLING_GATEWAY_URL"] = gateway_url
        delivered = await two_passes_at(env, at)
        assert sum(r["deliver_gifts"] for r in delivered) == 3
        assert len(await suite.events("gift.delivered")) == 3
        expires = max(datetime.fromisoformat(g["expires_at"]) for g in gifts)
        expired = await two_passes_at(env, expires + timedelta(minutes=1))
    assert sum(r["expire_gifts"] for r in expired) == 3
    assert await suite.scalar("SELECT count(*) FROM gift WHERE status = 'expired'") == 3
    assert await balance(suite, "deferred_revenue:gifts") == 0
    assert await balance(suite, "revenue") == 3 * 29900
    assert await unbalanced_transactions(suite) == 0
