"""The self-contained HTML report: runs over time, stores, schemas, latest diffs, record tables.

Every harvested string goes through `html.escape` on its way into the page, nothing is embedded
as script data, and a Content-Security-Policy allows only this file's own script and style (by
hash), so a value that slipped through escaping still could not run and the page never fetches
anything at view time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from importlib.resources import files
from pathlib import Path
from string import Template

from harvester.inspect.diff import RecordDiff, StoreDiff
from harvester.inspect.pretty import pretty_text
from harvester.inspect.queries import StateReader, run_dict
from harvester.inspect.render import counted
from harvester.inspect.schema import infer
from harvester.inspect.schema_history import indexes_text
from harvester.inspect.triggers import stores_read, trigger_text
from harvester.state import Run, Store
from harvester.surrogates import escape_surrogates

MAX_RECORDS = 1000  # rows per store's record table
MAX_DIFF_ROWS = 200  # rows per section of a store's latest diff
MAX_RUNS_LISTED = 200  # rows of a target's runs table (the chart has every run)
MAX_VALUE_CHARS = 2000  # a cell longer than this is cut, so one huge value cannot bloat the page
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 760, 240, 48


def _asset(name: str) -> str:
    return files("harvester.inspect").joinpath("templates", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _e(value: object) -> str:
    # UTF-8 cannot hold a lone surrogate (a valid JS string can): it is shown as its escape.
    return escape(escape_surrogates(str(value)), quote=True)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + " …(cut)"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _table(headers: Sequence[str], rows: Sequence[str], *, attrs: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


class _Ids:
    """Element ids made from counters, never from harvested names."""

    def __init__(self) -> None:
        self.n = 0

    def next(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


def _records_scale(values: Sequence[int]) -> tuple[int, int]:
    """The records axis spans the counts seen (not from 0), so a few changes stay visible."""
    low, high = min(values, default=0), max(values, default=0)
    if high - low < 2:
        return max(0, low - 1), high + 1
    return low, high


def _log(value: int) -> float:
    return math.log10(1 + value)


def chart(runs: Sequence[Run]) -> str:
    """An inline SVG of records after each run and changes made by it, one point per run.

    Changes use a log scale: a first harvest adds every record, and on a linear axis it would
    flatten the handful of changes every later run makes.
    """
    count = len(runs)
    inner_w = CHART_WIDTH - 2 * CHART_PAD
    inner_h = CHART_HEIGHT - 2 * CHART_PAD
    right, bottom = CHART_PAD + inner_w, CHART_PAD + inner_h
    records_after, changes = run_series(runs)
    low, high = _records_scale(records_after)
    top_changes = _log(max(changes, default=0)) or 1.0

    def x(i: int) -> float:
        return CHART_PAD + (inner_w / 2 if count == 1 else inner_w * i / (count - 1))

    def y_records(value: int) -> float:
        return bottom - inner_h * (value - low) / (high - low)

    def y_changes(value: int) -> float:
        return bottom - inner_h * _log(value) / top_changes

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img">',
        f'<text x="{CHART_PAD - 6}" y="{CHART_PAD - 18}">records</text>',
        f'<text x="{right + 6}" y="{CHART_PAD - 18}" text-anchor="end">changes (log)</text>',
    ]
    for share in (0.0, 0.5, 1.0):
        level = bottom - inner_h * share
        parts += [
            f'<line class="{"axis" if share == 0 else "grid"}" x1="{CHART_PAD}" '
            f'y1="{level:.1f}" x2="{right}" y2="{level:.1f}"/>',
            f'<text x="{CHART_PAD - 6}" y="{level + 4:.1f}" text-anchor="end">'
            f"{round(low + (high - low) * share):,}</text>",
        ]
    tick, last_label = 0, math.inf
    while _log(tick) <= top_changes + 1e-9:
        level = y_changes(tick)
        if last_label - level >= 12:  # labels closer than a line of text would overlap
            parts.append(f'<text x="{right + 6}" y="{level + 4:.1f}">{tick:,}</text>')
            last_label = level
        tick = tick * 10 if tick else 1
    for name, values, y in (
        ("records", records_after, y_records),
        ("changes", changes, y_changes),
    ):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<g class="series-{name}">')
        if count > 1:
            parts.append(f'<polyline class="line-{name}" points="{points}"/>')
        for i, (run, value) in enumerate(zip(runs, values, strict=True)):
            failed = " failed" if run.status == "failed" else ""
            tip = f"{run.id} ({run.status}) {_when(run.started_at)}: {value:,} {name}"
            parts.append(
                f'<circle class="point{failed}" data-run="{_e(run.id)}" cx="{x(i):.1f}" '
                f'cy="{y(value):.1f}" r="4"><title>{_e(tip)}</title></circle>'
            )
        parts.append("</g>")
    if runs:
        first, last = _when(runs[0].started_at), _when(runs[-1].started_at)
        parts.append(f'<text x="{CHART_PAD}" y="{bottom + 18}">{_e(first)}</text>')
        if count > 1:
            parts.append(f'<text x="{right}" y="{bottom + 18}" text-anchor="end">{_e(last)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def run_series(runs: Sequence[Run]) -> tuple[list[int], list[int]]:
    """Per run (oldest first): records committed after it, and the changes it committed.

    A run that did not commit changed nothing: the count stays as it was and its changes are 0.
    """
    records: list[int] = []
    changes: list[int] = []
    current = 0
    for run in runs:
        committed = run.status == "committed"
        if committed:
            current = run.records
        records.append(current)
        changes.append(run.inserted + run.updated + run.deleted if committed else 0)
    return records, changes


def _runs_table(runs: Sequence[Run], path: Path) -> str:
    """The target's runs, newest first; with a trigger column (as `harvester runs` shows it)
    when an event-driven run is listed."""
    listed = list(reversed(runs))[:MAX_RUNS_LISTED]
    read = stores_read(path, listed)
    rows = []
    for run in listed:
        duration = run_dict(run)["duration_s"]
        trigger = f'<td class="trigger">{_e(trigger_text(run, read.get(run.id)))}</td>'
        rows.append(
            "<tr>"
            f'<td class="code">{_e(run.id)}</td>'
            f'<td class="status-{_e(run.status)}">{_e(run.status)}</td>'
            + (trigger if read else "")
            + f"<td>{_e(_when(run.started_at))}</td>"
            f'<td class="num">{"" if duration is None else f"{duration:.2f}"}</td>'
            f'<td class="num">{_num(run.inserted)}</td><td class="num">{_num(run.updated)}</td>'
            f'<td class="num">{_num(run.deleted)}</td><td class="num">{_num(run.unchanged)}</td>'
            f"<td>{_e(run.error or '')}</td>"
            "</tr>"
        )
    more = len(runs) - MAX_RUNS_LISTED
    note = f'<p class="note">{more:,} older runs not listed.</p>' if more > 0 else ""
    headers = ["run", "status", "started", "seconds", "+I", "+U", "-D", "unchanged", "error"]
    if read:
        headers.insert(2, "trigger")
    return _table(headers, rows, attrs=' class="runs"') + note


def _facts(store: Store) -> str:
    indexes = indexes_text(store.indexes)
    facts = [
        ("origin", store.origin),
        ("database", f"{store.db} (version {store.db_version})"),
        ("key path", json.dumps(store.key_path)),
        ("auto-increment", "yes" if store.auto_increment else "no"),
        ("indexes", indexes or "none"),
        ("records", _num(store.records)),
        ("bytes", _num(store.bytes)),
        ("last run", store.last_run or ""),
        ("last changed in run", store.last_changed_run or ""),
    ]
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    return f'<dl class="facts">{body}</dl>'


def _schema(values: Sequence[str]) -> str:
    summary = infer(json.loads(v) for v in values).as_dict()
    rows = [
        f'<tr><td class="code">{_e(f["field"])}</td>'
        f"<td>{_e(', '.join(f'{t} ({n:,})' for t, n in f['types'].items()))}</td>"
        f'<td class="num">{f["frequency"]:.0%}</td></tr>'
        for f in summary["fields"]
    ]
    kinds = ", ".join(f"{t} ({n:,})" for t, n in summary["value_types"].items()) or "none"
    intro = (
        f'<p class="meta">Inferred from {summary["sampled"]:,} records; value types: '
        f"{_e(kinds)}.</p>"
    )
    if not rows:
        return intro
    return intro + _table(["field", "types", "in records"], rows, attrs=' class="schema"')


def _diff_rows(records: Sequence[RecordDiff]) -> list[str]:
    rows = []
    for record in records:
        if record.op == "changed" and record.fields is not None:
            detail = "\n".join(
                f"{f.path or '(value)'}: {f.old if f.old is not None else '(absent)'} → "
                f"{f.new if f.new is not None else '(absent)'}"
                for f in record.fields
            )
        elif record.op == "removed":
            detail = (
                pretty_text(record.old_value)
                if record.old_value is not None
                else f"(old value not kept; hash {record.old_hash})"
            )
        elif record.op == "added" and record.new_value is not None:
            detail = pretty_text(record.new_value)
        elif record.new_value is not None:
            detail = f"(value before not kept) → {pretty_text(record.new_value)}"
        else:
            detail = f"(values not kept; hash {record.old_hash} → {record.new_hash})"
        rows.append(
            f'<tr><td class="op-{record.op}">{record.op}</td>'
            f'<td class="code key">{_e(pretty_text(record.key))}</td>'
            f'<td class="value">{_e(_cut(detail))}</td></tr>'
        )
    return rows


def _latest_diff(diff: StoreDiff | None, run_id: str | None) -> str:
    if diff is None or run_id is None:
        return '<p class="note">No changes recorded.</p>'
    counts = ", ".join(f"{n:,} {op}" for op, n in diff.counts().items())
    intro = f'<p class="meta">Run <code>{_e(run_id)}</code>: {counts}.</p>'
    # Up to MAX_DIFF_ROWS of each kind, so removals still show after many additions.
    rows = _diff_rows([*diff.added, *diff.changed, *diff.removed])
    more = sum(diff.unlisted.values())
    note = f'<p class="note">{more:,} more changes not shown.</p>' if more > 0 else ""
    return intro + _table(["", "key", "change"], rows, attrs=' class="diff"') + note


def _value_text(value: str | None, value_hash: str) -> str:
    return pretty_text(value) if value is not None else f"(value not kept; hash {value_hash})"


def _records(store: Store, records: Sequence[tuple[str, str | None, str]], ids: _Ids) -> str:
    table_id, count_id = ids.next("records-"), ids.next("count-")
    rows = [
        f'<tr><td class="code key">{_e(pretty_text(key))}</td>'
        f'<td class="value">{_e(_cut(_value_text(value, hash_)))}</td></tr>'
        for key, value, hash_ in records
    ]
    shown = len(rows)
    if store.records > shown:
        note = (
            f"Showing the first {shown:,} of {store.records:,} records (in first-seen order); "
            "the live inspector (harvester inspect, or the daemon's /) searches them all."
        )
    else:
        note = f"All {shown:,} records."
    return (
        f'<p><input type="search" class="filter" placeholder="filter records (key or value text)" '
        f'aria-label="filter records" data-table="{table_id}" data-count="{count_id}"> '
        f'<span class="meta" id="{count_id}"></span></p>'
        f'<p class="note">{_e(note)}</p>'
        + _table(["key", "value"], rows, attrs=f' class="records" id="{table_id}"')
    )


def _target_section(reader: StateReader, target: str, number: int, ids: _Ids) -> str:
    runs = reader.runs(target=target, oldest_first=True)
    out = [
        f'<section class="target" id="target-{number}" data-target="{_e(target)}">',
        f"<h2>Target {_e(target)}</h2>",
        f'<p class="meta">{len(runs):,} runs; <span class="legend-records">records</span> after '
        'each run and <span class="legend-changes">changes</span> (+I, +U, -D) made by it.</p>',
        f'<figure class="chart" data-target="{_e(target)}">{chart(runs)}</figure>',
        "<h3>Runs</h3>",
        _runs_table(runs, reader.path),
    ]
    overview: list[str] = []
    sections: list[str] = []
    for store in reader.stores(target=target):
        rows = [(r.key, r.value, r.value_hash) for r in reader.records(store, limit=MAX_RECORDS)]
        latest = store.last_changed_run
        diff = reader.run_changes(latest, store, limit=MAX_DIFF_ROWS) if latest else None
        counts = diff.counts() if diff else {}
        anchor = ids.next("store-")
        overview.append(
            f'<tr><td><a href="#{anchor}">{_e(store.db)} / {_e(store.store)}</a></td>'
            f'<td class="num">{_num(store.records)}</td><td class="num">{_num(store.bytes)}</td>'
            + "".join(
                f'<td class="num">{_num(counts.get(op, 0))}</td>'
                for op in ("added", "changed", "removed")
            )
            + f'<td class="code">{_e(latest or "")}</td></tr>'
        )
        sections += [
            f'<section class="store" id="{anchor}" data-db="{_e(store.db)}" '
            f'data-store="{_e(store.store)}">',
            f"<h3>{_e(store.db)} / {_e(store.store)}</h3>",
            _facts(store),
            "<h4>Schema</h4>",
            _schema([value for _key, value, _hash in rows if value is not None]),
            "<h4>Latest changes</h4>",
            _latest_diff(diff, latest),
            "<h4>Records</h4>",
            _records(store, rows, ids),
            "</section>",
        ]
    headers = ["store", "records", "bytes", "added", "changed", "removed", "last changed in run"]
    out += [
        "<h3>Stores</h3>",
        '<p class="meta">Added, changed and removed: by the last run that changed the store.</p>',
        _table(headers, overview, attrs=' class="stores"'),
        *sections,
        "</section>",
    ]
    return "".join(out)


def render_report(state_db_path: Path | str) -> str:
    """The HTML report of the state DB at `state_db_path` (opened read-only) as one page."""
    path = Path(state_db_path)
    ids = _Ids()
    with StateReader(path) as reader:
        targets = reader.targets()
        sections = [_target_section(reader, t, i, ids) for i, t in enumerate(targets, 1)]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    nav = " ".join(f'<a href="#target-{i}">{_e(t)}</a>' for i, t in enumerate(targets, 1))
    body = (
        "<header><h1>IndexedDB harvest report</h1>"
        f'<p class="meta">Generated {generated} from {_e(path)}; '
        f"{counted(len(targets), 'target')}.</p>"
        f"<nav>{nav}</nav></header>" + ("".join(sections) or '<p class="note">No harvests yet.</p>')
    )
    style, script = _asset("report.css"), _asset("report.js")
    csp = (
        f"default-src 'none'; style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    return Template(_asset("report.html")).substitute(
        csp=csp, title="IndexedDB harvest report", style=style, script=script, body=body
    )
