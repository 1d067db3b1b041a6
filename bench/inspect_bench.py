"""Inspector benchmark: `StateDB.search_records` and the live inspector's pages over one store
of N records.

Builds a state DB through the real commit path (`StateDB.commit_run`): a first run of N records
of about 250 bytes (the values of capture_bench's page) and a second run that changes 1% of
them, so that `last_changed` has two runs to order by. The DB is cached under the temp folder,
per schema version (`--rebuild` makes it again). Each query below is timed `--repeat` times
(p50, p95 in ms): pages in each order both ways, deep pages, a rare and a common text, a key, a
2-character key prefix; then each inspector page (`InspectorApp`, as a request would get it).
Also shown: the share of the DB of the indexes the inspector adds (from `dbstat`), the build
time, and a first commit of `--commit` records with and without the search index (the commit
figure of capture_bench), each measured in this run.
Targets: p95 per page ≤ 300 ms at N = 1,000,000; the inspector's indexes ≤ 20% of the DB.

    python bench/inspect_bench.py              # N = 1,000,000
    python bench/inspect_bench.py 100000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import MB, OwnPeak

from harvester.codec import value_hash
from harvester.inspect.web import InspectorApp
from harvester.state import SCHEMA_VERSION, RunStore, StateDB, state_db_path

TARGET, ORIGIN, DB, STORE = "bench", "http://bench", "bench", "records"
EPOCH = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def value(i: int, version: int = 0) -> str:
    """capture_bench's record `i` as typed JSON text (about 250 bytes)."""
    created = (EPOCH + timedelta(seconds=i)).isoformat(timespec="milliseconds")
    record = {
        "active": i % 3 == 0,
        "address": {
            "city": "Springfield",
            "street": f"{i % 200} Long Street",
            "zip": 10000 + i % 9000,
        },
        "created": {"$date": created.replace("+00:00", "Z")},
        "email": f"customer{i}@example.com",
        "id": i,
        "name": f"customer {i} of the capture benchmark",
        "note": f"lorem ipsum dolor sit amet {i}",
        "score": i * 1.25,
        "tags": ["alpha", "beta", f"tag-{i % 17}"],
        "visits": i % 1000 + version,
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _rows(run_id: str, keys: Iterator[int], version: int) -> Iterator[dict[str, Any]]:
    for i in keys:
        text = value(i, version)
        yield {
            "run_id": run_id,
            "target": TARGET,
            "origin": ORIGIN,
            "db_name": DB,
            "db_version": 1,
            "store": STORE,
            "key": str(i),
            "op": "+I" if version == 0 else "+U",
            "value": text,
            "value_hash": value_hash(text),
        }


def commit(state: StateDB, keys: range, version: int) -> float:
    """One run whose rows write `keys` at `version`; the commit's seconds."""
    run_id = state.start_run(TARGET)
    store = RunStore(
        db=DB,
        db_version=1,
        store=STORE,
        key_path="id",
        auto_increment=False,
        indexes=[],
        records=len(keys),
        bytes=0,
        rows=len(keys),
        inserted=len(keys) if version == 0 else 0,
        updated=0 if version == 0 else len(keys),
        deleted=0,
        unchanged=0,
        complete=False,  # a partial read: the keys left out are not deleted
    )
    state.mark_read(run_id, origin=ORIGIN, stores=[store], rows=len(keys))
    started = time.perf_counter()
    assert state.commit_run(run_id, _rows(run_id, iter(keys), version))
    return time.perf_counter() - started


def drop_index(folder: Path) -> None:
    """Make the DB of `folder` one without the search index (for the commit comparison)."""
    conn = sqlite3.connect(state_db_path(folder))
    for trigger in ("insert", "update", "delete"):
        conn.execute(f"DROP TRIGGER snapshot_search_{trigger}")
    conn.execute("DROP TABLE snapshot_search")
    conn.close()


def commit_cost(n: int, tmp: Path) -> None:
    seconds = {}
    for name, indexed in (("without index", False), ("with index", True)):
        folder = tmp / f"commit-{name.replace(' ', '-')}"
        StateDB.open(folder).close()
        if not indexed:
            drop_index(folder)
        with StateDB.open(folder) as state:
            seconds[name] = commit(state, range(n), 0)
        print(f"  first commit of {n:,} records {name}: {seconds[name]:6.2f} s")
        for path in folder.glob("state.db*"):
            path.unlink()
    ratio = seconds["with index"] / seconds["without index"]
    print(f"  the search index makes that commit {ratio:.2f}× as long")


def build(n: int, folder: Path) -> None:
    marker = folder / "built"
    if marker.exists():
        print(f"  reusing the DB of {n:,} records in {folder} ({marker.read_text().strip()})")
        return
    for path in folder.glob("state.db*"):
        path.unlink()
    with OwnPeak() as peak, StateDB.open(folder, keep_runs=5) as state:
        first = commit(state, range(n), 0)
        second = commit(state, range(0, n, 100), 1)
    note = f"built in {first:.1f} s + {second:.1f} s for the 1% changed, peak RSS {peak.mb:.0f} MB"
    marker.write_text(note + "\n", encoding="utf-8")
    print(f"  {note}")


# The indexes the inspector adds: the search index's tables, the changed records' order, and a
# key's history.
INSPECTOR_INDEXES = ("snapshot_search", "snapshot_changed", "changes_by_key")


def sizes(folder: Path) -> None:
    conn = sqlite3.connect(state_db_path(folder))
    pages = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    conn.close()
    whole = sum(pages.values())
    print(f"  state DB {whole / MB:.0f} MB; the inspector's indexes (target ≤ 20% of it):")
    total = 0
    for index in INSPECTOR_INDEXES:
        size = sum(size for name, size in pages.items() if name.startswith(index))
        total += size
        print(f"    {index:<18} {size / MB:6.1f} MB  {size / whole:6.2%}")
    print(f"    {'together':<18} {total / MB:6.1f} MB  {total / whole:6.2%}")


def queries(n: int) -> list[tuple[str, dict[str, Any]]]:
    rare = n * 3 // 7
    return [
        ("first page", {}),
        ("first page, descending", {"descending": True}),
        ("deep page (offset n/2)", {"offset": n // 2}),
        ("order key", {"order": "key"}),
        ("order key, descending", {"order": "key", "descending": True}),
        ("order key, deep page", {"order": "key", "offset": n // 2}),
        ("order last_changed", {"order": "last_changed"}),
        ("order last_changed, desc", {"order": "last_changed", "descending": True}),
        ("order last_changed, deep", {"order": "last_changed", "offset": n // 2}),
        ("rare text (an email)", {"text": f"Customer{rare}@example"}),
        ("rare text, order key", {"text": f"customer{rare}@", "order": "key"}),
        ("common text", {"text": "springfield"}),
        ("common text, order key", {"text": "Springfield", "order": "key"}),
        ("common text, last_changed", {"text": "lorem", "order": "last_changed"}),
        ("common text, page 100", {"text": "lorem", "offset": 5000}),
        ("common, last_changed, p100", {"text": "lorem", "order": "last_changed", "offset": 5000}),
        ("key (a number)", {"text": str(rare)}),
        ("2-char key prefix", {"text": "42"}),
        ("no match", {"text": "zzzqqq"}),
    ]


def time_queries(folder: Path, n: int, repeat: int) -> None:
    with StateDB.open(folder, readonly=True) as state:
        (store,) = state.list_stores()
        print(f"  {'query':<28} {'p50':>8} {'p95':>8}   total")
        worst = 0.0
        for name, args in queries(n):
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                page = state.search_records(store, **args)
                times.append((time.perf_counter() - started) * 1000)
            p50, p95 = _p(times, 50), _p(times, 95)
            worst = max(worst, p95)
            total = f"{page.total:,}{'+' if page.capped else ''}"
            print(f"  {name:<28} {p50:6.1f} ms {p95:6.1f} ms   {total:>9}  ({len(page.records)})")
        print(f"  worst p95 {worst:.1f} ms (target ≤ 300 ms)")


def pages(state: StateDB, n: int) -> list[tuple[str, str]]:
    """The inspector's pages over the bench DB: name and path (with its query)."""
    first, second = sorted(run.id for run in state.list_runs(target=TARGET))
    where = f"/target/{TARGET}"
    store = f"{where}/store/{DB}/{STORE}"
    last = -(-n // 50)
    return [
        ("home (targets, chart)", "/"),
        ("target (runs, stores, schema)", where),
        ("run page", f"{where}/run/{second}"),
        ("diff of the two runs", f"{where}/diff?a={first}&b={second}"),
        ("store, first page", store),
        ("store, last page", f"{store}?page={last}"),
        ("store, by key, descending", f"{store}?order=key&desc=1"),
        ("store, last changed first", f"{store}?order=last_changed&desc=1"),
        ("store, search a text", f"{store}?q=Springfield"),
        ("store, search an email", f"{store}?q=customer{n * 3 // 7}%40example"),
        ("store, search, last changed", f"{store}?q=lorem&order=last_changed&desc=1"),
        ("record page with history", f"{store}/record?key={n // 300 * 100}"),
    ]


def time_pages(folder: Path, n: int, repeat: int) -> None:
    with StateDB.open(folder, readonly=True) as state:
        paths = pages(state, n)
    app = InspectorApp(folder)
    print(f"  {'inspector page':<30} {'p50':>8} {'p95':>8}     size")
    times: list[float] = []
    for name, path in paths:
        took = []
        for _ in range(repeat):
            started = time.perf_counter()
            reply = app.get(path)
            took.append((time.perf_counter() - started) * 1000)
        if reply.status != 200:
            raise SystemExit(f"{path} answered {reply.status}: {reply.body[:300]!r}")
        times += took
        print(f"  {name:<30} {_p(took, 50):6.1f} ms {_p(took, 95):6.1f} ms {len(reply.body):>8,} B")
    print(f"  p95 over every page {_p(times, 95):.1f} ms, worst {max(times):.1f} ms (≤ 300 ms)")


def _p(times: list[float], percent: int) -> float:
    """The `percent`th percentile of `times` (the one time if there is one)."""
    if len(times) == 1:
        return times[0]
    return statistics.quantiles(times, n=100, method="inclusive")[percent - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000, help="records (1,000,000)")
    parser.add_argument("--repeat", type=int, default=20, help="runs of each query (20)")
    parser.add_argument("--commit", type=int, default=100_000, help="records of the commit test")
    parser.add_argument("--rebuild", action="store_true", help="build the cached DB again")
    args = parser.parse_args()
    print(f"inspect bench, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    folder = Path(tempfile.gettempdir()) / f"harvester-inspect-bench-{args.n}-v{SCHEMA_VERSION}"
    if args.rebuild and (folder / "built").exists():
        (folder / "built").unlink()
    with tempfile.TemporaryDirectory() as tmp:
        commit_cost(args.commit, Path(tmp))
    build(args.n, folder)
    sizes(folder)
    time_queries(folder, args.n, max(1, args.repeat))
    time_pages(folder, args.n, max(1, args.repeat))
    print(f"peak RSS of the whole run {OwnPeak.whole_run():.0f} MB")


if __name__ == "__main__":
    main()
