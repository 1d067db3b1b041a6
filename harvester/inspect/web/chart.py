"""The runs of a target over time as two small inline SVG charts, rendered on the server.

One chart per measure, each with its own axis (no double axis): the records after each run as a
line, the changes (+I, +U, -D) each run committed as bars (log scale). Every point and bar links
to its run's page and carries a `<title>` tooltip; a failed run is red and changed nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from harvester.inspect.report import run_series
from harvester.inspect.web.html import e, url, when
from harvester.state import Run

WIDTH, HEIGHT, PAD_X, PAD_Y = 420, 170, 56, 24
MAX_CHARTED = 200  # the last runs charted (the runs table pages through all of them)


def _frame(title: str, ticks: Sequence[tuple[float, int]]) -> list[str]:
    """The chart's `<svg>` opening: its title and a grid line per tick (share of the height,
    value)."""
    inner_h = HEIGHT - 2 * PAD_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{e(title)}">',
        f"<title>{e(title)}</title>",
    ]
    for share, value in ticks:
        level = HEIGHT - PAD_Y - inner_h * share
        cls = "axis" if share == 0 else "grid"
        parts += [
            f'<line class="{cls}" x1="{PAD_X}" y1="{level:.1f}" x2="{WIDTH - 8}" '
            f'y2="{level:.1f}"/>',
            f'<text x="{PAD_X - 6}" y="{level + 4:.1f}" text-anchor="end">{value:,}</text>',
        ]
    return parts


def _x(i: int, count: int) -> float:
    inner_w = WIDTH - PAD_X - 40  # room for half a bar on either side
    return PAD_X + 20 + (inner_w / 2 if count == 1 else inner_w * i / (count - 1))


def _tip(run: Run, text: str) -> str:
    return f"{run.id} ({run.status}) {when(run.started_at)}: {text}"


def records_chart(target: str, runs: Sequence[Run]) -> str:
    """Records after each run, as a line with a linked point per run."""
    values, _changes = run_series(runs)
    low, high = min(values, default=0), max(values, default=0)
    if high - low < 2:
        low, high = max(0, low - 1), high + 1
    inner_h = HEIGHT - 2 * PAD_Y
    count = len(runs)

    def y(value: int) -> float:
        return HEIGHT - PAD_Y - inner_h * (value - low) / (high - low)

    ticks = [(share, round(low + (high - low) * share)) for share in (0.0, 0.5, 1.0)]
    parts = _frame(f"records after each run of {target}", ticks)
    if count > 1:
        points = " ".join(f"{_x(i, count):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline class="records" points="{points}"/>')
    for i, (run, value) in enumerate(zip(runs, values, strict=True)):
        failed = " failed" if run.status == "failed" else ""
        parts.append(
            f'<a href="{e(url("target", target, "run", run.id))}">'
            f'<circle class="point{failed}" data-run="{e(run.id)}" cx="{_x(i, count):.1f}" '
            f'cy="{y(value):.1f}" r="4"><title>{e(_tip(run, f"{value:,} records"))}</title>'
            "</circle></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def changes_chart(target: str, runs: Sequence[Run]) -> str:
    """Changes each run committed, as a linked bar per run, on a log scale: a first harvest's
    million inserts would flatten every later run's few changes on a linear one."""
    _records, values = run_series(runs)
    top = math.log10(max(max(values, default=0), 1) + 1)
    inner_h = HEIGHT - 2 * PAD_Y
    count = len(runs)
    width = max(2.0, min(24.0, (WIDTH - PAD_X - 16) / max(count, 1) * 0.7))
    powers = [10**p for p in range(math.floor(top) + 1)]
    ticks = [(0.0, 0), *((math.log10(v + 1) / top, v) for v in powers if math.log10(v + 1) <= top)]
    parts = _frame(f"changes made by each run of {target} (log scale)", ticks)
    for i, (run, value) in enumerate(zip(runs, values, strict=True)):
        failed = " failed" if run.status == "failed" else ""
        height = max(inner_h * math.log10(value + 1) / top, 1.0 if failed else 0.0)
        tip = f"+I {run.inserted:,}, +U {run.updated:,}, -D {run.deleted:,}"
        parts.append(
            f'<a href="{e(url("target", target, "run", run.id))}">'
            f'<rect class="bar{failed}" data-run="{e(run.id)}" x="{_x(i, count) - width / 2:.1f}" '
            f'y="{HEIGHT - PAD_Y - height:.1f}" width="{width:.1f}" height="{height:.1f}">'
            f"<title>{e(_tip(run, tip if not failed else 'failed, no changes'))}</title>"
            "</rect></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def charts(target: str, runs: Sequence[Run]) -> str:
    """Both charts of the last MAX_CHARTED runs (oldest first), with captions."""
    shown = list(runs)[-MAX_CHARTED:]
    span = ""
    if shown:
        span = f" ({when(shown[0].started_at)} to {when(shown[-1].started_at)})"
    more = f" (the last {len(shown):,} of {len(runs):,})" if len(runs) > len(shown) else ""
    return (
        f'<div class="charts" data-target="{e(target)}">'
        f'<figure class="chart-records">{records_chart(target, shown)}'
        f"<figcaption>Records after each run{e(more)}{e(span)}</figcaption></figure>"
        f'<figure class="chart-changes">{changes_chart(target, shown)}'
        f"<figcaption>Changes (+I, +U, -D) each run made, on a log scale; red: failed"
        "</figcaption></figure>"
        "</div>"
    )
