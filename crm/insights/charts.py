"""Server-rendered SVG charts: horizontal bars (plain or stacked), vertical stacked columns and lines.

No JavaScript and no library: each chart is one ``<svg>`` element, ``role="img"`` with a ``<title>`` and a
``<desc>`` that screen readers announce, drawn on a 360-unit-wide ``viewBox`` that scales to the width it
is given (``width: 100%``), so its 11-unit text stays readable on a 360 px phone. Every chart on a page
sits next to the table of the same figures (the table is the accessible, exact version; the chart is the
glance). Colours are the Okabe-Ito palette, distinguishable with the common colour-vision deficiencies,
and every series is also named in the legend and the table.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 360
FONT = 11
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
GRID = "#d0d4da"
INK = "#1f2933"
_ids = itertools.count(1)


@dataclass(frozen=True)
class Series:
    """One named row of values, one per label (``None``: no value, e.g. an NPS month without answers)."""

    name: str
    values: Sequence[float | None]


def _num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "no data"
    text = f"{value:,.1f}".removesuffix(".0") if isinstance(value, float) else f"{value:,}"
    return f"{text}{unit}"


def _svg(title: str, desc: str, height: float, body: list[str]) -> Markup:
    """The ``<svg>`` around ``body``: ``role="img"``, labelled by its title and described by its desc."""
    n = next(_ids)
    tid, did = f"chart-{n}-title", f"chart-{n}-desc"
    head = (f'<svg class="chart" role="img" aria-labelledby="{tid} {did}" viewBox="0 0 {WIDTH} {_num(height)}" '
            f'width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg" '
            f'font-family="system-ui, sans-serif" font-size="{FONT}">'
            f'<title id="{tid}">{escape(title)}</title><desc id="{did}">{escape(desc)}</desc>')
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704 - every text in it is escaped where it is made


def _legend(parts: list[str], names: Sequence[str], y: float) -> float:
    """Legend entries wrapped over as many lines as the width needs; returns the y below it."""
    x = 0.0
    for i, name in enumerate(names):
        w = 16 + 6.2 * len(name)
        if x and x + w > WIDTH:
            x, y = 0.0, y + 16
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{_num(x)}" y="{_num(y - 9)}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{_num(x + 14)}" y="{_num(y)}" fill="{INK}">{escape(name)}</text>')
        x += w + 8
    return y + 16


def _ceiling(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    for m in (1, 2, 5, 10):
        if m * step >= value:
            return m * step
    return 10 * step


def hbar(title: str, desc: str, labels: Sequence[str], series: Sequence[Series], *, unit: str = "",
         max_value: float | None = None) -> Markup:
    """Horizontal bars, one row per label: one series draws plain bars with their value at the end, several
    draw stacked bars (their total at the end). Long labels sit above their bar, so phones keep the width."""
    stacked = len(series) > 1
    top = _legend([], [s.name for s in series], FONT + 2) if stacked else 4.0
    row = 30.0
    height = top + row * max(len(labels), 1) + 6
    parts: list[str] = []
    if stacked:
        _legend(parts, [s.name for s in series], FONT + 2)
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    scale_max = max_value if max_value is not None else _ceiling(max(totals, default=0))
    room = WIDTH - 56  # keep space for the value at the end of the longest bar
    for i, label in enumerate(labels):
        y = top + i * row
        parts.append(f'<text x="0" y="{_num(y + FONT)}" fill="{INK}">{escape(label)}</text>')
        x = 0.0
        for k, s in enumerate(series):
            value = s.values[i] or 0
            w = room * value / scale_max if scale_max else 0
            if w > 0:
                parts.append(f'<rect x="{_num(x)}" y="{_num(y + 14)}" width="{_num(max(w, 1))}" height="12" '
                             f'fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(label)}, {escape(s.name)}: '
                             f'{escape(_fmt(s.values[i], unit))}</title></rect>')
            x += w
        total = totals[i] if stacked or series[0].values[i] is not None else None
        parts.append(f'<text x="{_num(x + 4)}" y="{_num(y + 24)}" fill="{INK}">{escape(_fmt(total, unit))}</text>')
    if not labels:
        parts.append(f'<text x="0" y="{_num(top + FONT + 4)}" fill="{INK}">No data for this period.</text>')
    return _svg(title, desc, height, parts)


def _x_labels(parts: list[str], labels: Sequence[str], x_of: list[float], y: float) -> None:
    """At most about six labels under the axis, evenly spread, so they never overlap at 360 units."""
    if not labels:
        return
    step = max(1, -(-len(labels) // 6))
    for i in range(0, len(labels), step):
        anchor = "start" if i == 0 else "middle"
        parts.append(f'<text x="{_num(x_of[i])}" y="{_num(y)}" text-anchor="{anchor}" fill="{INK}">'
                     f'{escape(labels[i])}</text>')


def _y_axis(parts: list[str], left: float, top: float, plot_h: float, lo: float, hi: float) -> None:
    for frac in (0.0, 0.5, 1.0):
        value = lo + (hi - lo) * frac
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{_num(left)}" x2="{WIDTH}" y1="{_num(y)}" y2="{_num(y)}" stroke="{GRID}"/>'
                     f'<text x="{_num(left - 4)}" y="{_num(y + 4)}" text-anchor="end" fill="{INK}">'
                     f'{escape(_num(value))}</text>')


def columns(title: str, desc: str, labels: Sequence[str], series: Sequence[Series]) -> Markup:
    """Vertical stacked columns over time (one column per label, e.g. per week), legend on top."""
    parts: list[str] = []
    top = _legend(parts, [s.name for s in series], FONT + 2) + 4
    left, plot_h = 34.0, 150.0
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    hi = _ceiling(max(totals, default=0))
    _y_axis(parts, left, top, plot_h, 0, hi)
    n = max(len(labels), 1)
    slot = (WIDTH - left) / n
    bar = max(slot * 0.75, 1.0)
    x_of = []
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        x_of.append(x + bar / 2)
        y = top + plot_h
        for k, s in enumerate(series):
            value = s.values[i] or 0
            h = plot_h * value / hi
            if h > 0:
                y -= h
                parts.append(f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(bar)}" height="{_num(h)}" '
                             f'fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(label)}, {escape(s.name)}: '
                             f'{escape(_fmt(s.values[i]))}</title></rect>')
    if x_of:
        x_of[0] = left
    _x_labels(parts, labels, x_of, top + plot_h + 14)
    if not labels:
        parts.append(f'<text x="{_num(left + 4)}" y="{_num(top + 20)}" fill="{INK}">No data for this period.</text>')
    return _svg(title, desc, top + plot_h + 22, parts)


def line(title: str, desc: str, labels: Sequence[str], series: Sequence[Series], *, lo: float, hi: float) -> Markup:
    """Lines over time between ``lo`` and ``hi`` (NPS: -100..100); a missing value breaks the line, a
    lone value is a dot. A zero line is drawn when the range spans it."""
    parts: list[str] = []
    top = _legend(parts, [s.name for s in series], FONT + 2) + 4
    left, plot_h = 34.0, 150.0
    _y_axis(parts, left, top, plot_h, lo, hi)
    if lo < 0 < hi:
        y0 = top + plot_h * (1 - (0 - lo) / (hi - lo))
        parts.append(f'<line x1="{_num(left)}" x2="{WIDTH}" y1="{_num(y0)}" y2="{_num(y0)}" stroke="{INK}" '
                     f'stroke-width="0.6"/>')
    n = len(labels)
    x_of = [left + 6 + (WIDTH - left - 12) * (i / (n - 1) if n > 1 else 0.5) for i in range(n)]
    for k, s in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        run: list[str] = []
        for i, value in enumerate(list(s.values) + [None]):
            if value is not None:
                y = top + plot_h * (1 - (min(max(value, lo), hi) - lo) / (hi - lo))
                run.append(f"{_num(x_of[i])},{_num(y)}")
                parts.append(f'<circle cx="{_num(x_of[i])}" cy="{_num(y)}" r="3" fill="{colour}"><title>'
                             f'{escape(labels[i])}, {escape(s.name)}: {escape(_fmt(value))}</title></circle>')
            elif run:
                if len(run) > 1:
                    parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
                                 f'stroke-width="2"/>')
                run = []
    _x_labels(parts, labels, x_of, top + plot_h + 14)
    if not labels:
        parts.append(f'<text x="{_num(left + 4)}" y="{_num(top + 20)}" fill="{INK}">No data for this period.</text>')
    return _svg(title, desc, top + plot_h + 22, parts)
