"""The movie catalog's admin side: the bulk upsert the ETL loads through and its listing."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from shared.auth import AuthSettings, mint_service_token, mint_user_token
from tests.billing_api.conftest import Suite


def service_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_service_token(AuthSettings(), 'etl')}"}


def admin_headers() -> dict[str, str]:
    token = mint_user_token(AuthSettings(), uuid4(), email="staff@example.com", roles=["admin"])
    return {"Authorization": f"Bearer {token}"}


async def bulk(suite: Suite, movies: list[dict[str, Any]]) -> dict[str, Any]:
    response = await suite.http.post(
        "/api/v1/admin/movies/bulk", json={"movies": movies}, headers=service_headers()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestBulkUpsert:
    async def test_new_movies_are_created_and_a_repeated_batch_changes_nothing(
        self, suite: Suite
    ) -> None:
        movies = [{"id": str(uuid4()), "title": f"Film {n}"} for n in range(3)]
        assert await bulk(suite, movies) == {
            "received": 3,
            "created": 3,
            "updated": 0,
            "unchanged": 0,
        }
        assert await bulk(suite, movies) == {
            "received": 3,
            "created": 0,
            "updated": 0,
            "unchanged": 3,
        }
        offers = await suite.http.get(f"/api/v1/movies/{movies[0]['id']}/offers")
        assert offers.json()["title"] == "Film 0"

    async def test_an_update_keeps_the_prices_admins_set(self, suite: Suite) -> None:
        movie_id = uuid4()
        await bulk(suite, [{"id": str(movie_id), "title": "Old title"}])
        await suite.execute(
            "UPDATE billing.movie SET purchase_amount = 39900 WHERE id = :id", id=movie_id
        )
        result = await bulk(
            suite, [{"id": str(movie_id), "title": "New title", "description": "Restored cut"}]
        )
        assert result["updated"] == 1
        offers = (await suite.http.get(f"/api/v1/movies/{movie_id}/offers")).json()
        assert offers["title"] == "New title"
        assert {
            "kind": "buy",
            "price": {"amount": 39900, "currency": "RUB"},
            "rent_hours": None,
        } in offers["offers"]

    async def test_a_movie_gone_from_the_source_is_off_sale(self, suite: Suite) -> None:
        movie_id = str(uuid4())
        await bulk(suite, [{"id": movie_id, "title": "Gone"}])
        assert (await bulk(suite, [{"id": movie_id, "title": "Gone", "in_source": False}]))[
            "updated"
        ] == 1
        page = await suite.http.get(
            "/api/v1/admin/movies", params={"in_source": "false"}, headers=admin_headers()
        )
        [movie] = [movie for movie in page.json()["items"] if movie["id"] == movie_id]
        assert (movie["available"], movie["in_source"], movie["on_sale"]) == (True, False, False)
        offers = await suite.http.get(f"/api/v1/movies/{movie_id}/offers")
        assert offers.json()["available"] is False

    async def test_a_source_update_keeps_a_movie_staff_took_off_sale_off_sale(
        self, suite: Suite
    ) -> None:
        movie_id = str(uuid4())
        await bulk(suite, [{"id": movie_id, "title": "Withdrawn"}])
        taken_off = await suite.http.patch(
            f"/api/v1/admin/movies/{movie_id}",
            json={"available": False, "purchase_price": {"amount": 39900, "currency": "RUB"}},
            headers=admin_headers(),
        )
        assert taken_off.status_code == 200, taken_off.text
        await bulk(suite, [{"id": movie_id, "title": "Withdrawn (restored)", "in_source": True}])
        offers = (await suite.http.get(f"/api/v1/movies/{movie_id}/offers")).json()
        assert (offers["title"], offers["available"], offers["offers"]) == (
            "Withdrawn (restored)",
            False,
            [],
        )

    async def test_whether_staff_sell_a_movie_is_not_the_bulk_upsert_s_to_say(
        self, suite: Suite
    ) -> None:
        response = await suite.http.post(
            "/api/v1/admin/movies/bulk",
            json={"movies": [{"id": str(uuid4()), "title": "x", "available": True}]},
            headers=service_headers(),
        )
        assert response.status_code == 422, response.text

    async def test_one_batch_mixes_items_that_send_or_leave_out_a_field(self, suite: Suite) -> None:
        kept, changed, new = str(uuid4()), str(uuid4()), str(uuid4())
        await bulk(
            suite,
            [
                {"id": kept, "title": "Kept", "description": "Old cut"},
                {"id": changed, "title": "Changed", "description": "Old cut"},
            ],
        )
        result = await bulk(
            suite,
            [
                {"id": kept, "title": "Kept"},  # description left out: kept as it is
                {"id": changed, "title": "Changed", "description": "", "in_source": False},
                {"id": new, "title": "New"},
            ],
        )
        assert result == {"received": 3, "created": 1, "updated": 1, "unchanged": 1}
        movies = {
            movie["id"]: (movie["description"], movie["in_source"])
            for movie in (
                await suite.http.get(
                    "/api/v1/admin/movies", params={"limit": 1000}, headers=service_headers()
                )
            ).json()["items"]
        }
        assert movies[kept] == ("Old cut", True)
        assert movies[changed] == ("", False)
        assert movies[new] == ("", True)

    async def test_duplicate_ids_oversized_batches_and_price_fields_are_refused(
        self, suite: Suite
    ) -> None:
        movie_id = str(uuid4())
        bodies: list[dict[str, Any]] = [
            {"movies": [{"id": movie_id, "title": "A"}, {"id": movie_id, "title": "B"}]},
            {"movies": [{"id": str(uuid4()), "title": "x"} for _ in range(1001)]},
            {"movies": []},
            {"movies": [{"id": movie_id, "title": "A", "purchase_amount": 100}]},
        ]
        for body in bodies:
            response = await suite.http.post(
                "/api/v1/admin/movies/bulk", json=body, headers=service_headers()
            )
            assert response.status_code == 422, response.text
            assert response.json()["error"] == "ValidationError"
        assert (
            await suite.scalar(
                "SELECT count(*) FROM billing.movie WHERE id = :id", id=UUID(movie_id)
            )
            == 0
        )

    async def test_users_get_403_and_no_token_401(self, suite: Suite) -> None:
        body = {"movies": [{"id": str(uuid4()), "title": "x"}]}
        user = suite.as_user()
        assert (await user.post("/api/v1/admin/movies/bulk", json=body)).status_code == 403
        assert (await suite.http.post("/api/v1/admin/movies/bulk", json=body)).status_code == 401
        assert (await user.get("/api/v1/admin/movies")).status_code == 403


class TestListing:
    async def test_pages_by_id_cover_every_movie_once(self, suite: Suite) -> None:
        ids = sorted(str(uuid4()) for _ in range(25))
        await bulk(suite, [{"id": movie_id, "title": "t"} for movie_id in ids])
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 10}
            if cursor:
                params["cursor"] = cursor
            page = (
                await suite.http.get(
                    "/api/v1/admin/movies", params=params, headers=service_headers()
                )
            ).json()
            seen += [movie["id"] for movie in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert set(ids) <= set(seen)
        assert len(seen) == len(set(seen))
        assert seen == sorted(seen)
