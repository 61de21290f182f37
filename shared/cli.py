"""``cinema``: the suite's command line.

Built-in commands: ``token`` (dev tokens), ``dlq`` (dead letters), ``prepare`` (create the
database, check the broker). Each service adds its own group (``cinema billing …``,
``cinema etl …``) through the ``cinema.commands`` entry point, so this package never imports a
service.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from shared import cli_token, dbadmin, dead_letters, local_services, production, tracing
from shared.settings import CommandLineSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cinema", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    cli_token.register(subparsers)
    dead_letters.register(subparsers)
    prepare = subparsers.add_parser(
        "prepare", help="create the database if missing and check that RabbitMQ answers"
    )
    prepare.add_argument(
        "--start-services",
        action="store_true",
        help="on a developer machine, start PostgreSQL/RabbitMQ with docker compose when nothing"
        " answers at their local addresses (what `make run` does)",
    )
    prepare.add_argument(
        "--wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long services started with docker compose may take to answer",
    )
    prepare.set_defaults(handler=_prepare)
    for entry in sorted(entry_points(group="cinema.commands"), key=lambda e: e.name):
        entry.load()(subparsers)
    return parser


def _prepare(args: argparse.Namespace) -> int:
    settings = CommandLineSettings()
    try:
        if args.start_services:
            local_services.start(
                settings.database_url, settings.amqp_url, wait_seconds=args.wait, say=_say
            )
        created = dbadmin.prepare(settings.database_url, settings.amqp_url)
    except dbadmin.DependencyMissing as exc:
        print(f"cinema: {exc}", file=sys.stderr)
        return 1
    print("database created" if created else "database present", "· broker reachable")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def process_name(args: argparse.Namespace) -> str:
    """``billing-api`` for ``cinema billing api``, ``etl`` for ``cinema etl run``: the name a
    process's traces carry unless ``OTEL_SERVICE_NAME`` says otherwise."""
    action = getattr(args, f"{args.command}_command", None)
    return f"{args.command}-{action}" if action and action != "run" else str(args.command)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tracing.name_process(process_name(args))
    try:
        return int(args.handler(args) or 0)
    except production.NotReadyForProduction as exc:
        # Outside development a process with missing or development secrets does not start.
        for line in exc.lines():
            print(line, file=sys.stderr)
        return production.EXIT_NOT_READY


if __name__ == "__main__":
    raise SystemExit(main())
