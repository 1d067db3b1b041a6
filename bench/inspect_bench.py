"""Record-search benchmark: `StateDB.search_records` over one store of N records.

Builds a state DB through the real commit path (`StateDB.commit_run`): a first run of N records
of about 250 bytes (the values of capture_bench's page) and a second run that changes 1% of
them, so that `last_changed` has two runs to order by. The DB is cached under the temp folder
(`--rebuild` makes it again). Then each query below is timed `--repeat` times (p50, p95 in ms):
pages in each order both ways, a deep page, a rare and a common text, a key, a 2-character key
prefix. Also shown: the search index's share of the DB (from `dbstat`), the build time, and a
first commit of `--commit` records with and without the index (the commit figure of
capture_bench), each measured in this run.
Targets: first page and p95 per page ≤ 300 ms at N = 1,000,000; index ≤ 20% of the DB.

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
from harvester.state import RunStore, StateDB, state_db_path

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


def sizes(folder: Path) -> None:
    conn = sqlite3.connect(state_db_path(folder))
    pages = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    conn.close()
    whole = sum(pages.values())
    index = sum(size for name, size in pages.items() if name.startswith("snapshot_search"))
    print(
        f"  state DB {whole / MB:.0f} MB, of which the search index {index / MB:.0f} MB: "
        f"{index / whole:.1%} of the DB, {index / (whole - index):.1%} of the DB without it "
        "(target ≤ 20%)"
    )


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
            p50 = statistics.median(times)
            p95 = statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]
            worst = max(worst, p95)
            total = f"{page.total:,}{'+' if page.capped else ''}"
            print(f"  {name:<28} {p50:6.1f} ms {p95:6.1f} ms   {total:>9}  ({len(page.records)})")
        print(f"  worst p95 {worst:.1f} ms (target ≤ 300 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000, help="records (1,000,000)")
    parser.add_argument("--repeat", type=int, default=20, help="runs of each query (20)")
    parser.add_argument("--commit", type=int, default=100_000, help="records of the commit test")
    parser.add_argument("--rebuild", action="store_true", help="build the cached DB again")
    args = parser.parse_args()
    print(f"inspect bench, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    folder = Path(tempfile.gettempdir()) / f"harvester-inspect-bench-{args.n}"
    if args.rebuild and (folder / "built").exists():
        (folder / "built").unlink()
    with tempfile.TemporaryDirectory() as tmp:
        commit_cost(args.commit, Path(tmp))
    build(args.n, folder)
    sizes(folder)
    time_queries(folder, args.n, max(1, args.repeat))
    print(f"peak RSS of the whole run {OwnPeak.whole_run():.0f} MB")


if __name__ == "__main__":
    main()
