"""The inspector's pages of one store: its records (searched, sorted, paged), one record with
its history, and the bytes of a Blob or File a record holds."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from harvester.inspect.diff import field_changes
from harvester.inspect.pretty import pretty, pretty_text
from harvester.inspect.queries import StateReader
from harvester.inspect.schema import infer, top_level_fields
from harvester.inspect.schema_history import change_text, indexes_text
from harvester.inspect.web.html import (
    MAX_VALUE,
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
from harvester.inspect.web.pages import run_link
from harvester.inspect.web.request import BadRequest, NotFound, Params, Reply
from harvester.state import SnapshotRecord, Store

PER_PAGE = 50
SAMPLED = 1000  # records the field columns and the schema are inferred from
MAX_COLUMNS = 12  # field columns of the records table
MAX_QUERY = 500  # characters of a search
ORDERS = ("first_seen", "key", "last_changed")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _store_url(store: Store, *tail: str, **query: str | int | None) -> str:
    return url("target", store.target, "store", store.db, store.store, *tail, **query)


def _crumbs(store: Store) -> list[tuple[str, str]]:
    return [
        (url("target", store.target), store.target),
        (_store_url(store), f"{store.db} / {store.store}"),
    ]


def _store_facts(store: Store) -> str:
    indexes = indexes_text(store.indexes)
    return facts(
        [
            ("origin", store.origin),
            ("database", f"{store.db} (version {store.db_version})"),
            ("key path", json.dumps(store.key_path)),
            ("auto-increment", "yes" if store.auto_increment else "no"),
            ("indexes", indexes or "none"),
            ("records", num(store.records)),
            ("bytes", num(store.bytes)),
            ("last run", store.last_run),
            ("last changed in run", store.last_changed_run or ""),
        ]
    )


def _sort_header(store: Store, label: str, order: str, q: str, current: str, desc: bool) -> str:
    """A column header whose link sorts by `order` (again: the other way round)."""
    active = order == current
    flip = active and not desc
    href = _store_url(store, q=q or None, order=order, desc=1 if flip else None)
    sort = ""
    mark = ""
    if active:
        sort = f' aria-sort="{"descending" if desc else "ascending"}"'
        mark = " ▼" if desc else " ▲"
    return f'<th scope="col"{sort}><a href="{e(href)}">{e(label)}{mark}</a></th>'


def _cell(value: Any, name: str | None) -> str:
    if name is None:
        return td(e(cut(pretty(value))), "value")
    fields = top_level_fields(value)
    if fields is None or name not in fields:
        return td("", "value")
    return td(e(cut(pretty(fields[name]))), "value")


def store_page(reader: StateReader, target: str, db: str, name: str, params: Params) -> str:
    store = reader.store(target, db, name)
    q = params.text("q")
    if len(q) > MAX_QUERY:
        raise BadRequest(f"parameter 'q' is longer than {MAX_QUERY} characters")
    order = params.choice("order", ORDERS, "first_seen")
    desc = params.flag("desc")
    page = params.number("page", 1)
    found = reader.search_records(
        store,
        text=q,
        order=order,
        descending=desc,
        offset=(page - 1) * PER_PAGE,
        limit=PER_PAGE,
    )
    pages = max(1, -(-found.total // PER_PAGE))
    if page > pages:
        raise NotFound(f"page {page:,} of this search: there are {pages:,}")
    summary = infer(reader.parsed_values(store, limit=SAMPLED))
    inferred = summary.as_dict()
    columns: list[str | None] = [f["field"] for f in inferred["fields"][:MAX_COLUMNS]]
    if not columns or set(inferred["value_types"]) - {"object"}:
        columns.append(None)  # some values are not objects: a column of the whole value
    headers = [
        _sort_header(store, "key", "key", q, order, desc),
        *[f'<th scope="col">{e(c) if c is not None else "(value)"}</th>' for c in columns],
        _sort_header(store, "first seen", "first_seen", q, order, desc),
        _sort_header(store, "last changed in run", "last_changed", q, order, desc),
    ]
    rows = []
    for record in found.records:
        value = None if record.value is None else json.loads(record.value)
        rows.append(
            [
                td(
                    link(_store_url(store, "record", key=record.key), cut(pretty_text(record.key))),
                    "code key",
                ),
                *[_cell(value, c) for c in columns],
                td(run_link(target, record.first_seen_run), "code"),
                td(run_link(target, record.last_changed_run), "code"),
            ]
        )
    total = f"{found.total:,}" + ("+" if found.capped else "")
    matched = f"{total} of {store.records:,} records match {q!r}" if q else f"{total} records"
    start = (page - 1) * PER_PAGE
    shown = f"; showing {start + 1:,}–{start + len(rows):,}" if rows else ""
    search = (
        f'<form class="inline" role="search" method="get" action="{e(_store_url(store))}">'
        '<div class="field"><label for="q">Search all records (key or value text)</label>'
        f'<input type="search" id="q" name="q" value="{e(q)}" maxlength="{MAX_QUERY}"></div>'
        f'<input type="hidden" name="order" value="{e(order)}">'
        + ('<input type="hidden" name="desc" value="1">' if desc else "")
        + '<button type="submit">Search</button></form>'
    )
    field_rows = [
        [
            td(e(f["field"]), "code"),
            ", ".join(f"{t} ({n:,})" for t, n in f["types"].items()),
            td(f"{f['frequency']:.0%}", "num"),
        ]
        for f in inferred["fields"]
    ]
    kinds = ", ".join(f"{t} ({n:,})" for t, n in inferred["value_types"].items()) or "none"
    history = [c for c in reader.schema_history(target) if c.db == db and c.store in (None, name)]
    history_html = (
        table(
            ["committed", "run", "change"],
            [[when(c.at), td(run_link(target, c.run_id), "code"), change_text(c)] for c in history],
            cls="schema-history",
        )
        if history
        else '<p class="note">No schema changes recorded.</p>'
    )

    def href(n: int) -> str:
        return _store_url(store, q=q or None, order=order, desc=1 if desc else None, page=n)

    body = (
        _store_facts(store)
        + '<h2 id="records">Records</h2>'
        + search
        + f'<p class="meta" id="matches">{e(matched + shown)}.</p>'
        + table(headers, rows, cls="records")
        + pager(page, pages, href)
        + '<h2 id="schema">Schema</h2>'
        + f'<p class="meta">Inferred from {inferred["sampled"]:,} records; value types: '
        f"{e(kinds)}.</p>"
        + (table(["field", "types", "in records"], field_rows, cls="schema") if field_rows else "")
        + '<h3 id="schema-history">Schema history</h3>'
        + history_html
    )
    return frame(f"Store {db} / {name} of {target}", body, crumbs=_crumbs(store)[:1])


def _key(params: Params) -> str:
    key = params.required("key")
    try:
        json.loads(key)
    except ValueError:
        raise BadRequest(f"parameter 'key' is not typed JSON: {key!r}") from None
    return key


def _record(reader: StateReader, store: Store, key: str) -> SnapshotRecord | None:
    return next(iter(reader.records(store, keys=[key], limit=1)), None)


def blobs(node: Any) -> Iterator[dict[str, Any]]:
    """The `$blob` payloads (Blobs and Files) of a typed-JSON value, depth first."""
    if isinstance(node, dict):
        if len(node) == 1 and "$blob" in node and isinstance(node["$blob"], dict):
            yield node["$blob"]
            return
        for child in node.values():
            yield from blobs(child)
    elif isinstance(node, list):
        for child in node:
            yield from blobs(child)


def _blobs_html(store: Store, key: str, value: Any) -> str:
    items = []
    for n, blob in enumerate(blobs(value)):
        kind = "File " + repr(str(blob["name"])) if "name" in blob else "Blob"
        size = blob.get("size")
        text = f"{kind}, type {str(blob.get('type', '')) or '(none)'!r}, " + (
            f"{size:,} B" if isinstance(size, int) else "size unknown"
        )
        if "bytes" in blob and not blob.get("truncated"):
            action = link(_store_url(store, "blob", key=key, n=n), "download")
        else:
            action = e(f"bytes not kept (sha256 {blob.get('sha256', '?')})")
        items.append(f"<li>{e(text)} — {action}</li>")
    if not items:
        return ""
    return '<h2 id="blobs">Blobs and files</h2><ul class="blobs">' + "".join(items) + "</ul>"


def _version_html(version: Any) -> str:
    if version.op == "+U" and version.old_value is not None and version.new_value is not None:
        changes = field_changes(json.loads(version.old_value), json.loads(version.new_value))
        items = "".join(
            f'<li><span class="code">{e(c.path or "(value)")}</span>: '
            f'<span class="old">{e(cut(c.old) if c.old is not None else "(absent)")}</span> → '
            f'<span class="new">{e(cut(c.new) if c.new is not None else "(absent)")}</span></li>'
            for c in changes
        )
        return f'<ul class="fields">{items}</ul>'
    text = version.new_value if version.op != "-D" else version.old_value
    if text is None:
        return e(f"(value not kept; hash {version.new_hash or version.old_hash})")
    return e(cut(pretty_text(text)))


def record_page(reader: StateReader, target: str, db: str, name: str, params: Params) -> str:
    store = reader.store(target, db, name)
    key = _key(params)
    record = _record(reader, store, key)
    versions = reader.key_history(store, key)
    if record is None and not versions:
        raise NotFound(f"no record with key {pretty_text(key)} in store {db} / {name}")
    if record is None:
        current = '<p class="note">Not in the snapshot: the record was deleted.</p>'
    elif record.value is None:
        current = f'<p class="note">Value not kept (hash {e(record.value_hash)}).</p>'
    else:
        value = json.loads(record.value)
        current = (
            facts(
                [
                    ("first seen in run", record.first_seen_run or ""),
                    ("last changed in run", record.last_changed_run or ""),
                    ("value hash", record.value_hash),
                ]
            )
            + f'<pre class="value">{e(cut(pretty(value, indent=2), MAX_VALUE))}</pre>'
            + "<details><summary>Typed JSON, as stored</summary>"
            f'<pre class="typed">{e(cut(record.value, MAX_VALUE))}</pre></details>'
            + _blobs_html(store, key, value)
        )
    rows = [
        [
            td(run_link(target, v.run_id), "code"),
            when(v.committed_at),
            td(e(v.op), f"op-{e(v.op)}"),
            td(_version_html(v), "value"),
        ]
        for v in versions
    ]
    body = (
        '<h2 id="value">Value</h2>'
        + current
        + '<h2 id="history">History</h2>'
        + (
            table(["run", "committed", "op", "change"], rows, cls="history")
            if rows
            else '<p class="note">No kept run changed this record.</p>'
        )
    )
    title = f"Record {cut(pretty_text(key), 80)} of {db} / {name}"
    return frame(title, body, crumbs=_crumbs(store))


def blob_download(reader: StateReader, target: str, db: str, name: str, params: Params) -> Reply:
    """The bytes of the n-th Blob or File of a record, as an attachment of a neutral type."""
    store = reader.store(target, db, name)
    key = _key(params)
    n = params.number("n", 0, low=0)
    record = _record(reader, store, key)
    if record is None or record.value is None:
        raise NotFound(f"no record with key {pretty_text(key)} in store {db} / {name}")
    found = list(blobs(json.loads(record.value)))
    if n >= len(found):
        raise NotFound(f"the record has {len(found)} blobs, none numbered {n}")
    blob = found[n]
    if "bytes" not in blob or blob.get("truncated"):
        raise NotFound("the bytes of this blob were not kept (it was larger than the limit)")
    try:
        data = base64.b64decode(blob["bytes"] or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise NotFound("the bytes of this blob are not valid base64") from None
    wanted = str(blob.get("name") or f"blob-{n}.bin")
    plain = _SAFE_NAME.sub("_", wanted).strip("._") or f"blob-{n}.bin"
    return Reply(
        200,
        data,
        {
            # Never the harvested type: a text/html blob must not render in our origin.
            "Content-Type": "application/octet-stream",
            "Content-Disposition": (
                f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(wanted, safe='')}"
            ),
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )
