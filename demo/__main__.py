"""``make demo``: the purchase story against the suite ``make run`` started (ports 8000-8003).

Clients are generated from the running services' ``/openapi.json``; checkouts are paid through
the sandbox's JSON twin of its payment page; the scheduled jobs are run with
``cinema billing run-jobs --now <a moment in the future>``. Every step is printed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from demo import clients
from demo.story import Story, StoryFailed, pay_with_json
from etl.config import EtlSettings

URLS = {
    "billing": os.environ.get("DEMO_BILLING_URL", "http://127.0.0.1:8000"),
    "gateway": os.environ.get("DEMO_GATEWAY_URL", "http://127.0.0.1:8001"),
    "access": os.environ.get("DEMO_ACCESS_URL", "http://127.0.0.1:8002"),
    "notifier": os.environ.get("DEMO_NOTIFIER_URL", "http://127.0.0.1:8003"),
}


async def run_jobs(moment: datetime) -> None:
    cinema = str(Path(sys.executable).with_name("cinema"))
    process = await asyncio.create_subprocess_exec(
        cinema, "billing", "run-jobs", "--now", moment.isoformat(), stdout=subprocess.DEVNULL
    )
    if await process.wait() != 0:
        raise StoryFailed("cinema billing run-jobs failed")


async def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cinema-clients-") as into:
        print(f"generating clients from {', '.join(f'{u}/openapi.json' for u in URLS.values())}")
        try:
            clients.generate_from_live(URLS, Path(into))
        except Exception as exc:
            print(f"the suite is not reachable ({exc}); start it with `make run` first")
            return 1
        story = Story(
            urls=URLS,
            pay=pay_with_json(clients.Api("gateway", URLS["gateway"])),
            run_jobs=run_jobs,
            source_url=EtlSettings().source_url,
        )
        try:
            await story.tell()
        except StoryFailed as exc:
            print(f"\nFAILED: {exc}")
            return 1
    print("\nThe story is complete.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
