"""billing's admin movie API as the ETL uses it: bulk upserts and the listing of movies in source.

Every call carries a fresh internal service token (they are short-lived). Anything but a 200 —
billing down, restarting, overloaded or refusing — is :class:`BillingUnavailable`: the batch is
tried again later and the watermark stays where it was.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import orjson

from etl.errors import BillingRefused, BillingUnavailable
from shared.auth import AuthSettings, mint_service_token

SERVICE_NAME = "etl"
BULK_PATH = "/api/v1/admin/movies/bulk"
LIST_PATH = "/api/v1/admin/movies"


@dataclass(frozen=True)
class Loaded:
    received: int
    created: int
    updated: int
    unchanged: int


@dataclass(frozen=True)
class BillingMovie:
    id: UUID
    title: str


class BillingClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, auth: AuthSettings) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.auth = auth

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        token = mint_service_token(self.auth, SERVICE_NAME)
        return {"Authorization": f"Bearer {token}", **(extra or {})}

    async def _call(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = await self.http.request(
                method, f"{self.base_url}{path}", headers=self._headers(headers), **kwargs
            )
        except httpx.HTTPError as exc:
            raise BillingUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            refused = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
            error = BillingRefused if refused else BillingUnavailable
            raise error(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
        body: dict[str, Any] = orjson.loads(response.content)
        return body

    async def upsert(self, movies: list[dict[str, Any]]) -> Loaded:
        body = await self._call(
            "POST",
            BULK_PATH,
            # orjson: a thousand movies encode several times faster than with the json module
            content=orjson.dumps({"movies": movies}),
            headers={"Content-Type": "application/json"},
        )
        return Loaded(body["received"], body["created"], body["updated"], body["unchanged"])

    async def movies_in_source(self, *, page_size: int) -> AsyncGenerator[list[BillingMovie], None]:
        """Every movie billing holds as still in the source, in pages ordered by id."""
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"in_source": "true", "limit": page_size}
            if cursor is not None:
                params["cursor"] = cursor
            page = await self._call("GET", LIST_PATH, params=params)
            yield [BillingMovie(UUID(item["id"]), item["title"]) for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return
