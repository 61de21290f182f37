"""billing_api.reports.svg: the dashboard's charts are well-formed SVG, one mark per point, drawn
to scale, with every label escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from billing_api.reports.svg import HEIGHT, Point, bar_chart, line_chart

NS = "{http://www.w3.org/2000/svg}"


def parsed(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # our own markup: is it well-formed?


class TestBarChart:
    def test_one_bar_a_point_a_negative_one_hanging_below_zero(self) -> None:
        points = [Point("2026-11-01", 100), Point("2026-11-02", 0), Point("2026-11-03", -50)]
        svg = parsed(bar_chart("Net", points, shown=lambda v: f"{v / 100:.2f} RUB"))
        bars = svg.findall(f"{NS}rect")
        assert len(bars) == 3
        tall, empty, negative = (float(b.get("height", "")) for b in bars)
        assert abs(tall - 2 * negative) < 0.2 and empty == 0  # drawn to one decimal
        zero = float(svg.findall(f"{NS}line")[0].get("y1", ""))
        assert float(bars[2].get("y", "")) == zero  # it starts at the zero line, goes down
        assert abs(float(bars[0].get("y", "")) + tall - zero) < 0.2
        assert bars[0].findtext(f"{NS}title") == "2026-11-01: 1.00 RUB"

    def test_labels_are_escaped(self) -> None:
        markup = bar_chart('<script>alert("x")</script>', [Point("<b>&", 1)])
        assert "<script>" not in markup and "<b>" not in markup
        assert parsed(markup).findtext(f"{NS}title") == '<script>alert("x")</script>'

    def test_no_points_and_all_zeros_still_draw(self) -> None:
        for points in ([], [Point("a", 0), Point("b", 0)]):
            svg = parsed(bar_chart("Empty", points))
            assert svg.get("viewBox") == f"0 0 720 {HEIGHT}"


class TestLineChart:
    def test_a_dot_a_point_higher_values_drawn_higher(self) -> None:
        svg = parsed(line_chart("Subscribers", [Point("a", 1), Point("b", 3), Point("c", 2)]))
        dots = [float(c.get("cy", "")) for c in svg.findall(f"{NS}circle")]
        assert len(dots) == 3
        assert dots[1] < dots[2] < dots[0]  # SVG's y grows downwards
        assert len(svg.findall(f"{NS}polyline")) == 1
