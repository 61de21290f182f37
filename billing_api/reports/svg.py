"""The dashboard's charts as inline SVG, drawn on the server: no script, no CDN, no library.

Pure functions of their data. Labels are escaped; every number is drawn from integers and the
chart's fixed size, so the markup is the same for the same data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 16, 28


@dataclass(frozen=True)
class Point:
    label: str  # shown under the first, middle and last points, and in each tooltip
    value: int


def _scale(values: Sequence[int]) -> tuple[int, int]:
    low, high = min([0, *values]), max([0, *values])
    return low, high if high > low else low + 1


def _y(value: int, low: int, high: int) -> float:
    inner = HEIGHT - TOP - BOTTOM
    return TOP + inner - (value - low) * inner / (high - low)


def _frame(
    title: str,
    low: int,
    high: int,
    points: Sequence[Point],
    body: list[str],
    shown: Callable[[int], str],
) -> str:
    inner_width = WIDTH - LEFT - RIGHT
    step = inner_width / max(len(points), 1)
    labels = []
    for index in sorted({0, len(points) // 2, len(points) - 1} if points else set()):
        x = LEFT + step * index + step / 2
        labels.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{escape(points[index].label)}</text>"
        )
    zero = _y(0, low, high)
    return "".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="100%" role="img" aria-label="{escape(title)}" font-size="11" '
            f'font-family="sans-serif"><title>{escape(title)}</title>',
            f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{escape(shown(high))}</text>',
            f'<text x="{LEFT - 6}" y="{zero:.1f}" text-anchor="end">0</text>',
            f'<line x1="{LEFT}" y1="{zero:.1f}" x2="{WIDTH - RIGHT}" y2="{zero:.1f}" '
            'stroke="#999"/>',
            *body,
            *labels,
            "</svg>",
        ]
    )


def bar_chart(title: str, points: Sequence[Point], *, shown: Callable[[int], str] = str) -> str:
    """One bar per point (negative values hang below the zero line); ``shown`` writes a value
    for people (an amount in major units, say)."""
    low, high = _scale([p.value for p in points])
    step = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    zero = _y(0, low, high)
    bars = []
    for index, point in enumerate(points):
        top = _y(point.value, low, high)
        y, height = min(top, zero), abs(zero - top)
        bars.append(
            f'<rect class="bar" x="{LEFT + step * index + step * 0.1:.1f}" y="{y:.1f}" '
            f'width="{step * 0.8:.1f}" height="{height:.1f}" fill="#3b7dd8">'
            f"<title>{escape(point.label)}: {escape(shown(point.value))}</title></rect>"
        )
    return _frame(title, low, high, points, bars, shown)


def line_chart(title: str, points: Sequence[Point]) -> str:
    """A line through the points, a dot on each."""
    low, high = _scale([p.value for p in points])
    step = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    coords = [
        (LEFT + step * index + step / 2, _y(point.value, low, high))
        for index, point in enumerate(points)
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    body = [f'<polyline points="{path}" fill="none" stroke="#2a9d58" stroke-width="2"/>']
    for (x, y), point in zip(coords, points, strict=True):
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#2a9d58">'
            f"<title>{escape(point.label)}: {point.value}</title></circle>"
        )
    return _frame(title, low, high, points, body, str)
