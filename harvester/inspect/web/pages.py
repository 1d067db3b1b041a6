"""The inspector's pages of targets and runs: `/`, a target, a run, the diff of two runs."""

from __future__ import annotations

import json
from collections.abc import Sequence

from harvester.inspect.diff import FieldChange, RecordDiff, StoreDiff
from harvester.inspect.pretty import pretty_text
from harvester.inspect.queries import StateReader, run_dict
from harvester.inspect.render import counted
from harvester.inspect.schema_history import change_text, current_rows
from harvester.inspect.web.chart import charts
from harvester.inspect.web.html import (
    cut,
    e,
    facts,
    frame,
    link,
    num,
    pager,
    table,
    td,
    url,
    when,
)
from harvester.inspect.web.request import NotFound, Params
from harvester.state import Run, SchemaChange

RUNS_PER_PAGE = 50
MAX_PICKED = 200  # runs offered by a run picker
MAX_DIFF_ROWS = 500  # records listed per store of a diff or a run's changes


def run_link(target: str, run_id: str | None) -> str:
    return "" if run_id is None else link(url("target", target, "run", run_id), run_id)


def _run_options(runs: Sequence[Run], selected: str | None = None) -> str:
    return "".join(
        f'<option value="{e(r.id)}"{" selected" if r.id == selected else ""}>'
        f"{e(r.id)} ({e(r.status)}, {e(when(r.started_at))})</option>"
        for r in runs[:MAX_PICKED]
    )


def run_picker(target: str, runs: Sequence[Run], number: int) -> str:
    """A form choosing one run of `target` (newest first) to open; works without script."""
    if not runs:
        return '<p class="note">No runs yet.</p>'
    field = f"run-{number}"
    return (
        f'<form class="inline" method="get" action="{e(url("target", target, "run"))}">'
        f'<div class="field"><label for="{field}">Run of {e(target)}</label>'
        f'<select id="{field}" name="id">{_run_options(runs)}</select></div>'
        '<button type="submit">Show run</button></form>'
    )


def home(reader: StateReader) -> str:
    targets = reader.targets()
    sections = []
    for number, target in enumerate(targets, 1):
        runs = reader.runs(target=target, oldest_first=True)
        last = runs[-1] if runs else None
        stores = reader.stores(target=target)
        summary = (
            f"{len(runs):,} runs kept, {len(stores):,} stores, "
            f"{sum(s.records for s in stores):,} records"
            + (f"; last run {last.status} at {when(last.started_at)}" if last else "")
        )
        sections.append(
            f'<section class="target" data-target="{e(target)}">'
            f"<h2>{link(url('target', target), target)}</h2>"
            f'<p class="meta">{e(summary)}</p>'
            + charts(target, runs)
            + run_picker(target, runs[::-1], number)
            + "</section>"
        )
    intro = f'<p class="meta">State DB {e(reader.path)}; {counted(len(targets), "target")}.</p>'
    body = intro + ("".join(sections) or '<p class="note">No harvests yet.</p>')
    return frame("IndexedDB inspector", body)


def _runs_table(target: str, runs: Sequence[Run]) -> str:
    rows = []
    for run in runs:
        duration = run_dict(run)["duration_s"]
        rows.append(
            [
                td(run_link(target, run.id), "code"),
                td(e(run.status), f"status-{e(run.status)}"),
                when(run.started_at),
                td(e(run.trigger or "")),
                td("" if duration is None else f"{duration:.2f}", "num"),
                td(num(run.records), "num"),
                td(num(run.inserted), "num"),
                td(num(run.updated), "num"),
                td(num(run.deleted), "num"),
                td(e(cut(run.error or "")), "value"),
            ]
        )
    headers = ["run", "status", "started", "trigger", "seconds", "records", "+I", "+U", "-D"]
    headers.append("error")
    return table(headers, rows, cls="runs")


def _schema_history_rows(target: str, changes: Sequence[SchemaChange]) -> list[list[str]]:
    return [
        [when(c.at), td(run_link(target, c.run_id), "code"), c.db, change_text(c)] for c in changes
    ]


def target_page(reader: StateReader, target: str, params: Params) -> str:
    runs = reader.runs(target=target)  # newest first
    page = params.number("page", 1)
    pages = max(1, -(-len(runs) // RUNS_PER_PAGE))
    if page > pages:
        raise NotFound(f"page {page:,} of the runs of target {target!r}: there are {pages:,}")
    shown = runs[(page - 1) * RUNS_PER_PAGE : page * RUNS_PER_PAGE]
    committed = [r for r in runs if r.status == "committed"]
    stores = reader.stores(target=target)
    store_rows = [
        [
            td(link(url("target", target, "store", s.db, s.store), f"{s.db} / {s.store}")),
            td(num(s.records), "num"),
            td(num(s.bytes), "num"),
            td(e(s.db_version), "num"),
            td(run_link(target, s.last_changed_run), "code"),
        ]
        for s in stores
    ]
    dbs, schema_stores = reader.schema(target)
    schema_rows = [
        [
            row["db_text"],
            row["store"] or "(no stores)",
            row.get("key_text", ""),
            row.get("indexes_text", "") or "none",
            td(run_link(target, row["first_run"]), "code"),
            td(run_link(target, row["last_run"]), "code"),
        ]
        for row in current_rows(dbs, schema_stores)
    ]
    history = reader.schema_history(target)
    body = (
        charts(target, runs[::-1])
        + f'<h2 id="runs">Runs</h2><p class="meta">{len(runs):,} runs kept, newest first.</p>'
        + _runs_table(target, shown)
        + pager(page, pages, lambda n: url("target", target, page=n) + "#runs")
        + '<h2 id="stores">Stores</h2>'
        + table(["store", "records", "bytes", "db version", "last changed in run"], store_rows)
        + '<h2 id="compare">Compare two runs</h2>'
        + _diff_form(target, committed)
        + '<h2 id="schema">Schema</h2>'
        + table(
            ["database (version)", "store", "key path", "indexes", "first run", "last run"],
            schema_rows,
            cls="schema",
        )
        + '<h3 id="schema-history">Schema history</h3>'
        + (
            table(
                ["committed", "run", "database", "change"],
                _schema_history_rows(target, history),
                cls="schema-history",
            )
            if history
            else '<p class="note">No schema changes recorded.</p>'
        )
    )
    return frame(f"Target {target}", body, crumbs=[(url("target", target), target)])


def _diff_form(
    target: str, committed: Sequence[Run], a: str | None = None, b: str | None = None
) -> str:
    if len(committed) < 2:
        return '<p class="note">Two committed runs are needed to compare.</p>'
    a = a or committed[1].id
    b = b or committed[0].id
    return (
        f'<form class="inline" method="get" action="{e(url("target", target, "diff"))}">'
        '<div class="field"><label for="diff-a">Older run (A)</label><select id="diff-a" '
        f'name="a">{_run_options(committed, a)}</select></div>'
        '<div class="field"><label for="diff-b">Newer run (B)</label><select id="diff-b" '
        f'name="b">{_run_options(committed, b)}</select></div>'
        '<button type="submit">Compare</button></form>'
    )


def _fields_html(fields: Sequence[FieldChange]) -> str:
    items = "".join(
        f'<li><span class="code">{e(f.path or "(value)")}</span>: '
        f'<span class="old">{e(cut(f.old) if f.old is not None else "(absent)")}</span> → '
        f'<span class="new">{e(cut(f.new) if f.new is not None else "(absent)")}</span></li>'
        for f in fields
    )
    return f'<ul class="fields">{items}</ul>'


def change_html(record: RecordDiff) -> str:
    """What changed in one record: fields old → new, or the value added or removed."""
    if record.op == "changed" and record.fields is not None:
        return _fields_html(record.fields)
    if record.op == "removed":
        if record.old_value is not None:
            return e(cut(pretty_text(record.old_value)))
        return e(f"(old value not kept; hash {record.old_hash})")
    if record.new_value is not None:
        prefix = "" if record.op == "added" else "(value before not kept) → "
        return e(prefix + cut(pretty_text(record.new_value)))
    return e(f"(values not kept; hash {record.old_hash} → {record.new_hash})")


def store_diff_html(target: str, diff: StoreDiff) -> str:
    counts = ", ".join(f"{n:,} {op}" for op, n in diff.counts().items())
    records = [*diff.added, *diff.changed, *diff.removed]
    rows = [
        [
            td(e(r.op), f"op-{r.op}"),
            td(
                link(
                    url("target", target, "store", diff.db, diff.store, "record", key=r.key),
                    cut(pretty_text(r.key)),
                ),
                "code",
            ),
            td(change_html(r), "value"),
        ]
        for r in records[:MAX_DIFF_ROWS]
    ]
    more = len(records) - len(rows) + sum(diff.unlisted.values())
    note = f'<p class="note">{more:,} more changed records not listed.</p>' if more > 0 else ""
    title = link(url("target", target, "store", diff.db, diff.store), f"{diff.db} / {diff.store}")
    return (
        f'<section class="store-diff" data-db="{e(diff.db)}" data-store="{e(diff.store)}">'
        f'<h3>{title}</h3><p class="meta">{e(counts)}</p>'
        + table(["", "key", "change"], rows, cls="diff")
        + note
        + "</section>"
    )


def _run_of(reader: StateReader, target: str, run_id: str) -> Run:
    run = reader.run(run_id)
    if run.target != target:
        raise NotFound(f"run {run_id!r} is of target {run.target!r}, not {target!r}")
    return run


def diff_page(reader: StateReader, target: str, params: Params) -> str:
    reader.check_target(target)
    run_a = _run_of(reader, target, params.required("a"))
    run_b = _run_of(reader, target, params.required("b"))
    schema = reader.schema_diff(run_a, run_b)
    diffs = reader.diff_runs(run_a, run_b, limit=MAX_DIFF_ROWS)
    committed = reader.runs(target=target, status="committed")
    schema_html = (
        table(
            ["run", "database", "change"],
            [[td(run_link(target, c.run_id), "code"), c.db, change_text(c)] for c in schema],
            cls="schema-diff",
        )
        if schema
        else '<p class="note">No schema changes.</p>'
    )
    body = (
        _diff_form(target, committed, run_a.id, run_b.id)
        + f'<p class="meta">What the runs after {run_link(target, run_a.id)} up to and including '
        f"{run_link(target, run_b.id)} changed, net per record.</p>"
        + '<h2 id="schema">Schema changes</h2>'
        + schema_html
        + '<h2 id="records">Records</h2>'
        + (
            "".join(store_diff_html(target, d) for d in diffs)
            or '<p class="note">No records changed.</p>'
        )
    )
    title = f"Diff of {target}: {run_a.id} → {run_b.id}"
    return frame(title, body, crumbs=[(url("target", target), target)])


def run_page(reader: StateReader, target: str, run_id: str) -> str:
    reader.check_target(target)
    run = _run_of(reader, target, run_id)
    data = run_dict(run)
    items = [
        (
            name,
            ""
            if data[name] is None
            else json.dumps(data[name])
            if isinstance(data[name], (list, dict))
            else str(data[name]),
        )
        for name in (
            "status",
            "full",
            "origin",
            "started_at",
            "finished_at",
            "duration_s",
            "records",
            "bytes",
            "inserted",
            "updated",
            "deleted",
            "unchanged",
            "incomplete_stores",
            "error",
            "problems",
        )
    ]
    sections = []
    if run.status == "committed":
        for store in reader.stores(target=target):
            diff = reader.run_changes(run.id, store, limit=MAX_DIFF_ROWS)
            if any(diff.counts().values()):
                sections.append(store_diff_html(target, diff))
    changes = "".join(sections) or '<p class="note">This run changed no records.</p>'
    body = facts(items) + '<h2 id="changes">Changes</h2>' + changes
    return frame(f"Run {run.id}", body, crumbs=[(url("target", target), target)])
