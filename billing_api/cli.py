"""``cinema billing …`` commands."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from billing_api.config import BillingSettings
from shared.consumer import add_declare_command
from shared.serve import add_api_command

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("billing", help="billing_api processes").add_subparsers(
        dest="billing_command", required=True
    )
    add_api_command(
        group,
        service="billing_api",
        factory="billing_api.app:create_app",
        default_port=8000,
        help_text="serve the billing HTTP API",
        settings_type=BillingSettings,
    )
    add_declare_command(
        group,
        consumer="billing",
        event_types=_billing_event_types,
        settings_type=BillingSettings,
    )
    worker = group.add_parser("worker", help="run consumers, scheduled jobs and the outbox relay")
    worker.set_defaults(handler=_worker)
    demo = group.add_parser("seed-demo", help="load the demo catalog (idempotent)")
    demo.set_defaults(handler=_seed_demo)
    run_jobs = group.add_parser("run-jobs", help="run every scheduled job once")
    run_jobs.add_argument(
        "--now", type=_moment, default=None, help="ISO 8601 time to run the jobs at (UTC if naive)"
    )
    run_jobs.set_defaults(handler=_run_jobs)


def _billing_event_types() -> list[Any]:
    from billing_api.activation.handlers import HANDLERS

    return list(HANDLERS)


def _moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _run_jobs(args: argparse.Namespace) -> int:
    import orjson

    from billing_api import jobs
    from billing_api.config import SCHEMA, SERVICE, BillingSettings
    from billing_api.gateway import GatewayClient
    from billing_api.receipts import links as receipt_links
    from shared import clock, observability, production, runtime
    from shared.auth import AuthSettings
    from shared.observability import create_http_client
    from shared.resources import make_database

    settings = BillingSettings()
    production.check(settings, AuthSettings())
    observability.configure_logging(SERVICE, level=settings.log_level, json=settings.log_json)

    async def run() -> dict[str, int]:
        engine, sessions = make_database(settings, service=SERVICE, schema=SCHEMA)
        receipt_links.install(sessions, settings)
        try:
            async with create_http_client() as http:
                gateway = GatewayClient(http, settings.gateway_url, AuthSettings())
                if args.now is None:
                    return await jobs.run_once(sessions, gateway, settings)
                # Everything the jobs write is stamped with the simulated time, not just `now`.
                with clock.frozen(args.now):
                    return await jobs.run_once(sessions, gateway, settings, args.now)
        finally:
            await engine.dispose()

    done = runtime.run(run())
    print(orjson.dumps(done).decode())
    return 0 if all(count >= 0 for count in done.values()) else 1


def _worker(args: argparse.Namespace) -> int:
    from billing_api.worker import main

    main()
    return 0


def _seed_demo(args: argparse.Namespace) -> int:
    from billing_api import demo
    from billing_api.config import SCHEMA, SERVICE, BillingSettings
    from shared.resources import make_database

    async def run() -> None:
        engine, sessions = make_database(BillingSettings(), service=SERVICE, schema=SCHEMA)
        try:
            async with sessions() as session, session.begin():
                await demo.load(session)
        finally:
            await engine.dispose()

    asyncio.run(run())
    print("demo catalog loaded")
    return 0


def register_admin(subparsers: Any) -> None:
    """``cinema admin …``: the back office's staff accounts."""
    group = subparsers.add_parser("admin", help="back-office staff accounts").add_subparsers(
        dest="admin_command", required=True
    )
    create = group.add_parser(
        "create-user",
        help="create a staff account (the password is prompted for, or read from stdin)",
    )
    create.add_argument("--email", required=True, help="the staff member's email (login name)")
    create.add_argument(
        "--role",
        required=True,
        choices=("viewer", "support", "finance", "admin"),
        help="viewer reads; support refunds up to BILLING_ADMIN_SUPPORT_REFUND_LIMIT and grants"
        " access; finance reads reports and refunds any amount; admin edits the catalog",
    )
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of prompting",
    )
    create.set_defaults(handler=_create_staff_user)

    role = group.add_parser("set-role", help="give a staff account another role (applies at once)")
    role.add_argument("--email", required=True)
    role.add_argument("--role", required=True, choices=("viewer", "support", "finance", "admin"))
    role.set_defaults(handler=_set_staff_role)
    for name, active, what in (
        ("deactivate-user", False, "stop a staff account: it cannot log in, its session ends"),
        ("activate-user", True, "let a deactivated staff account log in again"),
    ):
        switch = group.add_parser(name, help=what)
        switch.add_argument("--email", required=True)
        switch.set_defaults(handler=_set_staff_active, active=active)
    password = group.add_parser(
        "set-password",
        help="a new password for a staff account (prompted for, or read from stdin); its failed"
        " logins are forgotten",
    )
    password.add_argument("--email", required=True)
    password.add_argument("--password-stdin", action="store_true")
    password.set_defaults(handler=_set_staff_password)
    listing = group.add_parser("list-users", help="every staff account: email, role, active")
    listing.set_defaults(handler=_list_staff_users)


def _read_password(from_stdin: bool) -> str | None:
    import getpass
    import sys

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        print("the passwords differ; nothing changed", file=sys.stderr)
        return None
    return first


def _in_a_transaction(change: Callable[[AsyncSession], Awaitable[str]]) -> int:
    """Run ``change`` in one committed transaction of billing's database; print what it says,
    or the refusal (exit 1)."""
    import sys

    from billing_api.config import SCHEMA, SERVICE, BillingSettings
    from shared.errors import AppError
    from shared.resources import make_database

    async def run() -> str:
        engine, sessions = make_database(BillingSettings(), service=SERVICE, schema=SCHEMA)
        try:
            async with sessions() as session, session.begin():
                return await change(session)
        finally:
            await engine.dispose()

    try:
        print(asyncio.run(run()))
    except AppError as exc:
        print(exc.detail, file=sys.stderr)
        return 1
    return 0


def _create_staff_user(args: argparse.Namespace) -> int:
    from billing_api.admin.staff import service as staff

    password = _read_password(args.password_stdin)
    if password is None:
        return 1

    async def create(session: AsyncSession) -> str:
        user = await staff.create_user(session, email=args.email, role=args.role, password=password)
        return f"staff account {user.email} created with the role {args.role}"

    return _in_a_transaction(create)


def _set_staff_role(args: argparse.Namespace) -> int:
    from billing_api.admin.staff import service as staff

    async def change(session: AsyncSession) -> str:
        user = await staff.set_role(session, email=args.email, role=args.role)
        return f"staff account {user.email} now has the role {user.role}"

    return _in_a_transaction(change)


def _set_staff_active(args: argparse.Namespace) -> int:
    from billing_api.admin.staff import service as staff

    async def change(session: AsyncSession) -> str:
        user = await staff.set_active(session, email=args.email, active=args.active)
        return f"staff account {user.email} is {'active' if user.active else 'deactivated'}"

    return _in_a_transaction(change)


def _set_staff_password(args: argparse.Namespace) -> int:
    from billing_api.admin.staff import service as staff

    password = _read_password(args.password_stdin)
    if password is None:
        return 1

    async def change(session: AsyncSession) -> str:
        user = await staff.set_password(session, email=args.email, password=password)
        return f"staff account {user.email} has a new password"

    return _in_a_transaction(change)


def _list_staff_users(args: argparse.Namespace) -> int:
    from billing_api.admin.staff import service as staff

    async def listing(session: AsyncSession) -> str:
        users = await staff.list_users(session)
        if not users:
            return "no staff accounts"
        return "\n".join(
            f"{user.email}\t{user.role}\t{'active' if user.active else 'deactivated'}"
            for user in users
        )

    return _in_a_transaction(listing)
