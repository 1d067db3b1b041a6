"""REST API benchmark: pages of the changes feed over a state DB of N retained change rows, and
long-poll delivery after a commit.

Builds (through the real commit path, cached under the temp folder per schema version and N;
`--rebuild` makes it again) one run inserting N/2 records (~250-byte values, inspect_bench's)
and five runs each updating N/10 of them: N change rows, half of whose written values the feed
rebuilds from the next change. Then, through the real HTTP server (`harvester serve`'s), times
`GET /api/v1/changes?limit=10000` at the feed's start, middle and end (`--repeat` times each,
p50 / p95), against the floor of the same 10,000 rows read raw from SQLite and written as JSON
in this process (the ratio is the feed's cost over it). Long-poll: `--polls` times, a client
waits at the feed's end (`wait=30s`) while a 10-row run is committed; the delay from the
commit's return to the client holding the rows.
Targets: a 10,000-row page ≤ 300 ms at N = 1,000,000; long-poll delivery ≤ 100 ms.

    python bench/api_bench.py              # N = 1,000,000
    python bench/api_bench.py 100000 --repeat 3 --polls 10
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import orjson
from common import percentile
from inspect_bench import commit

from harvester.commands._inspector import inspector_handler
from harvester.daemon.http import HttpServer
from harvester.inspect.api.cursor import encode
from harvester.state import SCHEMA_VERSION, StateDB, state_db_path
from harvester.state.feed import Position

PAGE = 10_000
# Far above the runs this benchmark commits: retention never prunes the cached DB's first runs.
KEEP_RUNS = 100_000


def build(n: int, folder: Path) -> None:
    marker = folder / "built"
    if marker.exists():
        print(f"  reusing the DB of {n:,} change rows in {folder}")
        return
    for path in folder.glob("state.db*"):
        path.unlink()
    started = time.perf_counter()
    half, tenth = n // 2, n // 10
    with StateDB.open(folder, keep_runs=KEEP_RUNS) as state:
        commit(state, range(half), 0)
        for version in range(1, 6):
            first = (version - 1) * tenth % half
            commit(state, range(first, first + tenth), version)
    marker.write_text("built\n", encoding="utf-8")
    print(f"  built in {time.perf_counter() - started:.1f} s")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        return bytes(response.read())


def positions(folder: Path, n: int) -> dict[str, Position]:
    """The feed's start, a position half way, and one a page before its end."""
    conn = sqlite3.connect(state_db_path(folder))
    runs = conn.execute(
        "SELECT r.id, r.seq, count(c.rowid) FROM runs r JOIN changes c ON c.run_id = r.id "
        "GROUP BY r.id ORDER BY r.seq"
    ).fetchall()
    conn.close()

    def at(row: int) -> Position:
        for run_id, seq, count in runs:
            if row <= count:
                return Position(seq, row, run_id)
            row -= count
        raise ValueError(row)

    return {"start": Position(0), "middle": at(n // 2), "end": at(n - PAGE)}


def floor(folder: Path, start_rowid: int) -> float:
    """Seconds to read 10,000 change rows raw and write them as JSON: the floor."""
    conn = sqlite3.connect(f"file:{state_db_path(folder)}?mode=ro", uri=True)
    started = time.perf_counter()
    rows = conn.execute(
        "SELECT * FROM changes WHERE rowid >= ? ORDER BY rowid LIMIT ?", (start_rowid, PAGE)
    ).fetchall()
    orjson.dumps(rows)
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def time_pages(server: HttpServer, folder: Path, n: int, repeat: int) -> None:
    for name, position in positions(folder, n).items():
        url = f"{server.url}/api/v1/changes?limit={PAGE}&after={encode(position)}"
        times, size = [], 0
        for _ in range(repeat):
            started = time.perf_counter()
            body = get(url)
            times.append(time.perf_counter() - started)
            size = len(body)
        rows = len(orjson.loads(body)["rows"])
        base = statistics.median(floor(folder, 1 + n // 2) for _ in range(repeat))
        p50 = statistics.median(times)
        print(
            f"  {name:>6}: {rows:,} rows ({size / 1e6:.1f} MB) p50 {p50 * 1000:6.0f} ms, "
            f"p95 {percentile(times, 0.95) * 1000:6.0f} ms; raw floor {base * 1000:5.0f} ms "
            f"({p50 / base:.1f}×)"
        )


def time_polls(server: HttpServer, folder: Path, n: int, polls: int) -> None:
    delays = []
    cursor = encode(positions(folder, n)["end"])
    with StateDB.open(folder, keep_runs=KEEP_RUNS) as state:
        while True:  # to the feed's end (earlier runs of this benchmark committed more)
            page = orjson.loads(get(f"{server.url}/api/v1/changes?limit={PAGE}&after={cursor}"))
            cursor = page["next"]
            if not page["more"]:
                break
        # Values no earlier run of this benchmark wrote, so that each commit changes 10 records.
        base = int(time.time())
        for i in range(polls):
            got: list[tuple[float, bytes]] = []

            def wait(after: str = cursor, into: list[tuple[float, bytes]] = got) -> None:
                body = get(f"{server.url}/api/v1/changes?after={after}&wait=30s")
                into.append((time.perf_counter(), body))

            client = threading.Thread(target=wait)
            client.start()
            time.sleep(0.3)  # the client is waiting
            commit(state, range(i * 10, i * 10 + 10), base + i)
            committed = time.perf_counter()
            client.join(timeout=60)
            at, body = got[0]
            page = orjson.loads(body)
            assert len(page["rows"]) == 10, page
            cursor = page["next"]
            delays.append(at - committed)
    print(
        f"  long-poll, commit returned → client has the rows: p50 "
        f"{statistics.median(delays) * 1000:.0f} ms, p95 {percentile(delays, 0.95) * 1000:.0f} ms, "
        f"max {max(delays) * 1000:.0f} ms ({polls} commits)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.gettempdir()) / f"idb-api-bench-v{SCHEMA_VERSION}-{args.n}"
    folder.mkdir(exist_ok=True)
    if args.rebuild:
        (folder / "built").unlink(missing_ok=True)
    print(f"changes feed over {args.n:,} retained change rows")
    build(args.n, folder)
    server = HttpServer("127.0.0.1", 0)
    server.register_fallback(inspector_handler(state_db_path(folder)))
    server.start()
    try:
        time_pages(server, folder, args.n, args.repeat)
        time_polls(server, folder, args.n, args.polls)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
