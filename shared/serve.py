"""Running an HTTP service with uvicorn, from the ``cinema`` command line."""

from __future__ import annotations

import argparse
import os
from typing import Any

import uvicorn

from shared import observability, production
from shared.auth import AuthSettings
from shared.settings import ServiceSettings


def add_api_command(
    group: Any,
    *,
    service: str,
    factory: str,
    default_port: int,
    help_text: str,
    settings_type: type[ServiceSettings],
) -> None:
    """Add ``api`` to a service's command group: ``cinema billing api --port 8000``."""
    parser = group.add_parser("api", help=help_text)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", default_port)))
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")

    def run(args: argparse.Namespace) -> int:
        settings = settings_type()
        production.check(settings, AuthSettings())
        observability.configure_logging(service, level=settings.log_level, json=settings.log_json)
        serve(factory, host=args.host, port=args.port, workers=args.workers)
        return 0

    parser.set_defaults(handler=run)


def serve(factory: str, *, host: str, port: int, workers: int = 1) -> None:
    """Run ``factory`` under uvicorn with the logging already configured by the caller."""
    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        proxy_headers=True,
    )
