"""``cinema token``: mint a bearer token for local development.

The token alone goes to standard output, so it composes with the shell::

    curl -H "Authorization: Bearer $(cinema token --user $USER_ID)" localhost:8000/...

Keys come from the same ``AUTH_*`` environment as the services, so a token minted here is accepted
by services running with the same environment. Also runnable as ``python -m shared.cli_token``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from uuid import UUID

from shared import production
from shared.auth import AuthSettings, mint_service_token, mint_user_token

DESCRIPTION = "Mint a bearer token for local development and print it alone on standard output."
STAFF_ROLES = ("viewer", "support", "finance", "admin")
"""The back office's roles (``billing_api.admin.roles``), the ones worth minting by hand."""
SERVICE_SUBJECT = "cli"
"""``sub`` of the internal service tokens minted here."""


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return int(text)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", type=UUID, metavar="UUID", help="user id put in sub")
    parser.add_argument("--email", help="email claim of the user token")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--admin", action="store_true", help="give the user the admin role")
    parser.add_argument(
        "--role",
        action="append",
        default=[],
        choices=STAFF_ROLES,
        help="a back-office role of the user token (repeatable): "
        + ", ".join(STAFF_ROLES)
        + " (admin is --admin's too)",
    )
    kind.add_argument(
        "--service",
        action="store_true",
        help=f"mint an internal service token (sub {SERVICE_SUBJECT!r}); --user, --email "
        "and --role are then ignored",
    )
    parser.add_argument(
        "--ttl",
        type=_positive_int,
        metavar="SECONDS",
        help="lifetime (default: 3600 for users, AUTH_INTERNAL_TOKEN_TTL_SECONDS for --service)",
    )
    parser.set_defaults(handler=run)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``token`` subcommand to the ``cinema`` CLI."""
    parser = subparsers.add_parser(
        "token",
        help="mint a bearer token for local development",
        description=DESCRIPTION,
    )
    _add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Print the token asked for; exit code 0, 1 when ``AUTH_*`` cannot mint it, 2 on misuse."""
    if not args.service and args.user is None:
        print("error: --user is required (unless --service)", file=sys.stderr)
        return 2
    try:
        settings = AuthSettings()
        # Outside development a token signed with a secret from the repository is refused too.
        production.check(settings)
        if args.service:
            token = mint_service_token(settings, SERVICE_SUBJECT, ttl_seconds=args.ttl)
        else:
            token = mint_user_token(
                settings,
                args.user,
                email=args.email,
                roles=sorted({*args.role, *(["admin"] if args.admin else [])}),
                ttl_seconds=args.ttl or 3600,
            )
    except ValueError as exc:  # also pydantic's ValidationError: AUTH_* misconfigured
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except production.NotReadyForProduction as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return production.EXIT_NOT_READY
    print(token)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shared.cli_token --user UUID ...``: the subcommand without the ``cinema`` CLI."""
    parser = argparse.ArgumentParser(prog="python -m shared.cli_token", description=DESCRIPTION)
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
