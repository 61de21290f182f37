"""The per-fault counts ``make test-faults`` prints."""

from __future__ import annotations

from typing import Any

RESULTS: list[dict[str, Any]] = []
COLUMNS = ("attempted", "succeeded", "duplicates suppressed", "lost", "doubled")


def table(results: list[dict[str, Any]]) -> list[str]:
    width = max(len("fault"), *(len(r["fault"]) for r in results))
    head = f"{'fault':<{width}}  " + "  ".join(f"{c:>11}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for result in results:
        cells = "  ".join(f"{result[c]!s:>11}" for c in COLUMNS)
        lines.append(f"{result['fault']:<{width}}  {cells}")
    for result in results:
        lines.append(f"{result['fault']}: {result['observed']}; checked {result['checked']}")
    return lines
