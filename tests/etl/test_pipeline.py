"""The copy between a real movie admin database and the real billing app over HTTP."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import uuid4

import httpx
import pytest
from pydantic import SecretStr

from etl.errors import SourceUnavailable
from etl.pipeline import PassReport, sync_changes
from etl.source import FilmWork, Source, Watermark
from etl.worker import open_etl
from shared.auth import AuthSettings, mint_user_token
from tests import support
from tests.etl.conftest import DEMO_MOVIES, World

LARGE = 20_000


async def sync_once(world: World, **overrides: object) -> PassReport:
    async with open_etl(world.settings(**overrides)) as etl:
        return await etl.run_once()


class TestIncrementalLoad:
    async def test_twenty_thousand_movies_then_exactly_the_updated_ones_are_loaded(
        self, world: World
    ) -> None:
        await world.add_films(LARGE)
        async with world.billing.up():
            first = await sync_once(world, batch_size=1000)
            print(
                f"\netl: {first.loaded} movies in {first.seconds:.1f}s"
                f" = {first.movies_per_second:.0f} movies/s (batches of 1000)"
            )
            assert (first.read, first.loaded, first.created) == (LARGE + DEMO_MOVIES,) * 3
            assert first.batches == 21
            assert await world.billing_titles() == {
                movie_id: (title, True) for movie_id, title in (await world.source_titles()).items()
            }

            # 300 updates: 200 share one `modified` (a bulk update), so with batches of 128 the
            # two batch boundaries fall between rows of equal timestamp; 100 more come after.
            await world.source_execute(
                "WITH picked AS (SELECT id FROM content.film_work WHERE title LIKE 'Film %'"
                " ORDER BY id LIMIT 300),"
                " numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM picked)"
                " UPDATE content.film_work f SET title = f.title || ' (restored)',"
                " modified = CASE WHEN numbered.n <= 200 THEN now() - interval '1 minute'"
                " ELSE now() - interval '1 minute' + numbered.n * interval '1 microsecond' END"
                " FROM numbered WHERE f.id = numbered.id"
            )
            second = await sync_once(world, batch_size=128)

        assert (second.read, second.updated, second.created) == (300, 300, 0)
        assert second.batches == 3
        titles = await world.billing_titles()
        assert sum(title.endswith(" (restored)") for title, _ in titles.values()) == 300
        assert titles == {
            movie_id: (title, True) for movie_id, title in (await world.source_titles()).items()
        }

    async def test_a_pass_with_no_changes_reads_nothing(self, world: World) -> None:
        async with world.billing.up():
            await sync_once(world)
            again = await sync_once(world)
        assert (again.read, again.loaded, again.batches) == (0, 0, 0)

    async def test_rows_modified_within_the_settle_window_wait_for_a_later_pass(
        self, world: World
    ) -> None:
        await world.source_execute(
            "UPDATE content.film_work SET title = 'Paper Moons II', modified = now()"
            " WHERE title = 'Paper Moons'"
        )
        async with world.billing.up():
            report = await sync_once(world, settle_seconds=600)
        assert report.loaded == DEMO_MOVIES - 1
        assert "Paper Moons II" not in {
            title for title, _ in (await world.billing_titles()).values()
        }


class TestOutages:
    async def test_billing_down_for_a_while_is_retried_with_growing_waits_then_caught_up(
        self, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        await world.add_films(2_000)
        caplog.set_level(logging.WARNING, logger="etl.pipeline")
        async with open_etl(world.settings(batch_size=500)) as etl:
            run = asyncio.create_task(etl.run_once())

            async def retried_three_times() -> bool:
                return sum("billing unreachable" in r.message for r in caplog.records) >= 3

            await support.eventually(retried_three_times, timeout=10)
            assert await world.scalar("SELECT count(*) FROM billing.movie") == 0
            assert await world.scalar("SELECT count(*) FROM etl.sync_state") == 0
            async with world.billing.up():
                report = await asyncio.wait_for(run, timeout=60)
        waits = [r.retry_in_seconds for r in caplog.records if hasattr(r, "retry_in_seconds")]
        assert waits[:3] == [0.05, 0.1, 0.2]
        assert report.loaded == 2_000 + DEMO_MOVIES
        assert len(await world.billing_titles()) == 2_000 + DEMO_MOVIES

    async def test_an_unreachable_source_is_retried_and_nothing_is_recorded(
        self, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="etl.pipeline")
        closed = f"postgresql+asyncpg://postgres@127.0.0.1:{support.free_port()}/movies_admin"
        async with world.billing.up(), open_etl(world.settings(source_url=closed)) as etl:
            run = asyncio.create_task(etl.run_once())

            async def retried() -> bool:
                return any(
                    "the movie admin database unreachable" in r.message for r in caplog.records
                )

            await support.eventually(retried, timeout=15)
            assert not run.done()
            run.cancel()
        assert await world.scalar("SELECT count(*) FROM etl.sync_state") == 0
        assert await world.scalar("SELECT count(*) FROM billing.movie") == 0

    async def test_a_batch_billing_refuses_is_retried_and_the_watermark_stays(
        self, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="etl.pipeline")
        wrong_secret = AuthSettings(
            internal_secret=SecretStr("a different internal secret of 32+ bytes")
        )
        async with world.billing.up(), open_etl(world.settings(), wrong_secret) as etl:
            run = asyncio.create_task(etl.run_once())

            async def refused() -> bool:
                return any("billing refused the request" in r.message for r in caplog.records)

            await support.eventually(refused, timeout=15)
            run.cancel()
        assert "answered 401" in caplog.text
        assert await world.scalar("SELECT count(*) FROM etl.sync_state") == 0
        assert await world.scalar("SELECT count(*) FROM billing.movie") == 0


class TestReadAhead:
    async def test_a_source_lost_while_the_next_batch_is_read_keeps_the_loaded_one(
        self, world: World
    ) -> None:
        await world.add_films(2_490)  # 2,500 with the demo movies: three batches of 1,000

        class LostAfterFirstRead(Source):
            reads = 0

            async def changed_after(
                self, watermark: Watermark | None, *, limit: int
            ) -> list[FilmWork]:
                self.reads += 1
                if self.reads > 1:
                    raise SourceUnavailable("connection lost")
                return await super().changed_after(watermark, limit=limit)

        async with world.billing.up(), open_etl(world.settings(batch_size=1000)) as etl:
            lost = LostAfterFirstRead(etl.source.engine, settle_seconds=0)
            with pytest.raises(SourceUnavailable):
                await sync_changes(
                    lost, etl.billing, etl.store, batch_size=1000, report=PassReport()
                )
            assert await world.scalar("SELECT count(*) FROM billing.movie") == 1000
            assert await world.scalar("SELECT rows_loaded FROM etl.sync_state") == 1000

            report = await etl.run_once()
        assert (report.read, report.created) == (1500, 1500)
        assert len(await world.billing_titles()) == 2_500


class TestFullPass:
    async def test_movies_deleted_from_the_source_become_unavailable_and_come_back(
        self, world: World
    ) -> None:
        await world.add_films(50)
        async with world.billing.up():
            await sync_once(world)
            gone = {
                str(movie_id)
                for movie_id in await world.source_scalar(
                    "SELECT array_agg(id) FROM (SELECT id FROM content.film_work"
                    " WHERE title LIKE 'Film %' ORDER BY id LIMIT 3) AS picked"
                )
            }
            await world.source_execute(
                "DELETE FROM content.film_work WHERE id = ANY(CAST(:ids AS uuid[]))",
                ids=sorted(gone),
            )
            async with open_etl(world.settings()) as etl:
                changes_only = await etl.run_pass(full=False)
                assert changes_only.marked_gone == 0
                assert all(available for _, available in (await world.billing_titles()).values())
                full = await etl.run_pass(full=True)
            assert full.marked_gone == 3
            titles = await world.billing_titles()
            assert {movie_id for movie_id, (_, available) in titles.items() if not available} == (
                gone
            )

            back = sorted(gone)[0]
            await world.source_execute(
                "INSERT INTO content.film_work (id, title, modified)"
                " VALUES (:id, 'Back again', now() - interval '1 second')",
                id=back,
            )
            await sync_once(world)
        assert (await world.billing_titles())[back] == ("Back again", True)


class TestStaffChoice:
    """Whether a film is sold is staff's decision; the source only says whether it still has it."""

    @staticmethod
    async def staff(world: World, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        token = mint_user_token(AuthSettings(), uuid4(), email="staff@example.com", roles=["admin"])
        async with httpx.AsyncClient(base_url=world.billing.url) as http:
            response = await http.request(
                method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    @staticmethod
    async def offers(world: World, movie_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=world.billing.url) as http:
            response = await http.get(f"/api/v1/movies/{movie_id}/offers")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def film_id(self, world: World, title: str) -> str:
        return str(
            await world.source_scalar(
                "SELECT id FROM content.film_work WHERE title = :title", title=title
            )
        )

    async def sell(self, world: World, movie_id: str, *, available: bool) -> None:
        await self.staff(
            world,
            "PATCH",
            f"/api/v1/admin/movies/{movie_id}",
            json={"available": available, "purchase_price": {"amount": 39900, "currency": "RUB"}},
        )

    async def test_a_film_staff_took_off_sale_stays_off_sale_when_the_source_edits_it(
        self, world: World
    ) -> None:
        async with world.billing.up():
            await sync_once(world)
            withdrawn = await self.film_id(world, "Paper Moons")
            await self.sell(world, withdrawn, available=False)
            await world.source_execute(
                "UPDATE content.film_work SET title = 'Paper Moons (restored)',"
                " modified = now() - interval '1 minute' WHERE id = :id",
                id=withdrawn,
            )
            report = await sync_once(world)
            offers = await self.offers(world, withdrawn)
        assert report.updated == 1
        assert (offers["title"], offers["available"], offers["offers"]) == (
            "Paper Moons (restored)",
            False,
            [],
        )

    async def test_a_film_the_source_deletes_goes_off_sale(self, world: World) -> None:
        async with world.billing.up():
            await sync_once(world)
            deleted = await self.film_id(world, "Paper Moons")
            await self.sell(world, deleted, available=True)
            assert (await self.offers(world, deleted))["available"] is True
            await world.source_execute("DELETE FROM content.film_work WHERE id = :id", id=deleted)
            report = await sync_once(world)
            offers = await self.offers(world, deleted)
        assert report.marked_gone == 1
        assert (offers["available"], offers["offers"]) == (False, [])

    async def test_a_film_back_in_the_source_keeps_staff_s_choice(self, world: World) -> None:
        async with world.billing.up():
            await sync_once(world)
            sold = await self.film_id(world, "Paper Moons")
            withdrawn = await self.film_id(world, "The Long Night Train")
            await self.sell(world, sold, available=True)
            await self.sell(world, withdrawn, available=False)
            await world.source_execute(
                "DELETE FROM content.film_work WHERE id IN (:sold, :withdrawn)",
                sold=sold,
                withdrawn=withdrawn,
            )
            await sync_once(world)
            assert (await self.offers(world, sold))["available"] is False
            await world.source_execute(
                "INSERT INTO content.film_work (id, title, modified) VALUES"
                " (:sold, 'Paper Moons', now() - interval '1 second'),"
                " (:withdrawn, 'The Long Night Train', now() - interval '1 second')",
                sold=sold,
                withdrawn=withdrawn,
            )
            await sync_once(world)
            back_on_sale = await self.offers(world, sold)
            still_withdrawn = await self.offers(world, withdrawn)
        assert (back_on_sale["available"], [o["kind"] for o in back_on_sale["offers"]]) == (
            True,
            ["buy"],
        )
        assert (still_withdrawn["available"], still_withdrawn["offers"]) == (False, [])
