"""Tracing is off unless an OTLP endpoint is configured, and off costs nothing."""

from __future__ import annotations

import os
import subprocess
import sys

OFF = """
import sys
from shared import app, consumer, outbox, runtime, tracing
assert not tracing.configure("billing-api")
assert tracing.current_carrier() is None
# the API may come with a library; the SDK, the exporter and the instrumentations never do
heavy = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation")
loaded = sorted(name for name in sys.modules if name.startswith(heavy))
assert not loaded, loaded
print("off")
"""


class TestOff:
    def test_without_an_endpoint_no_sdk_exporter_or_instrumentation_is_loaded(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        done = subprocess.run(
            [sys.executable, "-c", OFF], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "off"
