"""What stops a pass for now: a side the ETL talks to cannot be reached or refuses a batch.

Each is retried with exponential backoff from the last saved watermark, so nothing is lost or
skipped while a side is down.
"""

from __future__ import annotations


class Unavailable(Exception):
    """One side of the copy is unreachable or answered with an error; ``side`` says which."""

    side = "a dependency"
    problem = "unreachable"


class SourceUnavailable(Unavailable):
    side = "the movie admin database"


class BillingUnavailable(Unavailable):
    side = "billing"


class BillingRefused(BillingUnavailable):
    """billing answered but did not take the request (a 4xx): retried like an outage, since
    skipping the batch would lose its movies, and logged with billing's answer."""

    problem = "refused the request"


class StateUnavailable(Unavailable):
    side = "the etl database"
