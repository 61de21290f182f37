"""``cinema etl …`` commands."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "etl", help="copy the movie admin's catalog into billing"
    ).add_subparsers(dest="etl_command", required=True)
    run = group.add_parser(
        "run", help="keep billing's movies in step with the movie admin database"
    )
    run.add_argument(
        "--once", action="store_true", help="one complete sync (changes and full pass), then exit"
    )
    run.set_defaults(handler=_run)
    seed = group.add_parser(
        "seed-source",
        help="create the movie admin database (ETL_SOURCE_URL) with demo movies, if missing",
    )
    seed.set_defaults(handler=_seed_source)


def _run(args: argparse.Namespace) -> int:
    from etl.worker import main

    return main(once=args.once)


def _seed_source(args: argparse.Namespace) -> int:
    from etl import demo_source
    from etl.config import EtlSettings

    asyncio.run(demo_source.load(EtlSettings().source_url))
    print("movie admin database ready")
    return 0
