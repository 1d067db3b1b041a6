"""Continuous delivery to a remote cluster: a standalone Flink cluster started by the test (own
ports, own folders) runs one job for the log, which two starts of the daemon find again by name
instead of submitting it twice, and which consumes every run of both."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flink_jobs import rest
from flink_jobs.cluster import LocalCluster
from harvester.demo import DemoServer, serve_demo
from tests.support.server import free_port
from tests.test_flink_continuous import (
    TIMEOUT,
    _aggregate,
    _check_every_run_consumed_once,
    _config,
    _consumed_runs,
    _truth,
    _wait,
)

pytestmark = [pytest.mark.flink, pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "cluster", address=f"127.0.0.1:{free_port()}", slots=2)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    with serve_demo(0) as server:
        yield server


def _ours(cluster: LocalCluster) -> list[rest.JobInfo]:
    return [job for job in rest.jobs(cluster.address) if job.name.startswith("idb-harvester")]


def test_two_daemon_starts_share_one_running_job_on_a_remote_cluster(
    tmp_path: Path, cluster: LocalCluster, demo: DemoServer
) -> None:
    remote = f'mode = "remote"\naddress = "{cluster.address}"'
    config = _config(tmp_path, demo.url, free_port(), schedule="2s", flink=remote)
    command = [sys.executable, "-m", "harvester", "run", "--config", str(config)]
    log_path = tmp_path / "daemon.log"
    job_ids = []
    consumed = 0
    for _ in range(2):
        with log_path.open("ab") as log:
            daemon = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait(
                "runs consumed by the remote job",
                lambda wanted=consumed + 2: _consumed_runs(tmp_path) >= wanted,
            )
            running = [job for job in _ours(cluster) if job.state == "RUNNING"]
            assert len(running) == 1, _ours(cluster)
            job_ids.append(running[0].job_id)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=TIMEOUT) == 0, log_path.read_text()[-5000:]
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
        consumed = _consumed_runs(tmp_path)
        # The cluster owns the job: it outlives the daemon.
        assert [job.state for job in _ours(cluster)] == ["RUNNING"]
    assert job_ids[0] == job_ids[1]

    done = subprocess.run(
        [sys.executable, "-m", "harvester", "harvest", "--all", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [job.job_id for job in _ours(cluster)] == [job_ids[0]]
    assert _aggregate(tmp_path) == _truth(tmp_path)
    _check_every_run_consumed_once(tmp_path)
