"""``BENCH_PROFILE=1``: a py-spy flame graph of every service for the measured window only.

py-spy (a development dependency) is attached to each running service process when the
measurement starts and stopped with SIGINT when it ends, so start-up, seeding and checkouts are
not in the graphs. ``--nonblocking`` keeps the services running while they are sampled; py-spy's
own CPU is not counted in any process's figure, but it shares the two cores, so throughput with
profiling on is lower than without: read the graphs for *where* the time goes, not the figures.

``BENCH_PROFILE=1`` writes ``<process>.svg`` into a new directory under the system's temporary
directory; ``BENCH_PROFILE=/some/dir`` writes there. Open the SVGs in a browser;
``BENCH_PROFILE_FORMAT=raw`` writes py-spy's collapsed stacks instead (``<process>.txt``).
py-spy needs to be allowed to read other processes' memory (root, or ``CAP_SYS_PTRACE``, or
``kernel.yama.ptrace_scope=0``); when it cannot attach, the benchmark says so and goes on.

By hand, against any running process (``make run``, for example)::

    uv run --frozen py-spy record --pid <pid> --nonblocking -o worker.svg   # Ctrl-C to stop
    uv run --frozen py-spy top --pid <pid>
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

RATE = 100
# py-spy's output formats by BENCH_PROFILE_FORMAT: flame graphs to open in a browser (the
# default), or the collapsed stacks ("raw": one line per stack with its sample count) to read
# with grep and sort, say which functions' own time dominates.
FORMATS = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}


def _format() -> tuple[str, str]:
    form = os.environ.get("BENCH_PROFILE_FORMAT", "").strip() or "flamegraph"
    if form not in FORMATS:
        raise ValueError(f"BENCH_PROFILE_FORMAT must be one of {', '.join(FORMATS)}")
    return form, FORMATS[form]


def profile_dir() -> Path | None:
    """Where ``BENCH_PROFILE`` asks for flame graphs (None: profiling is off)."""
    raw = os.environ.get("BENCH_PROFILE", "").strip()
    if raw in ("", "0", "false", "no"):
        return None
    if raw in ("1", "true", "yes"):
        return Path(tempfile.mkdtemp(prefix="bench-profile-"))
    path = Path(raw).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def recording(targets: Mapping[str, Sequence[int]]) -> Iterator[list[Path]]:
    """py-spy on each ``{name: pids}`` process while the block runs (nothing when off); yields
    the flame graphs' paths, written once the block has ended."""
    directory = profile_dir()
    written: list[Path] = []
    if directory is None:
        yield written
        return
    binary = _py_spy()
    if binary is None:
        print("BENCH_PROFILE: py-spy not found (uv sync --frozen installs it)", file=sys.stderr)
        yield written
        return
    form, suffix = _format()
    spies: list[tuple[Path, subprocess.Popen[bytes]]] = []
    for name, pids in targets.items():
        for n, pid in enumerate(pids):
            stem = name if len(pids) == 1 else f"{name}-{n + 1}"
            out = directory / f"{stem}.{suffix}"
            args = ["record", "--pid", str(pid), "--rate", str(RATE), "--nonblocking"]
            spy = subprocess.Popen(
                [binary, *args, "--format", form, "--output", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
            spies.append((out, spy))
    time.sleep(0.5)  # attached before the measurement starts
    try:
        yield written
    finally:
        for _out, spy in spies:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
        for out, spy in spies:
            try:
                _, err = spy.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            if out.exists():
                written.append(out)
            else:
                reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                print(f"BENCH_PROFILE: no graph for {out.stem}: {reason[0]}", file=sys.stderr)
        if written:
            print(f"\nprofiles (py-spy, {RATE} Hz) in {directory}:", flush=True)
            for out in written:
                print(f"  {out.name}", flush=True)
