"""A remote Flink cluster (started by the test: own ports, own folders) that is down when the
daemons start, then restarted under them.

Two daemons in continuous delivery, each with its own state folder and log, run one job each on
the cluster (docs/deploy.md says why not one shared log): runs are handed off to the logs while
the cluster is down, and each job, submitted once the cluster is up and resubmitted from its
latest checkpoint after the restart, consumes every run once, with the aggregate over `changes`
true; the jobs outlive the daemons, and a one-shot harvest finds its own by name. A third daemon,
in per-harvest delivery, keeps its runs pending while the cluster is away and sends them once it
is back. One test for all three: each cluster start and restart costs the suite once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flink_jobs import rest
from flink_jobs.cluster import LocalCluster
from flink_jobs.protocol import JOB_NAME_PREFIX
from harvester.demo import DemoServer, serve_demo
from harvester.state import Run
from tests.support.daemon import DaemonProcess
from tests.support.server import free_port
from tests.test_flink_continuous import (
    TIMEOUT,
    _aggregate,
    _check_every_run_consumed_once,
    _config,
    _consumed_runs,
    _harvest,
    _state,
    _truth,
)

pytestmark = [pytest.mark.flink, pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster on its own port, not started: the test starts and stops it."""
    cluster = LocalCluster(tmp_path / "cluster", address=f"127.0.0.1:{free_port()}", slots=3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    with serve_demo(0) as server:
        yield server


def _runs_with_rows(root: Path) -> list[Run]:
    """The committed runs that had rows; none before the daemon made its state DB."""
    if not (root / "state" / "state.db").exists():
        return []
    with _state(root) as state:
        return [r for r in state.list_runs(status="committed") if r.rows]


def _committed_runs(root: Path, *, since: datetime) -> int:
    """Committed runs with rows that started after `since`."""
    return sum(1 for r in _runs_with_rows(root) if r.started_at > since)


def _all_consumed(root: Path) -> bool:
    runs = _runs_with_rows(root)
    return bool(runs) and all(r.consumed_at is not None for r in runs)


def _pending(root: Path) -> int:
    """Runs whose spool waits to be sent."""
    if not (root / "state" / "state.db").exists():
        return 0
    with _state(root) as state:
        return len(state.pending_runs())


def _flink_down(daemon: DaemonProcess) -> bool:
    flink: dict[str, Any] = daemon.health()["flink"]
    return not flink["healthy"] and bool(flink["problem"])


def _running(cluster: LocalCluster) -> set[str]:
    """The ids of our jobs the cluster runs."""
    jobs = rest.jobs(cluster.address)
    return {j.job_id for j in jobs if j.name.startswith(JOB_NAME_PREFIX) and j.state == "RUNNING"}


def _wait_all(daemons: list[DaemonProcess], what: str, check: Callable[[int], bool]) -> None:
    for i, daemon in enumerate(daemons):
        daemon.wait_for(f"{what} ({daemon.log_path.parent.name})", lambda i=i: check(i), TIMEOUT)


def test_daemons_in_both_modes_ride_out_a_cluster_down_at_start_and_restarted_under_them(
    tmp_path: Path, cluster: LocalCluster, demo: DemoServer
) -> None:
    remote = f'mode = "remote"\naddress = "{cluster.address}"'
    roots = [tmp_path / "a", tmp_path / "b", tmp_path / "per-harvest"]
    continuous, per_harvest = roots[:2], roots[2]
    daemons: list[DaemonProcess] = []
    try:
        for root in roots:
            root.mkdir()
            port = free_port()
            if root is per_harvest:
                # Per-harvest jobs start with empty state: an aggregate over them is not the truth.
                flink = remote + '\ndelivery = "per-harvest"'
                config = _config(root, demo.url, port, schedule="6s", flink=flink, statements=False)
            else:
                config = _config(root, demo.url, port, schedule="6s", flink=remote)
            daemons.append(DaemonProcess(config, port, sink=None))
        start = datetime.now(UTC)
        _wait_all(daemons[:2], "flink reported down", lambda i: _flink_down(daemons[i]))
        # Nothing is lost while the cluster is away: runs are committed to each log, or stay
        # pending in per-harvest delivery.
        _wait_all(
            daemons[:2], "runs handed off", lambda i: _committed_runs(roots[i], since=start) >= 2
        )
        daemons[2].wait_for(
            "a run that could not be delivered", lambda: _pending(per_harvest) >= 1, TIMEOUT
        )
        assert [_consumed_runs(root) for root in continuous] == [0, 0]
        assert _committed_runs(per_harvest, since=start) == 0

        cluster.start()
        _wait_all(daemons[:2], "the backlog consumed", lambda i: _consumed_runs(roots[i]) >= 2)
        daemons[2].wait_for(
            "the pending runs delivered",
            lambda: _committed_runs(per_harvest, since=start) >= 2 and _pending(per_harvest) == 0,
            TIMEOUT,
        )

        cluster.stop()
        stopped = datetime.now(UTC)
        _wait_all(daemons[:2], "flink reported down again", lambda i: _flink_down(daemons[i]))
        _wait_all(
            daemons,
            "runs while down",
            lambda i: bool(
                _pending(per_harvest) if i == 2 else _committed_runs(roots[i], since=stopped)
            ),
        )

        cluster.start()
        _wait_all(
            daemons[:2],
            "every run consumed after the restart",
            lambda i: _consumed_runs(roots[i], since=stopped) >= 1 and _all_consumed(roots[i]),
        )
        daemons[2].wait_for(
            "a run delivered after the restart",
            lambda: _committed_runs(per_harvest, since=stopped) >= 1,
            TIMEOUT,
        )
        _wait_all(daemons[:2], "flink healthy", lambda i: daemons[i].health()["flink"]["healthy"])
        jobs = _running(cluster)
        assert len(jobs) == 2, jobs

        for daemon in daemons:
            daemon.stop()
        # The cluster owns the jobs: they outlive the daemons, and a one-shot harvest finds its
        # own by name instead of submitting another.
        assert _running(cluster) == jobs
        done = _harvest(roots[1] / "harvester.toml")
        assert done.returncode == 0, done.stdout + done.stderr
        assert _running(cluster) == jobs
    finally:
        for daemon in daemons:
            daemon.close()
    for root in continuous:
        assert _aggregate(root) == _truth(root)
        assert _check_every_run_consumed_once(root) >= 3
    assert _check_every_run_consumed_once(per_harvest) >= 3
