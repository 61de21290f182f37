"""``cinema gateway …`` commands."""

from __future__ import annotations

from typing import Any

from payment_gateway.config import GatewaySettings
from shared.serve import add_api_command


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("gateway", help="payment_gateway processes").add_subparsers(
        dest="gateway_command", required=True
    )
    add_api_command(
        group,
        service="payment_gateway",
        factory="payment_gateway.app:create_app",
        default_port=8001,
        help_text="serve the gateway API, webhooks and sandbox pages (relays its outbox)",
        settings_type=GatewaySettings,
    )
