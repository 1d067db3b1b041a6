"""A per-harvest job that Flink reports as successful counts only when its rows are in the
default sinks: a staging folder removed during the job never gives a committed run with rows
missing."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from flink_jobs.forwarder import FlinkForwarder
from flink_jobs.verify import written_rows
from harvester import harvest
from harvester.errors import FlinkJobError
from harvester.state import StateDB
from tests.support.flink import change, flink_settings, read_rows, write_spool

pytestmark = [pytest.mark.flink, pytest.mark.slow]

ROWS = 200_000


def _remove_staging(data_dir: Path, stop: threading.Event, removed: list[Path]) -> None:
    """Delete every `.staging_*` folder of the default sinks as soon as it appears."""
    while not stop.is_set():
        for staging in data_dir.glob("*/.staging_*"):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
        time.sleep(0.005)


def test_a_job_whose_staging_vanished_leaves_its_run_pending(tmp_path: Path) -> None:
    settings = flink_settings(tmp_path, delivery="per-harvest", max_rows_per_job=ROWS)
    data_dir = settings.state.data_dir
    with (
        StateDB.open(settings.state.dir, keep_runs=50, keep_failed_runs=100) as state,
        FlinkForwarder(settings) as sink,
    ):
        run_id = state.start_run("shop")
        rows = [change(key, "+I", {"n": key}) for key in range(ROWS)]
        spool = write_spool(state.spool_dir, run_id, "shop", rows)
        state.mark_read(run_id, origin="http://127.0.0.1:8765", stores=[], rows=ROWS, problems=[])

        stop, removed = threading.Event(), list[Path]()
        watcher = threading.Thread(target=_remove_staging, args=(data_dir, stop, removed))
        watcher.start()
        try:
            # Flink itself fails the job, or reports success and our check finds rows missing.
            with pytest.raises(FlinkJobError):
                harvest.send(state, sink, [spool])
        finally:
            stop.set()
            watcher.join()
        assert removed, "the test never saw a staging folder to remove"
        run = state.get_run(run_id)
        assert run is not None and run.status == "failed" and run.pending
        assert "sending failed" in (run.error or "")

        # The retry delivers the run whole, and only then is it committed.
        started = time.time()
        harvest.send(state, sink, [spool])
        assert written_rows(data_dir, started) == ({run_id: ROWS}, ROWS)
        assert harvest.commit(state, spool)
    assert sum(1 for row in read_rows(data_dir / "changes") if row["run_id"] == run_id) >= ROWS
