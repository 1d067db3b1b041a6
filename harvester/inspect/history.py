"""Every version of one record across the kept runs: finding it and laying it out for output."""

from __future__ import annotations

import json
from typing import Any

from harvester.errors import UsageError
from harvester.inspect.diff import field_changes, field_row
from harvester.inspect.filters import key_texts
from harvester.inspect.pretty import pretty_text
from harvester.inspect.queries import StateReader
from harvester.state import KeyVersion, Store
from harvester.timefmt import iso_utc


def find_history(reader: StateReader, store: Store, argument: str) -> tuple[str, list[KeyVersion]]:
    """The key text `argument` names (as `show --key` reads it) and its versions, oldest first.

    `42` may be the number or the string: the JSON reading wins when both have history, so
    every key can be named (`'"42"'` is the string). No history at all is a `UsageError`.
    """
    candidates = key_texts(argument)[::-1]
    for key in candidates:
        versions = reader.key_history(store, key)
        if versions:
            return key, versions
    where = f"in store {store.store!r} of database {store.db!r} of target {store.target!r}"
    message = f"no history of key {argument!r} {where}: no kept committed run changed it"
    current = next(iter(reader.records(store, keys=candidates, limit=1)), None)
    if current is not None:
        # Retention dropped the runs that wrote it: the record is there, its history is not.
        message += (
            f" (the record is in the snapshot, last changed by run {current.last_changed_run}, "
            "older than the runs the state DB keeps)"
        )
    raise UsageError(message)


def _parsed(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _pretty(text: str | None) -> str | None:
    return None if text is None else pretty_text(text)


def version_dict(version: KeyVersion) -> dict[str, Any]:
    """One version as JSON-ready data: values as parsed typed JSON (lossless) and pretty text,
    and for a `+U` whose both sides are kept the changed fields (`field`, `old`, `new`)."""
    fields = None
    if version.op == "+U" and version.old_value is not None and version.new_value is not None:
        changes = field_changes(json.loads(version.old_value), json.loads(version.new_value))
        fields = [change.as_dict() for change in changes]
    committed = version.committed_at
    return {
        "run_id": version.run_id,
        "seq": version.seq,
        "started_at": iso_utc(version.started_at),
        "committed_at": None if committed is None else iso_utc(committed),
        "op": version.op,
        "old_hash": version.old_hash,
        "new_hash": version.new_hash,
        "old_value": _parsed(version.old_value),
        "new_value": _parsed(version.new_value),
        "old_text": _pretty(version.old_value),
        "new_text": _pretty(version.new_value),
        "fields": fields,
    }


def history_payload(store: Store, key: str, versions: list[KeyVersion]) -> dict[str, Any]:
    """The record's identity and its versions, oldest first: what `--format json` writes."""
    return {
        "target": store.target,
        "origin": store.origin,
        "db": store.db,
        "store": store.store,
        "key": json.loads(key),
        "key_text": pretty_text(key),
        "versions": [version_dict(v) for v in versions],
    }


def flat_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """One table/CSV row per changed field of a `+U`, one per `+I` (the whole value written)
    and `-D` (the value removed): `old_text`/`new_text` pretty, `old`/`new` the typed nodes,
    `run_text` the run id over its commit time."""
    rows: list[dict[str, Any]] = []
    for version in payload["versions"]:
        base = {name: version[name] for name in ("run_id", "committed_at", "op")}
        base["run_text"] = f"{version['run_id']}\n{version['committed_at'] or 'not committed'}"
        if version["fields"]:
            rows += [{**base, **field_row(version, f)} for f in version["fields"]]
        else:
            rows.append({**base, **_whole(version)})
    return rows


def _whole(version: dict[str, Any]) -> dict[str, Any]:
    """The whole value of each side the op has: new for +I, old for -D, both for a +U whose
    fields could not be compared (a side not kept)."""
    row: dict[str, Any] = {}
    sides = {"+I": ("new",), "-D": ("old",)}.get(version["op"], ("old", "new"))
    for side in sides:
        text = version[f"{side}_text"]
        row[f"{side}_text"] = (
            text if text is not None else f"(value not kept; hash {version[f'{side}_hash']})"
        )
        row[side] = version[f"{side}_value"]
    return row
