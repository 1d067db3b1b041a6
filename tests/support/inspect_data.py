"""A state DB written through `StateDB`: two runs of target `shop`, with values that try XSS.

Shared by the inspection command tests and the HTML report tests.
"""

from __future__ import annotations

from typing import Any

from harvester.codec import canonical, value_hash
from harvester.state import RunStore, StateDB

TARGET = "shop"
ORIGIN = "http://127.0.0.1:8765"
XSS = ["<img src=x onerror=window.pwned=1>", "</script><script>window.pwned=2</script>"]


def user(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": n, "name": f"user {n}", "tags": ["a"], **extra}


def commit_records(
    state: StateDB, records: dict[str, dict[Any, Any]], before: dict[str, dict[Any, Any]]
) -> str:
    """One run of TARGET whose stores end up holding `records` (store -> key -> value)."""
    run_id = state.start_run(TARGET)
    rows, stores = [], []
    for store, now in records.items():
        old = before.get(store, {})
        counts = {"+I": 0, "+U": 0, "-D": 0}
        for key, value in now.items():
            text = canonical(value)
            if key not in old:
                op = "+I"
            elif canonical(old[key]) != text:
                op = "+U"
            else:
                continue
            counts[op] += 1
            rows.append(spool_row(run_id, store, key, op, text))
        for key in old.keys() - now.keys():
            counts["-D"] += 1
            rows.append(spool_row(run_id, store, key, "-D", None))
        stores.append(
            RunStore(
                db="shopdb",
                db_version=3,
                store=store,
                key_path="id",
                auto_increment=False,
                indexes=[
                    {"name": "by_name", "key_path": "name", "unique": False, "multi_entry": False}
                ],
                records=len(now),
                bytes=sum(len(canonical(v)) for v in now.values()),
                rows=len(rows),
                inserted=counts["+I"],
                updated=counts["+U"],
                deleted=counts["-D"],
                unchanged=len(now) - counts["+I"] - counts["+U"],
                complete=True,
            )
        )
    state.mark_read(run_id, origin=ORIGIN, stores=stores, rows=len(rows))
    assert state.commit_run(run_id, rows)
    return run_id


def spool_row(run_id: str, store: str, key: Any, op: str, value: str | None) -> dict[str, Any]:
    """One changelog row of TARGET's `shopdb` database, as a spool holds it."""
    return {
        "run_id": run_id,
        "target": TARGET,
        "origin": ORIGIN,
        "db_name": "shopdb",
        "db_version": 3,
        "store": store,
        "key": canonical(key),
        "op": op,
        "value": value,
        "value_hash": None if value is None else value_hash(value),
    }


FIRST = {
    "users": {n: user(n) for n in range(1, 6)},
    "orders": {"o-1": {"id": "o-1", "note": XSS[0]}, "o-2": {"id": "o-2", "note": XSS[1]}},
}
SECOND = {
    "users": {
        **{n: user(n) for n in (1, 2)},
        3: user(3, name="user three", email="three@example.com"),
        5: {"id": 5, "name": "user 5", "tags": ["a", "b"]},
        6: user(6),
    },
    "orders": FIRST["orders"],
}
