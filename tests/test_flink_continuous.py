"""The continuous pipeline end to end: the demo app harvested by `harvester harvest` and
`harvester run`, one checkpointed job whose aggregate over `changes` stays the truth across
harvests, restarts and SIGKILLs of the daemon and of the Flink worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flink_jobs.debezium import upsert_table
from harvester.demo import DemoServer, serve_demo
from harvester.state import StateDB
from tests.support.server import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.flink, pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 300.0


def _config(
    root: Path,
    url: str,
    http_port: int,
    schedule: str = "1h",
    flink: str = "",
    *,
    statements: bool = True,
) -> Path:
    """A config harvesting the demo, with statements keeping records per store in
    `out/store_counts` (a continuous pipeline's aggregate over `changes`)."""
    sink = (root / "out" / "store_counts").as_uri()
    aggregate = f"""
[[flink.statements]]
sql = '''CREATE TABLE store_counts (target STRING, db_name STRING, store STRING, n BIGINT,
           PRIMARY KEY (target, db_name, store) NOT ENFORCED)
         WITH ('connector' = 'filesystem', 'path' = '{sink}', 'format' = 'debezium-json',
               'sink.rolling-policy.rollover-interval' = '1s',
               'sink.rolling-policy.check-interval' = '1s')'''

[[flink.statements]]
sql = '''INSERT INTO store_counts
         SELECT target, db_name, store, COUNT(*) FROM changes GROUP BY target, db_name, store'''
"""
    config = root / "harvester.toml"
    config.write_text(
        f"""
[state]
dir = "state"
data_dir = "data"

[http]
port = {http_port}

[daemon]
run_on_start = true
shutdown_grace = "60s"

[flink]
{flink}
{aggregate if statements else ""}
[[targets]]
name = "demo"
url = "{url}"
schedule = "{schedule}"

[targets.ready]
function = "window.demoReady === true"

[targets.auth]
profile_dir = "profile"
""",
        "utf-8",
    )
    return config


def _wait(what: str, check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    wait_until(what, check, timeout)


def _state(root: Path) -> StateDB:
    return StateDB.open(root / "state", readonly=True)


def _truth(root: Path) -> dict[tuple[str, str, str], int]:
    """Records per store in the state DB's committed snapshot."""
    with _state(root) as state:
        return {(s.target, s.db, s.store): s.records for s in state.list_stores() if s.records}


def _aggregate(root: Path) -> dict[tuple[str, str, str], int]:
    rows = upsert_table(root / "out" / "store_counts", ("target", "db_name", "store"))
    return {key: row["n"] for key, row in rows.items()}


def _check_every_run_consumed_once(root: Path) -> int:
    """Each committed run's rows are in the default sinks exactly once (its record rows in
    `changes`, its schema rows in `schema_log`); how many runs."""
    written: dict[str, int] = {}
    parts = [*(root / "data" / "changes").rglob("part-*")]
    for path in [*parts, *(root / "data" / "schema_log").rglob("part-*")]:
        for line in path.read_bytes().splitlines():
            run_id = json.loads(line)["run_id"]
            written[run_id] = written.get(run_id, 0) + 1
    with _state(root) as state:
        runs = [r for r in state.list_runs(status="committed") if r.rows]
        assert state.undelivered() == []
    assert written == {run.id: run.rows for run in runs}
    assert all(run.consumed_rows == run.rows for run in runs)
    return len(runs)


EVER = datetime.min.replace(tzinfo=UTC)


def _consumed_runs(root: Path, *, since: datetime = EVER) -> int:
    """Runs started after `since` (by default: all) with rows that Flink consumed."""
    if not (root / "state" / "state.db").exists():
        return 0  # the daemon has not made it yet
    with _state(root) as state:
        runs = [r for r in state.list_runs(status="committed") if r.rows and r.started_at > since]
        return sum(1 for r in runs if r.consumed_at is not None)


def _harvest(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harvester", "harvest", "--all", "--config", str(config)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _descendants(pid: int) -> Iterator[int]:
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            yield child
            yield from _descendants(child)


def _flink_worker(pid: int) -> int | None:
    for child in _descendants(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"flink_jobs.worker" in argv:
            return child
    return None


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    with serve_demo(0) as server:
        yield server


def test_an_aggregate_over_changes_stays_true_across_harvests_restarts_and_kills(
    tmp_path: Path, demo: DemoServer
) -> None:
    http_port = free_port()
    config = _config(tmp_path, demo.url, http_port)

    # Two one-shot harvests: the second resumes the first's checkpoint.
    for _ in range(2):
        done = _harvest(config)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Flink consumed every run" in done.stderr
        assert _aggregate(tmp_path) == _truth(tmp_path)
    assert _check_every_run_consumed_once(tmp_path) == 2

    # The daemon, SIGKILLed after it consumed a run, then started again.
    config = _config(tmp_path, demo.url, http_port, schedule="2s")
    log = (tmp_path / "daemon.log").open("ab")
    command = [sys.executable, "-m", "harvester", "run", "--config", str(config)]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)

    # Counted from moments, not totals: the job may take several runs in one checkpoint.
    since = datetime.now(UTC)
    daemon = start()
    try:
        _wait("a daemon run consumed", lambda: _consumed_runs(tmp_path, since=since) >= 1)
        worker = _flink_worker(daemon.pid)
        daemon.kill()
        daemon.wait()
        if worker is not None:
            _wait("the Flink worker to die with the daemon", lambda: _gone(worker), 30)

        since = datetime.now(UTC)
        daemon = start()
        _wait("a run after the restart consumed", lambda: _consumed_runs(tmp_path, since=since) > 0)
        _wait("the restarted daemon's Flink worker", lambda: _flink_worker(daemon.pid) is not None)
        worker = _flink_worker(daemon.pid)
        assert worker is not None
        since = datetime.now(UTC)
        os.kill(worker, signal.SIGKILL)
        # The job resumes from its last checkpoint in a new worker and consumes the next runs.
        _wait(
            "a run consumed after the worker's death",
            lambda: _consumed_runs(tmp_path, since=since) >= 1,
        )
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=120) == 0, (tmp_path / "daemon.log").read_text()[-5000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()

    # Runs the daemon committed but Flink had not consumed when it stopped: a last harvest
    # takes them all in, then the state and the aggregate must agree.
    done = _harvest(config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _aggregate(tmp_path) == _truth(tmp_path)
    _check_every_run_consumed_once(tmp_path)
