"""Watch mode into real Flink: `harvester run` with continuous delivery and a watched ticker page.

One daemon, one Chromium, one continuous job (their starts are the expensive part), scenarios in
order: the ticker's writes (one every 500 ms, stamped with `Date.now()`, beside a store of 5,000
records that never changes) each reach Flink's default sink as `+I`, none missed, and the big
store is read once, by the first full run; writes from a dedicated worker, a shared worker and
a same-origin frame are captured; a database and then a store created at runtime are
read, and nothing else; the database deleted at runtime gives `-D` rows for the records it held
(the big store is read by none of these); SIGTERM stops with nothing pending and every run
consumed. The delays are the benchmark's (`bench/soak.py --watch`): a test asserts no timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from harvester.state import StateDB
from tests.support.daemon import DaemonProcess, WatchPageServer, daemon_runs, run_stores
from tests.support.server import free_port
from tests.support.ticker import TICKER_PAGE, SinkRows, tick_delays

pytestmark = [pytest.mark.browser, pytest.mark.flink, pytest.mark.slow]

TICKS = 16
BIG = 5_000


def _config(http_port: int, url: str) -> str:
    return f"""
[state]
dir = "state"
data_dir = "data"

[http]
port = {http_port}

[daemon]
run_on_start = true
shutdown_grace = "60s"

[[targets]]
name = "t"
url = "{url}?big={BIG}"
schedule = "1h"

[targets.ready]
function = "window.watchReady === true"

[targets.auth]
profile_dir = "profile"

[targets.watch]
enabled = true
"""


@pytest.fixture
def page() -> Iterator[WatchPageServer]:
    server = WatchPageServer(TICKER_PAGE)
    yield server
    server.close()


def _has(rows: list[tuple[float, dict[str, Any]]], db: str, store: str, key: str, op: str) -> bool:
    return any(
        row["db_name"] == db
        and row["store"] == store
        and orjson.loads(row["key"]) == key
        and row["op"] == op
        for _at, row in rows
    )


def test_watched_ticker_reaches_flink_with_every_write_and_schema_change(
    tmp_path: Path, page: WatchPageServer
) -> None:
    http_port = free_port()
    config = tmp_path / "harvester.toml"
    config.write_text(_config(http_port, page.url))
    daemon = DaemonProcess(config, http_port, sink=None)
    try:
        with SinkRows(tmp_path / "data" / "changes") as sink:
            daemon.wait_for(
                "the first full run consumed, and the page watched",
                lambda: (
                    any(r.consumed_at is not None and not r.trigger for r in daemon_runs(tmp_path))
                    and daemon.health()["targets"]["t"]["watch"]["state"] == "watching"
                ),
                timeout=240,
            )
            assert sum(1 for _at, row in sink.rows() if row["store"] == "big") == BIG

            # The ticker: every write reaches the sink, and the big store is not read again.
            page.send({"op": "tick", "every": 500, "count": TICKS})
            daemon.wait_for(
                "every tick in the sink",
                lambda: (
                    len(delays := tick_delays(page.wrote(), sink.rows())) == TICKS
                    and None not in delays.values()
                ),
                timeout=240,
            )
            read = run_stores(tmp_path)
            event_runs = [r for r in daemon_runs(tmp_path) if r.trigger == "event"]
            assert event_runs
            assert all(read[r.id] == ["app/ticks"] for r in event_runs), read

            # Writes from other contexts of the page's storage key.
            others = ("worker", "shared", "frame")
            for op in others:
                page.send({"op": op, "key": f"from-{op}"})
            daemon.wait_for(
                "the workers' and the frame's writes",
                lambda: all(_has(sink.rows(), "app", "ticks", f"from-{op}", "+I") for op in others),
                timeout=120,
            )

            # A database, then a store in it, created at runtime: both read.
            page.send({"op": "put", "db": "extra", "store": "notes", "key": "n1", "value": "a"})
            daemon.wait_for(
                "the new database's record",
                lambda: _has(sink.rows(), "extra", "notes", "n1", "+I"),
                timeout=120,
            )
            page.send({"op": "put", "db": "extra", "store": "more", "key": "m1", "value": "b"})
            daemon.wait_for(
                "the new store's record",
                lambda: _has(sink.rows(), "extra", "more", "m1", "+I"),
                timeout=120,
            )

            # The database deleted at runtime: -D for each record it held, and no other -D.
            page.send({"op": "drop", "db": "extra"})
            daemon.wait_for(
                "the deleted database's -D rows",
                lambda: (
                    _has(sink.rows(), "extra", "notes", "n1", "-D")
                    and _has(sink.rows(), "extra", "more", "m1", "-D")
                ),
                timeout=120,
            )
            deletes = [row for _at, row in sink.rows() if row["op"] == "-D"]
            assert sorted((row["store"], row["key"]) for row in deletes) == [
                ("more", '"m1"'),
                ("notes", '"n1"'),
            ]
            assert {"dropped": "extra"} in page.wrote()

            # The schema changes read the database they changed, not the big store again.
            read = run_stores(tmp_path)
            first = next(r.id for r in daemon_runs(tmp_path) if r.trigger is None)
            assert [r.id for r in daemon_runs(tmp_path) if "app/big" in read[r.id]] == [first]
            assert sum(1 for _at, row in sink.rows() if row["store"] == "big") == BIG

            daemon.stop(timeout=120)
    finally:
        daemon.close()

    # Nothing pending after SIGTERM, and the job consumed every run with rows.
    runs = daemon_runs(tmp_path)
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        assert state.pending_runs() == []
    assert all(r.status == "committed" for r in runs), [(r.id, r.status, r.error) for r in runs]
    assert all(r.consumed_at is not None for r in runs if r.rows), [
        (r.id, r.rows, r.consumed_rows) for r in runs
    ]
    # No tick was missed, and none came twice (a log file consumed once).
    ticks = [row for _at, row in sink.rows() if row["store"] == "ticks"]
    assert len(ticks) == TICKS + 3 and all(row["op"] == "+I" for row in ticks)
