"""Where the CPU of a measurement went: seconds per process of the suite, the broker, PostgreSQL.

:class:`ProcessCpu` samples ``/proc`` twice a second while a measurement runs and, at the end,
says how many CPU seconds each named group of processes used:

- each process the benchmark started (its whole process tree: uvicorn's workers included);
- ``rabbitmq``: every ``beam.smp`` on the machine. The broker is shared with whatever else runs
  here, so on a busy machine this overstates our share; it is counted all the same, since the
  broker's work per message is part of what a payment costs;
- ``postgres``: the backends connected to the benchmark's scratch database (PostgreSQL's own
  background processes -- WAL writer, checkpointer -- serve every database and are left out);
- ``load-generator``: this process itself (its own user + system time, exactly), and the
  backends of the connections it watches the run with (:meth:`ProcessCpu.claim`); the backend that
  seeds the data is not counted at all (:meth:`ProcessCpu.ignore`).

A process first seen after the start (a pooled connection opened during the run) counts its whole
life; one that exits between two samples loses at most half a second of its time. Sampling costs
one pass over ``/proc`` per half second, charged to the load generator.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench import common

SAMPLE_S = 0.5
LOAD_GENERATOR = "load-generator"

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    cpu_s: float


def scan() -> dict[int, ProcInfo]:
    """Every process's parent, name and user + system CPU seconds, in one pass over /proc."""
    found: dict[int, ProcInfo] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces, so split after its closing parenthesis.
        close = stat.rfind(")")
        fields = stat[close + 2 :].split()
        pid = int(entry.name)
        found[pid] = ProcInfo(
            pid=pid,
            ppid=int(fields[1]),
            comm=stat[stat.find("(") + 1 : close],
            cpu_s=(int(fields[11]) + int(fields[12])) / _TICK,
        )
    return found


def descendants(roots: Sequence[int], procs: Mapping[int, ProcInfo]) -> list[int]:
    """``roots`` (those alive) and every process below them."""
    children: dict[int, list[int]] = {}
    for info in procs.values():
        children.setdefault(info.ppid, []).append(info.pid)
    tree: list[int] = []
    todo = [pid for pid in roots if pid in procs]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class ProcessCpu:
    """CPU seconds per named group of processes over a ``with`` block.

    ``roots`` names the processes the benchmark started (called at every sample, so a process
    started or stopped during the block is followed); ``database`` is the scratch database whose
    PostgreSQL backends are counted.
    """

    def __init__(self, roots: Callable[[], Mapping[str, Sequence[int]]], *, database: str) -> None:
        self.roots = roots
        self._needle = f" {database} ".encode()
        self._start: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._own_start = 0.0
        self._busy_start = 0.0
        self._elapsed = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._postgres: set[int] = set()
        self._claimed: set[int] = set()
        self._ignored: set[int] = set()
        self.seconds: dict[str, float] = {}
        self.background_cpus = 0.0

    def claim(self, backend_pid: int) -> None:
        """A PostgreSQL backend serving the load generator (its LISTEN or polling connection):
        counted as the load generator's, not as the suite's."""
        self._claimed.add(backend_pid)

    def ignore(self, backend_pid: int) -> None:
        """A PostgreSQL backend doing the benchmark's own setup (seeding): not counted."""
        self._ignored.add(backend_pid)

    def _groups(self, procs: Mapping[int, ProcInfo]) -> dict[str, list[int]]:
        groups = {name: descendants(pids, procs) for name, pids in self.roots().items()}
        groups["rabbitmq"] = [pid for pid, info in procs.items() if info.comm == "beam.smp"]
        backends = []
        for pid, info in procs.items():
            if info.comm.startswith("postgres"):
                if pid not in self._postgres and self._needle in _cmdline(pid):
                    self._postgres.add(pid)
                if pid in self._postgres:
                    backends.append(pid)
        groups["postgres"] = backends
        return groups

    def _sample(self, *, first: bool = False) -> None:
        procs = scan()
        for name, pids in self._groups(procs).items():
            for pid in pids:
                key = (name, pid)
                cpu = procs[pid].cpu_s
                if key not in self._start:
                    # seen at the start: counted from now; started since: its whole life
                    self._start[key] = cpu if first else 0.0
                self._last[key] = cpu

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def __enter__(self) -> ProcessCpu:
        self._sample(first=True)
        self._own_start = _own_cpu()
        self._busy_start = common.machine_busy_seconds()
        self._elapsed = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        elapsed = time.monotonic() - self._elapsed
        seconds: dict[str, float] = {}
        for (name, pid), start in self._start.items():
            if pid in self._ignored:
                continue
            group = LOAD_GENERATOR if pid in self._claimed else name
            used = self._last[(name, pid)] - start
            seconds[group] = seconds.get(group, 0.0) + max(used, 0.0)
        seconds[LOAD_GENERATOR] = seconds.get(LOAD_GENERATOR, 0.0) + _own_cpu() - self._own_start
        self.seconds = seconds
        others = common.machine_busy_seconds() - self._busy_start - sum(seconds.values())
        self.background_cpus = max(others, 0.0) / elapsed if elapsed > 0 else 0.0

    def per_unit_ms(self, units: int) -> dict[str, float]:
        """Milliseconds of CPU per unit of work (a payment, a renewal) for each group, and total."""
        if units <= 0:
            return {}
        ms = {name: round(s * 1000 / units, 3) for name, s in sorted(self.seconds.items())}
        ms["total"] = round(sum(self.seconds.values()) * 1000 / units, 3)
        return ms


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def print_breakdown(meter: ProcessCpu, units: int, unit: str) -> None:
    """The table of CPU per process: seconds, ms per unit, share of the total."""
    total = sum(meter.seconds.values()) or 1.0
    rows: list[list[object]] = [
        [name, round(seconds, 2), round(seconds * 1000 / units, 2), f"{seconds / total:.0%}"]
        for name, seconds in sorted(meter.seconds.items(), key=lambda item: -item[1])
    ]
    rows.append(["total", round(total, 2), round(total * 1000 / units, 2), "100%"])
    common.print_table(
        ["process", "cpu s", f"cpu ms / {unit}", "share"],
        rows,
        title=f"CPU per process ({units:,} {unit}s; other processes kept "
        f"{meter.background_cpus:.2f} CPUs busy)",
    )
