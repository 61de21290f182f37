"""bench.cpu: the CPU a measurement's processes used is charged to the right process."""

from __future__ import annotations

import subprocess
import sys
import time

from bench import cpu

# Burns 0.6 s of CPU, then stays alive (as a service's worker does) until killed.
BURN = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"
SERVICE = (
    "import subprocess, sys, time\n"
    "time.sleep(0.3)\n"
    f"{BURN}"
    f"child = subprocess.Popen([sys.executable, '-c', {BURN + 'time.sleep(60)'!r}])\n"
    "time.sleep(60)\n"
)


class TestProcessCpu:
    def test_a_busy_process_and_its_child_are_charged_to_their_group(self) -> None:
        process = subprocess.Popen([sys.executable, "-c", SERVICE], start_new_session=True)
        meter = cpu.ProcessCpu(lambda: {"service": [process.pid]}, database="no_such_database")
        try:
            with meter:
                deadline = time.monotonic() + 60
                # Polled slowly: each look reads every process of the machine, and this
                # process's own CPU is what the load generator is charged.
                while _tree_cpu(process.pid) < 1.2 and time.monotonic() < deadline:
                    time.sleep(0.5)
        finally:
            for pid in cpu.descendants([process.pid], cpu.scan()):
                subprocess.run(["kill", "-9", str(pid)], check=False)
            process.wait()
        assert meter.seconds["service"] >= 1.0  # without the child it would be about 0.65
        # Charged the service's 1.2 s by mistake it would be over 1.2; its own looks cost less.
        assert meter.seconds[cpu.LOAD_GENERATOR] < 0.8
        assert meter.per_unit_ms(10)["service"] >= 100

    def test_an_idle_process_costs_nothing(self) -> None:
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        time.sleep(0.5)  # the interpreter's start-up is before the measurement
        meter = cpu.ProcessCpu(lambda: {"idle": [process.pid]}, database="no_such_database")
        try:
            with meter:
                time.sleep(1.0)
        finally:
            process.kill()
            process.wait()
        assert meter.seconds["idle"] < 0.1


def _tree_cpu(pid: int) -> float:
    procs = cpu.scan()
    return sum(procs[p].cpu_s for p in cpu.descendants([pid], procs))
