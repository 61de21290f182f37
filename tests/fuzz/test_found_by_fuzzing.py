"""What schema fuzzing found once, kept as plain regression tests."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from shared.errors import install_error_handlers


async def test_a_nul_character_in_the_input_is_a_422_not_a_500(database_url: str) -> None:
    """PostgreSQL refuses NUL in text; a search for "\\x00" used to answer 500."""
    engine = create_async_engine(database_url)
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/search")
    async def search(q: str) -> dict[str, bool]:
        async with engine.connect() as conn:
            found = await conn.scalar(sa.text("SELECT 'film' ILIKE :q"), {"q": f"%{q}%"})
        return {"found": bool(found)}

    transport = httpx.ASGITransport(app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            refused = await client.get("/search", params={"q": "a\x00b"})
            fine = await client.get("/search", params={"q": "il"})
    finally:
        await engine.dispose()
    assert refused.status_code == 422
    assert refused.json()["error"] == "InvalidText"
    assert fine.json() == {"found": True}
