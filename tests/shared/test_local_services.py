"""``cinema prepare --start-services`` (``make run``): docker compose starts what is missing.

There is no Docker engine on the test machines, so ``docker`` is a small script put first on PATH
that records its arguments and plays the engine: ``info`` answers (or not), and ``compose up``
starts a plain TCP listener where RabbitMQ should answer, as compose's published port would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.local_services import COMPOSE_FILE
from tests import support

CINEMA = str(Path(sys.executable).with_name("cinema"))

FAKE_DOCKER = """#!{python}
import os, subprocess, sys
with open(os.environ["DOCKER_CALLS"], "a") as calls:
    calls.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1] == "info":
    sys.exit(int(os.environ.get("DOCKER_INFO_EXIT", "0")))
if sys.argv[1] == "compose" and os.environ.get("DOCKER_LISTEN_PORT"):
    listener = subprocess.Popen(
        [sys.executable, "-c", "import socket, time\\n"
         "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\\n"
         "s.bind(('127.0.0.1', int(__import__('sys').argv[1]))); s.listen()\\n"
         "time.sleep(120)", os.environ["DOCKER_LISTEN_PORT"]],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with open(os.environ["DOCKER_CALLS"] + ".pid", "w") as pid:
        pid.write(str(listener.pid))
sys.exit(0)
"""


@pytest.fixture
def fake_docker(tmp_path: Path) -> Iterator[Path]:
    """A directory holding the fake ``docker``; the calls it got are in ``calls``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    yield bin_dir
    pid_file = tmp_path / "calls.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def prepare(
    tmp_path: Path, path: str, database_url: str, amqp_url: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PATH": path,
        "DOCKER_CALLS": str(tmp_path / "calls"),
        "CINEMA_DATABASE_URL": database_url,
        "CINEMA_AMQP_URL": amqp_url,
        **env,
    }
    return subprocess.run(
        [CINEMA, "prepare", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def nowhere_url(scheme: str) -> str:
    """A loopback address where nothing listens."""
    port = support.free_port()
    if scheme == "postgres":
        return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/cinema"
    return f"amqp://guest:guest@127.0.0.1:{port}/"


class TestStartServices:
    def test_nothing_answering_starts_both_with_compose_and_says_so(
        self, tmp_path: Path, fake_docker: Path
    ) -> None:
        database, broker = nowhere_url("postgres"), nowhere_url("amqp")

        done = prepare(
            tmp_path,
            f"{fake_docker}:{os.environ['PATH']}",
            database,
            broker,
            "--start-services",
            "--wait",
            "2",
        )

        up = f"compose --file {COMPOSE_FILE} up -d postgres rabbitmq"
        assert calls(tmp_path) == ["info --format {{.ServerVersion}}", up]
        assert "PostgreSQL and RabbitMQ not running here" in done.stdout
        assert "`docker compose up -d postgres rabbitmq`" in done.stdout
        # The fake compose started nothing: the wait ends with one line saying what is missing.
        assert done.returncode == 1
        [line] = done.stderr.splitlines()
        assert "nothing answers yet: PostgreSQL at 127.0.0.1" in line

    def test_only_the_missing_one_is_started_and_then_prepare_goes_on(
        self, tmp_path: Path, fake_docker: Path, database_url: str
    ) -> None:
        port = support.free_port()

        done = prepare(
            tmp_path,
            f"{fake_docker}:{os.environ['PATH']}",
            database_url,  # this run's PostgreSQL answers
            f"amqp://guest:guest@127.0.0.1:{port}/",
            "--start-services",
            "--wait",
            "30",
            DOCKER_LISTEN_PORT=str(port),
        )

        assert calls(tmp_path)[-1] == f"compose --file {COMPOSE_FILE} up -d rabbitmq"
        assert done.returncode == 0, done.stderr
        assert "RabbitMQ not running here" in done.stdout
        assert "RabbitMQ up after" in done.stdout
        assert "database present · broker reachable" in done.stdout

    def test_a_docker_without_its_engine_keeps_the_one_line_hint(
        self, tmp_path: Path, fake_docker: Path
    ) -> None:
        done = prepare(
            tmp_path,
            f"{fake_docker}:{os.environ['PATH']}",
            nowhere_url("postgres"),
            nowhere_url("amqp"),
            "--start-services",
            DOCKER_INFO_EXIT="1",
        )

        assert calls(tmp_path) == ["info --format {{.ServerVersion}}"]
        assert done.returncode == 1
        [line] = done.stderr.splitlines()
        assert "PostgreSQL is not reachable" in line
        assert "docker compose up -d postgres" in line

    def test_no_docker_keeps_the_one_line_hint(self, tmp_path: Path) -> None:
        empty = tmp_path / "empty"
        empty.mkdir()

        done = prepare(
            tmp_path,
            str(empty),
            nowhere_url("postgres"),
            nowhere_url("amqp"),
            "--start-services",
        )

        assert done.returncode == 1
        assert done.stdout == ""
        [line] = done.stderr.splitlines()
        assert "PostgreSQL is not reachable" in line

    def test_without_the_flag_docker_is_never_called(
        self, tmp_path: Path, fake_docker: Path
    ) -> None:
        # A deployment's migration job runs plain `cinema prepare`.
        done = prepare(
            tmp_path,
            f"{fake_docker}:{os.environ['PATH']}",
            nowhere_url("postgres"),
            nowhere_url("amqp"),
        )

        assert calls(tmp_path) == []
        assert done.returncode == 1

    def test_a_remote_database_is_not_started_here(self, tmp_path: Path, fake_docker: Path) -> None:
        done = prepare(
            tmp_path,
            f"{fake_docker}:{os.environ['PATH']}",
            "postgresql+asyncpg://postgres@192.0.2.1:5432/cinema",  # TEST-NET: never answers
            nowhere_url("amqp"),
            "--start-services",
            "--wait",
            "2",
        )

        assert calls(tmp_path)[-1] == f"compose --file {COMPOSE_FILE} up -d rabbitmq"
        assert done.returncode == 1
