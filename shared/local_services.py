"""On a developer machine, start PostgreSQL and RabbitMQ with docker compose when nothing answers.

``make run`` calls ``cinema prepare --start-services``. Before it creates the database, this module
looks at what the suite's URLs point to: a dependency that does not answer at a loopback address
is started with ``docker compose up -d <service>`` (the services of the repository's
``docker-compose.yml``, which publish 5432 and 5672 on 127.0.0.1), and waited for, saying so.

It changes nothing when everything answers, when a URL points at another machine (compose cannot
start that), or when docker is not there or its engine does not answer: then ``cinema prepare``
stops with its usual one-line hint. Without ``--start-services`` (the migration job of a
deployment) docker is never called.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from sqlalchemy.engine import make_url

from shared.dbadmin import DependencyMissing, _asyncpg_dsn

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
DOCKER_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class Dependency:
    service: str
    """Its name in docker-compose.yml."""
    title: str
    host: str
    port: int

    def answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False


def dependencies(database_url: str, amqp_url: str) -> list[Dependency]:
    database = make_url(database_url)
    broker = urlsplit(amqp_url)
    return [
        Dependency("postgres", "PostgreSQL", database.host or "127.0.0.1", database.port or 5432),
        Dependency("rabbitmq", "RabbitMQ", broker.hostname or "127.0.0.1", broker.port or 5672),
    ]


def to_start(database_url: str, amqp_url: str) -> list[Dependency]:
    """The dependencies that do not answer here and that compose could start."""
    return [
        dependency
        for dependency in dependencies(database_url, amqp_url)
        if dependency.host in LOOPBACK and not dependency.answers()
    ]


def docker_with_engine() -> str | None:
    """The docker executable when it is installed and its engine answers."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        done = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=DOCKER_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return docker if done.returncode == 0 else None


def start(
    database_url: str,
    amqp_url: str,
    *,
    wait_seconds: float,
    say: Callable[[str], None],
    compose_file: Path = COMPOSE_FILE,
) -> None:
    """Start what is missing with docker compose and wait until it answers; a no-op when
    nothing is missing or compose cannot help (the caller's checks then say what to do)."""
    missing = to_start(database_url, amqp_url)
    if not missing or not compose_file.exists():
        return
    docker = docker_with_engine()
    if docker is None:
        return
    services = [dependency.service for dependency in missing]
    titles = " and ".join(dependency.title for dependency in missing)
    say(
        f"cinema: {titles} not running here; starting with"
        f" `docker compose up -d {' '.join(services)}`"
    )
    started_at = time.monotonic()
    try:
        done = subprocess.run(
            [docker, "compose", "--file", str(compose_file), "up", "-d", *services],
            capture_output=True,
            text=True,
            timeout=600,  # the first run pulls the images
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DependencyMissing(f"`docker compose up -d` did not finish: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DependencyMissing(
            f"`docker compose up -d {' '.join(services)}` failed ({done.returncode}): {last}"
        )
    _wait(database_url, missing, started_at + wait_seconds)
    say(f"cinema: {titles} up after {time.monotonic() - started_at:.0f} s")


def _wait(database_url: str, missing: list[Dependency], deadline: float) -> None:
    """Until every started dependency answers (PostgreSQL: accepts a session), or fail."""
    waiting = list(missing)
    while waiting:
        waiting = [dependency for dependency in waiting if not _ready(dependency, database_url)]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            where = ", ".join(f"{d.title} at {d.host}:{d.port}" for d in waiting)
            raise DependencyMissing(
                f"started with docker compose, but nothing answers yet: {where}; see"
                " `docker compose logs " + " ".join(d.service for d in waiting) + "`"
            )
        time.sleep(1)


def _ready(dependency: Dependency, database_url: str) -> bool:
    if not dependency.answers():
        return False
    if dependency.service != "postgres":
        return True
    # The port opens before PostgreSQL takes sessions ("the database system is starting up").
    return asyncio.run(_takes_sessions(database_url))


async def _takes_sessions(database_url: str) -> bool:
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(database_url, "postgres"), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True
