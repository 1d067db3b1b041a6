"""`harvester run` as a real process against the demo site: schedules, failures, reload, SIGTERM.

One daemon run (with the JSON-lines sink, so that Flink's start-up does not crowd the schedule)
checks the issue's scenarios together (a Chromium start is the expensive part):
two demo targets on a 2-second interval commit several runs whose later ones carry the demo's
changes; a target whose URL refuses connections fails and retries meanwhile; a killed browser
fails its run and the target goes on; SIGHUP with a broken config keeps the schedule, with a
valid one adds a target; /healthz and /metrics answer throughout; SIGTERM exits 0. Another run
sends through the real Flink pipeline (embedded).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester.demo import DemoServer, serve_demo
from harvester.state import StateDB
from tests.support.daemon import DaemonProcess
from tests.support.server import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MAX_SECONDS = 150


def _target(name: str, url: str, schedule: str, profile: str | None) -> str:
    text = f"""
[[targets]]
name = "{name}"
url = "{url}"
schedule = "{schedule}"
retries = 2

[targets.ready]
function = "window.demoReady === true"

[targets.limits]
harvest_timeout = "60s"
"""
    if profile:
        text += f'\n[targets.auth]\nprofile_dir = "{profile}"\n'
    return text


def _config(http_port: int, targets: list[str]) -> str:
    head = f"""
[state]
dir = "state"
data_dir = "data"

[http]
port = {http_port}

[daemon]
run_on_start = true
shutdown_grace = "60s"
max_concurrent_harvests = 2
"""
    return head + "".join(targets)


def _committed(health: dict[str, Any], metrics: bytes, target: str) -> float:
    needle = f'harvester_runs_total{{status="committed",target="{target}"}} '.encode()
    for line in metrics.splitlines():
        if line.startswith(needle):
            return float(line[len(needle) :])
    return 0.0


def _children(pid: int) -> Iterator[int]:
    """Every descendant of `pid` (from /proc)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            yield child
            yield from _children(child)


def _browser_of(daemon_pid: int, profile: Path) -> int | None:
    """The pid of the main Chromium process using `profile`, if one runs now."""
    flag = f"--user-data-dir={profile}".encode()
    for pid in _children(daemon_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if flag in argv and not any(arg.startswith(b"--type=") for arg in argv):
            return pid
    return None


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    with serve_demo(0) as server:
        yield server


def test_daemon_harvests_on_schedule_through_failures_reload_and_sigterm(
    tmp_path: Path, demo: DemoServer
) -> None:
    http_port = free_port()
    refused = f"http://127.0.0.1:{free_port()}/"
    targets = [
        _target("one", demo.url, "2s", "profile-one"),
        _target("two", demo.url, "2s", "profile-two"),
        _target("down", refused, "2s", None),
    ]
    config = tmp_path / "harvester.toml"
    config.write_text(_config(http_port, targets))
    daemon = DaemonProcess(config, http_port)
    try:
        daemon.wait_for("/healthz", lambda: daemon.health()["status"] == "ok", timeout=30)

        # A killed browser fails its run; the target is retried and goes on.
        profile = tmp_path / "profile-one"
        daemon.wait_for("a browser of target one", lambda: _browser_of(daemon.proc.pid, profile))
        browser = _browser_of(daemon.proc.pid, profile)
        assert browser is not None
        os.kill(browser, signal.SIGKILL)

        # SIGHUP with a broken config keeps the running schedule.
        broken = _config(http_port, targets).replace("[daemon]", "[daemon]\nbogus = 1")
        config.write_text(broken)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("the rejected reload", lambda: "config reload rejected" in daemon.log())
        assert sorted(daemon.health()["targets"]) == ["down", "one", "two"]

        # SIGHUP with a valid config adding a target schedules it.
        added = _target("three", demo.url, "1h", "profile-three")
        config.write_text(_config(http_port, [*targets, added]))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("target three", lambda: "three" in daemon.health()["targets"])
        assert daemon.health()["targets"]["three"]["next_run"] is not None

        def enough() -> bool:
            _, metrics = daemon.get("/metrics")
            health = daemon.health()
            return health["targets"]["down"]["consecutive_failures"] >= 3 and all(
                _committed(health, metrics, name) >= 3 for name in ("one", "two")
            )

        daemon.wait_for("three runs of each target", enough, MAX_SECONDS)
        health = daemon.health()
        status, metrics = daemon.get("/metrics")
        assert status == 200
        assert b"harvester_run_duration_seconds_bucket" in metrics
        assert b"harvester_pending_spools" in metrics
        assert b'harvester_records_total{op="+U",target="one"}' in metrics
        down = health["targets"]["down"]
        assert down["consecutive_failures"] >= 2
        assert down["last_status"] == "failed"
        assert health["targets"]["one"]["healthy"] and health["targets"]["two"]["healthy"]

        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=90) == 0, daemon.log()
    finally:
        daemon.close()

    log = daemon.log_path.read_text()
    assert "daemon stopped" in log
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        for name in ("one", "two"):
            runs = sorted(state.list_runs(target=name), key=lambda run: run.started_at)
            committed = [run for run in runs if run.status == "committed"]
            assert len(committed) >= 3, [(r.status, r.error) for r in runs]
            assert committed[0].inserted > 1000
            for later in committed[1:]:
                # Every page load changes the demo's data: later runs carry those changes.
                assert later.inserted + later.updated + later.deleted > 0
        one_failed = [r for r in state.list_runs(target="one") if r.status == "failed"]
        assert one_failed, "the killed browser's run should have failed"
        down_runs = state.list_runs(target="down")
        assert len(down_runs) >= 3
        assert all(run.status == "failed" for run in down_runs)
        assert any("ERR_CONNECTION_REFUSED" in (run.error or "") for run in down_runs), [
            run.error for run in down_runs
        ]
        assert state.pending_runs() == []


def test_a_second_sigint_exits_at_once_and_the_next_start_recovers(
    tmp_path: Path, demo: DemoServer
) -> None:
    http_port = free_port()
    config = tmp_path / "harvester.toml"
    config.write_text(_config(http_port, [_target("one", demo.url, "1h", "profile-one")]))
    daemon = DaemonProcess(config, http_port)
    try:
        daemon.wait_for("a running harvest", lambda: daemon.health()["targets"]["one"]["running"])
        daemon.proc.send_signal(signal.SIGINT)
        daemon.wait_for("the stop", lambda: "stopping: no new runs" in daemon.log(), timeout=60)
        daemon.proc.send_signal(signal.SIGINT)
        assert daemon.proc.wait(timeout=30) == 130
    finally:
        daemon.close()
    assert "second interrupt: exiting now" in daemon.log()
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        assert [run.status for run in state.list_runs(target="one")] == ["running"]

    # The next start finds the run that died, marks it failed, and harvests again.
    config.write_text(_config(http_port, [_target("one", demo.url, "1h", "profile-one")]))
    daemon = DaemonProcess(config, http_port)
    try:
        daemon.wait_for(
            "a committed run",
            lambda: daemon.health()["targets"]["one"]["last_status"] == "committed",
        )
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=60) == 0, daemon.log()
    finally:
        daemon.close()
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        runs = sorted(state.list_runs(target="one"), key=lambda run: run.started_at)
        assert [run.status for run in runs] == ["failed", "committed"]
        assert runs[0].error == "process died during the read"


@pytest.mark.flink
def test_daemon_sends_through_flink(tmp_path: Path, demo: DemoServer) -> None:
    http_port = free_port()
    targets = [
        _target("one", demo.url, "2s", "profile-one"),
        _target("two", demo.url, "2s", "profile-two"),
    ]
    config = tmp_path / "harvester.toml"
    config.write_text(_config(http_port, targets))
    daemon = DaemonProcess(config, http_port, sink="flink")
    try:
        daemon.wait_for("/healthz", lambda: daemon.health()["status"] == "ok", timeout=60)

        def enough() -> bool:
            _, metrics = daemon.get("/metrics")
            return all(_committed({}, metrics, name) >= 2 for name in ("one", "two"))

        # The first Flink job starts a JVM: on a busy 2-core machine that takes a while.
        daemon.wait_for("two committed runs per target", enough, 300)
        status, metrics = daemon.get("/metrics")
        assert status == 200
        assert b'harvester_records_total{op="-D",target="two"}' in metrics
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=120) == 0, daemon.log()
    finally:
        daemon.close()

    with StateDB.open(tmp_path / "state", readonly=True) as state:
        for name in ("one", "two"):
            runs = sorted(state.list_runs(target=name), key=lambda run: run.started_at)
            committed = [run for run in runs if run.status == "committed"]
            assert len(committed) >= 2, [(r.status, r.error) for r in runs]
            assert all(r.inserted + r.updated + r.deleted > 0 for r in committed[1:])
        assert state.pending_runs() == []
    # The default sink partitions by target (`target=NAME/` folders), so rows omit the column.
    ops: dict[str, set[str]] = {"one": set(), "two": set()}
    for path in (tmp_path / "data" / "changes").rglob("part-*"):
        target = next(p for p in path.parts if p.startswith("target=")).removeprefix("target=")
        for line in path.read_text().splitlines():
            ops[target].add(json.loads(line)["op"])
    assert ops == {"one": {"+I", "+U", "-D"}, "two": {"+I", "+U", "-D"}}
