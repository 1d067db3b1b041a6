"""`local-cluster` mode with real Flink: the bundled standalone cluster starts, runs a harvest
job that its REST API lists, and stops when the runner closes."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from flink_jobs.cluster import LocalCluster
from flink_jobs.forwarder import FlinkForwarder
from flink_jobs.runner import FlinkRunner
from tests.support.flink import change, flink_settings, read_rows, runs, write_spool
from tests.support.server import free_port


@pytest.mark.flink
@pytest.mark.slow
def test_local_cluster_runs_a_job_and_stops_with_the_runner(tmp_path: Path) -> None:
    address = f"localhost:{free_port()}"
    config = flink_settings(tmp_path, mode="local-cluster", address=address)
    spool = write_spool(tmp_path / "spool", "run-cluster", "shop", [change(1, "+I", "x")])
    runner = FlinkRunner(config)
    try:
        runner.start()
        assert runner.dashboard_url == f"http://{address}/"
        FlinkForwarder(config, runner=runner).send([spool])

        with urllib.request.urlopen(f"http://{address}/jobs/overview", timeout=10) as reply:
            jobs = json.load(reply)["jobs"]
        listed = [(job["name"], job["state"]) for job in jobs]
        assert listed == [("harvest run-cluster", "FINISHED")]
        changes = runs(read_rows(config.state.data_dir / "changes"), "run-cluster")
        assert [row["op"] for row in changes] == ["+I"]
    finally:
        runner.close()

    cluster = LocalCluster(config.state.dir / "flink-cluster", address=address)
    assert cluster.overview(timeout=1.0) is None
    assert not any((config.state.dir / "flink-cluster" / "pid").iterdir())
