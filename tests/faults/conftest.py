"""The fault suite runs only in ``make test-faults``; its per-fault table closes the run."""

from __future__ import annotations

import json

import pytest

from tests import support
from tests.billing_api.conftest import suite  # the in-process suite for the lifecycle model
from tests.faults.report import RESULTS, table

__all__ = ["suite"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("faults: nothing lost, nothing doubled")
    for line in table(RESULTS):
        terminalreporter.write_line(line)
    support.ARTIFACTS.mkdir(exist_ok=True)
    (support.ARTIFACTS / "faults.json").write_text(json.dumps(RESULTS, indent=2, default=str))
