"""``cinema access …`` commands."""

from __future__ import annotations

import argparse
from typing import Any

from access_api.config import AccessSettings
from shared.consumer import add_declare_command
from shared.serve import add_api_command


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("access", help="access_api processes").add_subparsers(
        dest="access_command", required=True
    )
    add_api_command(
        group,
        service="access_api",
        factory="access_api.app:create_app",
        default_port=8002,
        help_text="serve the access-check API",
        settings_type=AccessSettings,
    )
    add_declare_command(
        group, consumer="access", event_types=_access_event_types, settings_type=AccessSettings
    )
    group.add_parser("worker", help="run the projection consumer and role sync").set_defaults(
        handler=_worker
    )


def _access_event_types() -> list[Any]:
    from access_api.projection import HANDLERS

    return list(HANDLERS)


def _worker(args: argparse.Namespace) -> int:
    from access_api.worker import main

    main()
    return 0
