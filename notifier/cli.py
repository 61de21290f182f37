"""``cinema notifier …`` commands."""

from __future__ import annotations

from typing import Any

from notifier.config import NotifierSettings
from shared.consumer import add_declare_command
from shared.serve import add_api_command


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("notifier", help="notifier processes").add_subparsers(
        dest="notifier_command", required=True
    )
    add_api_command(
        group,
        service="notifier",
        factory="notifier.app:create_app",
        default_port=8003,
        help_text="serve the notifier's ops API (and its event consumer)",
        settings_type=NotifierSettings,
    )
    add_declare_command(
        group, consumer="notifier", event_types=_notices, settings_type=NotifierSettings
    )


def _notices() -> list[Any]:
    from notifier.handlers import NOTICES

    return list(NOTICES)
