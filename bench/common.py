"""What every benchmark shares: wrk, a server under test, a scratch database, results.json.

See /work/shared/BENCHMARKS.md. Load is generated on loopback only, every run is bounded in time,
and ``bench/results.json`` is merge-written so partial runs keep the other sections.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx
from sqlalchemy.engine import make_url

from shared.settings import DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL

ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = ROOT / "bench" / "results.json"

BENCH_DATABASE = "cinema_bench"


class BenchFailed(RuntimeError):
    """Something broke (not a missed target): the run is not valid."""


# --- configuration ------------------------------------------------------------------------------


def bench_seconds(default: int = 10) -> int:
    """Length of each measured wrk run; ``BENCH_SECONDS`` overrides it."""
    raw = os.environ.get("BENCH_SECONDS", "")
    try:
        seconds = int(raw) if raw else default
    except ValueError:
        raise BenchFailed(f"BENCH_SECONDS must be a whole number of seconds, not {raw!r}") from None
    if not 1 <= seconds <= 600:
        raise BenchFailed("BENCH_SECONDS must be between 1 and 600")
    return seconds


def bench_database_url(name: str = BENCH_DATABASE) -> str:
    """The scratch database of a benchmark, on the server of ``BENCH_DATABASE_URL`` (or default)."""
    base = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def bench_amqp_url() -> str:
    return os.environ.get("BENCH_AMQP_URL") or DEFAULT_AMQP_URL


def unique_prefix(kind: str = "bench") -> str:
    """A broker name prefix no other run uses."""
    return f"{kind}-{uuid.uuid4().hex[:8]}."


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+asyncpg://``) as a plain DSN asyncpg accepts."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def migrate(database_url: str, service: str) -> None:
    """Apply one service's migrations to ``database_url``."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"), ini_section=service)
    config.attributes["database_url"] = database_url
    command.upgrade(config, "head")


async def delete_broker_names(amqp_url: str, prefix: str) -> None:
    """Remove what a service declared under ``prefix`` on connecting (events exchanges)."""
    from shared.broker import EVENTS_EXCHANGE, UNROUTED, Broker

    broker = Broker(amqp_url, prefix=prefix, client_name="bench-cleanup")
    await broker.connect()
    try:
        channel = await broker.channel()
        await channel.exchange_delete(broker.name(EVENTS_EXCHANGE))
        await channel.exchange_delete(broker.name(UNROUTED))
        await channel.queue_delete(broker.name(UNROUTED))
        await channel.close()
    finally:
        await broker.close()


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so ``finally`` blocks stop servers and drop databases."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run_main(name: str, run: Callable[[], int]) -> NoReturn:
    """A benchmark's entry point: exit 1 with one line when it cannot run, 130 when stopped
    (its ``finally`` blocks have stopped its processes and dropped its database by then)."""
    from shared import dbadmin

    stop_on_sigterm()
    try:
        code = run()
    except (BenchFailed, dbadmin.DependencyMissing) as exc:
        print(f"bench-{name}: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f"bench-{name}: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


# --- results.json -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count() or 0,
        "python": platform.python_version(),
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_results(section: str, data: Mapping[str, Any], path: Path = RESULTS_PATH) -> Path:
    """Replace one section of results.json (and the ``machine`` block), keeping the others."""
    results: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            loaded = None
        if isinstance(loaded, dict):
            results = loaded
    results["machine"] = machine()
    results[section] = dict(data)
    ordered = {"machine": results.pop("machine"), **results}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results.", suffix=".json")
    with os.fdopen(fd, "w") as out:
        json.dump(ordered, out, indent=2)
        out.write("\n")
    os.replace(tmp, path)
    return path


# --- wrk ----------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package first when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise BenchFailed("wrk is missing and there is no apt-get to install it; install wrk")
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None:
            raise BenchFailed("wrk is missing; install it as root: apt-get install -y wrk")
        prefix = [sudo, "-n"]
    print("wrk is missing: apt-get install -y wrk", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["update"], ["install", "-y", "--no-install-recommends", "wrk"]):
        done = subprocess.run([*prefix, apt, *args], env=env, check=False, timeout=600)
        if done.returncode != 0:
            raise BenchFailed(f"apt-get {' '.join(args)} failed ({done.returncode})")
    found = shutil.which("wrk")
    if not found:
        raise BenchFailed("apt-get installed wrk but it is not on PATH")
    return found


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    output: str
    max_ms: float = 0.0

    @property
    def socket_error_line(self) -> str:
        """wrk's own "Socket errors: connect …, read …, write …, timeout …" line, or ''."""
        match = re.search(r"Socket errors:.*", self.output)
        return match.group(0).strip() if match else ""

    def figures(self) -> dict[str, float]:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
        }


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise BenchFailed(f"unreadable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Requests/sec and the 50th/99th percentiles (``--latency``) of wrk's report, in ms."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50(?:\.0+)?%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99(?:\.0+)?%\s+(\S+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in ", output, re.M)
    if not (rps and p50 and p99 and total):
        raise BenchFailed(f"unreadable wrk output:\n{output}")
    latency = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", output, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=_duration_ms(p50.group(1)),
        p99_ms=_duration_ms(p99.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        output=output,
        max_ms=_duration_ms(latency.group(1)) if latency else 0.0,
    )


def run_wrk(
    url: str,
    *,
    seconds: int,
    connections: int = 64,
    threads: int = 2,
    script: Path | None = None,
    timeout_s: float = 2.0,
) -> WrkResult:
    """One bounded wrk run with ``--latency``; fails on any non-2xx answer."""
    args = [
        ensure_wrk(),
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={seconds}s",
        f"--timeout={timeout_s:g}s",
        "--latency",
    ]
    if script is not None:
        args.append(f"--script={script}")
    args.append(url)
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchFailed(f"wrk did not stop after {seconds}s against {url}") from exc
    if done.returncode != 0:
        raise BenchFailed(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    result = parse_wrk(done.stdout)
    if done.stderr.strip():  # wrk prints Lua errors there
        raise BenchFailed(f"wrk reported errors against {url}:\n{done.stderr}")
    if result.non_2xx:
        raise BenchFailed(f"{result.non_2xx} non-2xx answers from {url}:\n{done.stdout}")
    if result.requests == 0:
        raise BenchFailed(f"wrk made no request against {url}:\n{done.stdout}")
    return result


def lua_string(value: str) -> str:
    """A Lua string literal (the values here are ids and tokens: no quoting surprises)."""
    return json.dumps(value)


def lua_list(values: Sequence[str]) -> str:
    return "{" + ",".join(lua_string(v) for v in values) + "}"


# --- the server under test ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (uvicorn's worker processes), from /proc."""
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces, so split after its closing parenthesis.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            children.append(int(entry.name))
    return sorted(children)


def _is_helper(pid: int) -> bool:
    """multiprocessing's resource tracker, a child of uvicorn's supervisor that serves nothing."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"resource_tracker" in cmdline


class Server:
    """One service process started in its own session (so its workers stop with it)."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str],
        name: str = "server",
        workers: int = 1,
    ) -> None:
        self.args = list(args)
        self.port = port
        self.env = dict(env)
        self.name = name
        self.workers = workers
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = Path(tempfile.gettempdir()) / f"bench-{name}-{port or os.getpid()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_path: str = "/health/ready", timeout_s: float = 60.0) -> None:
        self.spawn()
        self.wait_ready(ready_path, timeout_s=timeout_s)

    def spawn(self) -> None:
        """Start the process without waiting for it (a worker has no HTTP endpoint)."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, path: str, *, timeout_s: float) -> None:
        """Until ``path`` answers 200 and every worker process is up."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BenchFailed(
                        f"{self.name} exited ({self.process.returncode}) before being ready:\n"
                        f"{self.log_tail()}"
                    )
                try:
                    answer = client.get(self.base_url + path)
                    last = f"{answer.status_code} {answer.text[:200]}"
                    if answer.status_code == 200 and len(self.worker_pids()) >= self.workers:
                        return
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.2)
        raise BenchFailed(
            f"{self.name} not ready after {timeout_s:.0f}s ({last}):\n{self.log_tail()}"
        )

    def pids(self) -> list[int]:
        """The server process and all its children."""
        if self.process is None:
            return []
        return [self.process.pid, *child_pids(self.process.pid)]

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's workers, or the process itself."""
        if self.process is None:
            return []
        if self.workers <= 1:
            return [self.process.pid]
        return [pid for pid in child_pids(self.process.pid) if not _is_helper(pid)]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, *, timeout_s: float = 15.0, keep_log: bool = False) -> None:
        """SIGTERM to the process group we started, SIGKILL if it lingers; its log goes too.

        Failures quote :meth:`log_tail` before stopping, so the log is only kept on request.
        """
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        # Workers left behind by a supervisor that died first share its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if not keep_log:
            self.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def running(server: Server, *, ready_path: str = "/health/ready") -> Iterator[Server]:
    try:
        server.start(ready_path=ready_path)
        yield server
    finally:
        server.stop()


def cinema_command(*args: str) -> list[str]:
    """``cinema …`` from this environment's scripts directory."""
    script = Path(sys.executable).parent / "cinema"
    return [str(script) if script.exists() else "cinema", *args]


# --- CPU accounting: is the machine busy with something else? ---------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent running processes since boot (user, nice, system).

    Interrupt time is left out: the kernel charges it to no process, and loopback traffic (ours)
    makes most of it.
    """
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:4]]
    except (OSError, ValueError):
        return 0.0
    return sum(values) / _TICK


def pids_with_cmdline(fragment: str) -> list[int]:
    """Processes whose command line holds ``fragment`` (a PostgreSQL backend shows its database)."""
    needle = fragment.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CpuMeter:
    """How many CPUs *other* processes kept busy while a measurement ran.

    Ours are this process and its reaped children (wrk), plus the pids ``own()`` names (the
    server, the scratch database's backends). Shared machines drift: this says how much.
    """

    def __init__(self, own: Callable[[], Sequence[int]]) -> None:
        self.own = own
        self.background_cpus = 0.0
        self._pids: list[int] = []
        self._start = self._busy = self._ours_start = 0.0

    def _ours(self, pids: Sequence[int]) -> float:
        times = os.times()
        mine = times.user + times.system + times.children_user + times.children_system
        return mine + sum(process_cpu_seconds(pid) for pid in pids)

    def __enter__(self) -> CpuMeter:
        self._pids = list(self.own())
        self._start = time.monotonic()
        self._busy = machine_busy_seconds()
        self._ours_start = self._ours(self._pids)
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self._start
        pids = sorted(set(self._pids) | set(self.own()))
        # a pid first seen at the end counts its whole life: only a small overestimate of ours
        ours = self._ours(pids) - self._ours_start
        others = machine_busy_seconds() - self._busy - ours
        self.background_cpus = max(others, 0.0) / elapsed if elapsed > 0 else 0.0


# --- output -------------------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str = "") -> None:
    """A plain text table: numbers right-aligned, text left-aligned."""
    cells = [[(str(h), False) for h in headers]]
    cells += [[(_cell(v), isinstance(v, int | float)) for v in row] for row in rows]
    widths = [max(len(row[i][0]) for row in cells) for i in range(len(headers))]
    if title:
        print(f"\n{title}")
    for n, row in enumerate(cells):
        line = "  ".join(
            text.rjust(width) if numeric else text.ljust(width)
            for (text, numeric), width in zip(row, widths, strict=True)
        )
        print(line.rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)
