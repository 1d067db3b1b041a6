"""A Flink worker and its JVM die with the harvester that started them, whatever they are doing.

Each test runs a small harvester-like process that starts a real `WorkerProcess`, kills it with
SIGKILL (so none of its own cleanup runs) and waits until the worker's process group, which
holds the JVM, is empty. A worker that lived on would finish its job into data_dir after the
harvester's locks are gone.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# The harvester: starts a worker from a thread that ends at once (as asyncio.to_thread's or a
# request's thread would), then, by `what`, prints the worker's pid right away (`start-up`) or
# once it is ready with its JVM's pid (`idle`), or starts a job over a big spool (`job`).
HARVESTER = """
import json, sys, threading, time
from pathlib import Path
from flink_jobs.protocol import SpoolSlice, job_spec
from flink_jobs.worker_process import WorkerProcess
from tests.support.flink import change, flink_settings, write_spool

root, what = Path(sys.argv[1]), sys.argv[2]
settings = flink_settings(root)
if what == "job":
    rows = [change(n, "+I", "x" * 100) for n in range(200_000)]
    spool = write_spool(root / "spool", "run-big", "shop", rows)
workers = []
starter = threading.Thread(
    target=lambda: workers.append(
        WorkerProcess(settings=settings, target="embedded", warm_up=what != "start-up")
    )
)
starter.start()
starter.join()
worker = workers[0]
if what != "start-up":
    worker._wait_ready()
if what == "job":
    spec = job_spec(settings, [SpoolSlice(spool.run_id, spool.target, spool.path)], spool.rows)
    threading.Thread(target=worker.request, args=(("run", spec), 600), daemon=True).start()
print(json.dumps({"worker": worker._process.pid, "jvm": worker.jvm_pid}), flush=True)
time.sleep(600)
"""
TIMEOUT = 90.0
Pids = dict[str, Any]  # "worker": its pid, "jvm": its JVM's (None before it is ready)
Start = Callable[[str], tuple[subprocess.Popen[str], Pids]]


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command (state, ppid, pgrp, …); [] once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return []


def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[0] != "Z" and fields[2] == str(pgid):
                found.append(int(entry.name))
    return found


def _wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT) -> float:
    """Seconds until `condition()` held, polled every 10 ms; fails the test after `timeout`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout:.0f} s"
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def harvester(tmp_path: Path) -> Iterator[Start]:
    """Starts the harvester process; afterwards kills whatever of it is left."""
    started: list[tuple[subprocess.Popen[str], int]] = []

    def start(what: str) -> tuple[subprocess.Popen[str], Pids]:
        process = subprocess.Popen(
            [sys.executable, "-c", HARVESTER, str(tmp_path), what],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 300)
        line = process.stdout.readline() if ready else ""
        assert line, f"the harvester printed no pids (exit status {process.poll()})"
        pids: Pids = json.loads(line)
        started.append((process, pids["worker"]))
        return process, pids

    yield start
    for process, worker in started:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
        for pid in _group(worker):
            os.kill(pid, signal.SIGKILL)


def _kill(process: subprocess.Popen[str], worker: int) -> float:
    """SIGKILL the harvester; the seconds until its worker's process group is empty."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return _wait_for(lambda: not _group(worker))


@pytest.mark.flink
@pytest.mark.slow
def test_an_idle_worker_and_its_jvm_die_with_the_harvester(harvester: Start) -> None:
    process, pids = harvester("idle")
    # Ready although the thread that started it ended long ago.
    assert sorted(_group(pids["worker"])) == sorted([pids["worker"], pids["jvm"]])

    _kill(process, pids["worker"])


@pytest.mark.flink
@pytest.mark.slow
def test_a_worker_in_a_job_dies_with_the_harvester_and_commits_nothing(
    harvester: Start, tmp_path: Path
) -> None:
    process, pids = harvester("job")
    changes = tmp_path / "data" / "changes"
    # The job runs: its sink has staged files, and the worker's main thread waits in py4j.
    _wait_for(lambda: any(changes.glob(".staging_*")), timeout=120)

    _kill(process, pids["worker"])

    committed = [path for path in changes.rglob("part-*") if ".staging_" not in str(path)]
    assert committed == []


@pytest.mark.flink
@pytest.mark.slow
@pytest.mark.parametrize("when", ["before-its-jvm", "while-its-jvm-starts"])
def test_a_starting_worker_dies_with_the_harvester(harvester: Start, when: str) -> None:
    process, pids = harvester("start-up")
    worker = pids["worker"]
    if when == "while-its-jvm-starts":
        _wait_for(lambda: len(_group(worker)) > 1, timeout=120)

    _kill(process, worker)
