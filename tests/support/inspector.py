"""Helpers of the live inspector's tests: state DBs committed through `StateDB` and the
inspector served from 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harvester.codec import canonical, value_hash
from harvester.commands._inspector import inspector_handler
from harvester.daemon.http import HttpServer
from harvester.state import RunStore, StateDB

ORIGIN = "http://127.0.0.1:8765"


def commit_store(
    state: StateDB,
    target: str,
    db: str,
    store: str,
    records: dict[Any, Any],
    before: dict[Any, Any],
    *,
    version: int = 1,
    indexes: list[dict[str, Any]] | None = None,
) -> str:
    """One committed run of `target` whose one store ends up holding `records` (key -> value)."""
    run_id = state.start_run(target)
    rows = []
    counts = {"+I": 0, "+U": 0, "-D": 0}
    for key, value in records.items():
        text = canonical(value)
        if key in before and canonical(before[key]) == text:
            continue
        op = "+U" if key in before else "+I"
        counts[op] += 1
        rows.append(_row(run_id, target, db, version, store, key, op, text))
    for key in before.keys() - records.keys():
        counts["-D"] += 1
        rows.append(_row(run_id, target, db, version, store, key, "-D", None))
    read = RunStore(
        db=db,
        db_version=version,
        store=store,
        key_path=None,
        auto_increment=False,
        indexes=indexes or [],
        records=len(records),
        bytes=sum(len(canonical(v)) for v in records.values()),
        rows=len(rows),
        inserted=counts["+I"],
        updated=counts["+U"],
        deleted=counts["-D"],
        unchanged=len(records) - counts["+I"] - counts["+U"],
        complete=True,
    )
    state.mark_read(run_id, origin=ORIGIN, stores=[read], rows=len(rows))
    assert state.commit_run(run_id, rows)
    return run_id


def _row(
    run_id: str, target: str, db: str, version: int, store: str, key: Any, op: str, value: Any
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "target": target,
        "origin": ORIGIN,
        "db_name": db,
        "db_version": version,
        "store": store,
        "key": canonical(key),
        "op": op,
        "value": value,
        "value_hash": None if value is None else value_hash(value),
    }


@contextmanager
def serving(state_path: Path) -> Iterator[str]:
    """The inspector over `state_path` on 127.0.0.1 (a free port), as `harvester inspect`
    serves it; yields its base URL (no trailing slash)."""
    server = HttpServer("127.0.0.1", 0)
    server.register_fallback(inspector_handler(state_path))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
