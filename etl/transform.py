"""A ``film_work`` row in billing's movie shape (what the admin bulk upsert takes).

Billing keeps only the catalog fields (title, description) and that the source has the movie
(``in_source``); rating, type and dates stay in the movie admin. Whether billing sells the movie
(``available``) is staff's decision and never sent from here.

A row billing would refuse (empty or overlong title) is made acceptable rather than left behind,
because one refused row would hold its whole batch, and every later one, back.
"""

from __future__ import annotations

from typing import Any

from etl.source import FilmWork

MAX_TITLE = 500
MAX_DESCRIPTION = 20_000
UNTITLED = "Untitled"


def movie(film: FilmWork) -> dict[str, Any]:
    """Every field is sent, so a description cleared in the source is cleared in billing too,
    and a movie that comes back to the source is in it again (on sale if staff sell it)."""
    title = film.title.strip()[:MAX_TITLE] or UNTITLED
    return {
        "id": str(film.id),
        "title": title,
        "description": (film.description or "")[:MAX_DESCRIPTION],
        "in_source": True,
    }
