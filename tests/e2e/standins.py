"""What the e2e story needs around the suite: an SMTP server that keeps what it receives, and a
stand-in for the cinema's auth service that records role grants and revokes."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from fastapi import FastAPI, Response
from pydantic import BaseModel


class Mailbox:
    """An aiosmtpd handler: every message received, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]

    def subjects_to(self, address: str) -> list[str]:
        return [str(m["Subject"]) for m in self.to(address)]


def smtp_server(port: int) -> tuple[Controller, Mailbox]:
    mailbox = Mailbox()
    return Controller(mailbox, hostname="127.0.0.1", port=port), mailbox


class RoleIn(BaseModel):
    role: str


@dataclass
class AuthStandIn:
    """The auth service's role endpoints, remembering every call and the roles each user holds."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    roles: dict[str, set[str]] = field(default_factory=dict)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/v1/users/{user_id}/roles", status_code=201)
        async def grant(user_id: str, body: RoleIn) -> Response:
            self.calls.append(("grant", user_id, body.role))
            held = self.roles.setdefault(user_id, set())
            status = 409 if body.role in held else 201
            held.add(body.role)
            return Response(status_code=status)

        @app.delete("/api/v1/users/{user_id}/roles/{role}", status_code=204)
        async def revoke(user_id: str, role: str) -> Response:
            self.calls.append(("revoke", user_id, role))
            held = self.roles.setdefault(user_id, set())
            status = 204 if role in held else 404
            held.discard(role)
            return Response(status_code=status)

        return app
