"""Watch mode in `harvester run`: real Chromium, a page served here, the JSON-lines sink.

One daemon run checks the scenarios in order (a Chromium start is the expensive part): an idle
watched page starts no run (the first event-driven run is the one the first write caused); a
write leads to an event-driven run that read only the changed store and whose rows carry the
`+U`; a store the globs exclude never starts a read; a partial run emits no `-D` for the stores
it did not read; a crashed renderer is noticed, the page reopened, and its writes start runs
again; /healthz and /metrics report the watch; SIGTERM exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester.state import Run, StateDB
from tests.support.daemon import (
    DaemonProcess,
    WatchPageServer,
    daemon_runs,
    renderers,
    run_stores,
)
from tests.support.server import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _config(http_port: int, url: str) -> str:
    return f"""
[state]
dir = "state"
data_dir = "data"

[http]
port = {http_port}

[daemon]
run_on_start = true
shutdown_grace = "30s"

[[targets]]
name = "w"
url = "{url}"
schedule = "1h"
stores = ["app/items", "app/other"]

[targets.ready]
function = "window.watchReady === true"

[targets.auth]
profile_dir = "profile"

[targets.watch]
enabled = true
debounce = "200ms"
max_delay = "1s"
"""


@pytest.fixture
def page() -> Iterator[WatchPageServer]:
    server = WatchPageServer()
    yield server
    server.close()


def _stores(tmp_path: Path, run_id: str) -> list[str]:
    return run_stores(tmp_path).get(run_id, [])


def _event_runs(tmp_path: Path) -> list[Run]:
    return [r for r in daemon_runs(tmp_path) if r.trigger == "event"]


def _rows(tmp_path: Path, run_id: str) -> list[dict[str, Any]]:
    sink = tmp_path / "data" / "changes-jsonl" / "changes.jsonl"
    if not sink.is_file():
        return []
    rows = [json.loads(line) for line in sink.read_text().splitlines() if line]
    return [row for row in rows if row["run_id"] == run_id]


def _committed_event_run_with(tmp_path: Path, store: str, key: str) -> Run | None:
    """The first committed event-driven run whose rows change `key` of `store`."""
    for run in _event_runs(tmp_path):
        if run.status == "committed" and any(
            row["store"] == store and key in (row["key"] or "") and row["op"] in ("+I", "+U")
            for row in _rows(tmp_path, run.id)
        ):
            return run
    return None


def _watch(daemon: DaemonProcess) -> dict[str, Any]:
    return dict(daemon.health()["targets"]["w"]["watch"])


def _metric(daemon: DaemonProcess, name: str) -> float:
    _status, body = daemon.get("/metrics")
    needle = f'{name}{{target="w"}} '.encode()
    for line in body.splitlines():
        if line.startswith(needle):
            return float(line[len(needle) :])
    return 0.0


def test_watched_page_harvests_what_it_writes(tmp_path: Path, page: WatchPageServer) -> None:
    http_port = free_port()
    config = tmp_path / "harvester.toml"
    config.write_text(_config(http_port, page.url))
    daemon = DaemonProcess(config, http_port)
    try:
        # The full run at start (the baseline) and the page watched.
        daemon.wait_for(
            "the first full run and the watch",
            lambda: (
                any(r.status == "committed" and r.trigger is None for r in daemon_runs(tmp_path))
                and _watch(daemon)["state"] == "watching"
            ),
        )
        connected = page.connections

        # Idle, then one write: the first event-driven run is the one it caused.
        page.put("items", "k1", {"v": 1})
        daemon.wait_for(
            "the write's event-driven run",
            lambda: _committed_event_run_with(tmp_path, "items", "k1") is not None,
            timeout=60,
        )
        first = _event_runs(tmp_path)[0]
        assert _committed_event_run_with(tmp_path, "items", "k1") == first
        assert first.trigger_events is not None and first.trigger_events >= 1
        assert _stores(tmp_path, first.id) == ["app/items"]
        ops = [(row["store"], row["op"]) for row in _rows(tmp_path, first.id)]
        assert ops == [("items", "+U")], ops

        # An excluded store's write never starts a read; a partial run emits no -D for the
        # stores it did not read (`items` has records, `other` is read alone).
        page.put("ignored", "x", 1)
        page.put("other", "o1", {"v": 1})
        daemon.wait_for(
            "the run of `other`",
            lambda: _committed_event_run_with(tmp_path, "other", "o1") is not None,
            timeout=60,
        )
        partial = _committed_event_run_with(tmp_path, "other", "o1")
        assert partial is not None
        assert _stores(tmp_path, partial.id) == ["app/other"]
        assert partial.deleted == 0
        assert {row["store"] for row in _rows(tmp_path, partial.id)} == {"other"}
        for run in _event_runs(tmp_path):
            assert "app/ignored" not in _stores(tmp_path, run.id)

        # A crashed renderer: noticed, reported, the page reopened, and writes work again.
        reopens = _watch(daemon)["reopens"]
        killed = renderers(daemon.proc.pid)
        assert killed, "no renderer found under the daemon"
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        daemon.wait_for("the crash noticed", lambda: _watch(daemon)["reopens"] > reopens)
        assert _watch(daemon)["last_error"]
        daemon.wait_for(
            "the page reopened",
            lambda: _watch(daemon)["state"] == "watching" and page.connections > connected,
        )
        page.put("items", "k2", {"v": 2})
        daemon.wait_for(
            "a run after the reopen",
            lambda: _committed_event_run_with(tmp_path, "items", "k2") is not None,
            timeout=60,
        )

        # Visible: /metrics and /healthz.
        assert _metric(daemon, "harvester_watch_events_total") >= 3
        assert _metric(daemon, "harvester_watch_reads_total") >= 3
        assert _metric(daemon, "harvester_watch_delay_seconds_count") >= 3
        assert _metric(daemon, "harvester_watch_reopens_total") >= 1
        watch = _watch(daemon)
        assert watch["reads"] >= 3 and watch["events"] >= 3

        daemon.stop(timeout=60)
    finally:
        daemon.close()
    # Nothing left pending or running after SIGTERM.
    assert all(r.status in ("committed", "failed") for r in daemon_runs(tmp_path))
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        assert state.pending_runs() == []

    # `harvester runs` says which runs events triggered, and the stores they read.
    command = [sys.executable, "-m", "harvester", "runs", "--state", str(tmp_path / "state")]
    listed = json.loads(
        subprocess.run([*command, "--format", "json"], capture_output=True, check=True).stdout
    )
    by_id = {row["id"]: row for row in listed}
    assert by_id[first.id]["trigger"] == "event"
    assert by_id[first.id]["stores_read"] == ["app/items"]
    assert by_id[partial.id]["stores_read"] == ["app/other"]
    assert all(row["trigger"] in (None, "event") for row in listed)
    table = subprocess.run(
        [*command, "--format", "table", "--wide"], capture_output=True, check=True, text=True
    ).stdout
    assert "event ×" in table and "app/other" in table
