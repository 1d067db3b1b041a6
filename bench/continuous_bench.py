"""Continuous delivery benchmark: latency from hand-off to the sinks, and throughput against a
plain JSON-lines writer.

    .venv/bin/python bench/continuous_bench.py                     # both parts
    .venv/bin/python bench/continuous_bench.py --only latency --latency-runs 40
    .venv/bin/python bench/continuous_bench.py --only throughput --rows 500000 --runs 10

One `ContinuousForwarder` (embedded, default settings: checkpoints every 1 s) over a real state
DB in --work-dir (wiped first). Runs are handed off as the harvester does (`harvest.send`, then
`harvest.commit(delivered=False)`), after a warm-up run was consumed: the JVM's start is not what
is measured. Two threads watch: one counts each run's rows in the committed part files of
`<data_dir>/changes` every 50 ms, one runs `Tracker.track()` every 100 ms (the daemon: 0.5 s).

latency: --latency-runs runs of 1,000 rows (~300-byte values), one every 2 s. Per run, the
seconds from its hand-off to all its rows in committed part files (target: p50 ≤ 2 s,
p95 ≤ 4 s) and to `consumed_at`; prints each run, then p50 / p95 / max of both.

throughput: --rows rows in --runs runs (flink_bench's ~350-byte rows) handed off in one
`harvest.send` to the warm job; seconds until every run is consumed and every row is in
committed part files, against `JsonLinesSink.send` of the same spools timed just before in this
process (the baseline; target ≤ 3×) and against flink_bench's orjson read+write floor. Prints
rows/s of each, the ratios, the worker's CPU seconds (Python + JVM) and its JVM's peak RSS
(sampled every 0.5 s; VmHWM is the peak since the JVM started). The runs are committed to the
state DB after the measurement, timed apart: any sink's runs pay that commit.

Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import MB, PeakSampler, percentile, rss, status_field  # noqa: E402
from flink_bench import config, cpu_seconds, floor, human, make_spool  # noqa: E402

from flink_jobs.continuous import ContinuousForwarder  # noqa: E402
from flink_jobs.worker_process import START_TIMEOUT  # noqa: E402
from harvester import harvest  # noqa: E402
from harvester.delivery import Tracker  # noqa: E402
from harvester.sinks import JsonLinesSink  # noqa: E402
from harvester.spool import SpoolFile  # noqa: E402
from harvester.state import StateDB  # noqa: E402
from tests.support.poller import Poller  # noqa: E402

TARGET = "bench"
ORIGIN = "https://app.example.com"  # make_spool's
LATENCY_ROWS = 1000
LATENCY_VALUE_BYTES = 300
LATENCY_EVERY = 2.0
# Once the last run is handed off: ample for a pipeline that meets its targets, bounded if not.
SETTLE_SECONDS = 60.0
# Flink writes JSON without spaces; an escaped value never holds this unescaped.
_RUN_ID = re.compile(rb'"run_id":"([^"]+)"')


class Visible(Poller):
    """Rows per run in the committed part files under `folder`, and when each expected run first
    had all its rows there. Committed part files never change, so each is read once;
    in-progress ones are dot-files."""

    def __init__(self, folder: Path, interval: float = 0.05) -> None:
        super().__init__(interval)
        self.folder = folder
        self.rows: Counter[str] = Counter()
        self.complete: dict[str, float] = {}  # run id → time.monotonic()
        self._expected: dict[str, int] = {}
        self._seen: set[Path] = set()
        self._lock = threading.Lock()

    def expect(self, run_id: str, rows: int) -> None:
        with self._lock:
            self._expected[run_id] = rows

    def poll(self) -> None:
        found: Counter[bytes] = Counter()
        for directory, _folders, names in os.walk(self.folder):
            for name in names:
                path = Path(directory, name)
                if name.startswith((".", "_")) or path in self._seen:
                    continue
                self._seen.add(path)
                found.update(_RUN_ID.findall(path.read_bytes()))
        now = time.monotonic()
        with self._lock:
            for raw, count in found.items():
                self.rows[raw.decode()] += count
            for run_id, rows in self._expected.items():
                if run_id not in self.complete and self.rows[run_id] >= rows:
                    self.complete[run_id] = now


class Acked(Poller):
    """Tracks the log's acknowledgements into the state DB; when each run became consumed."""

    def __init__(self, tracker: Tracker, interval: float = 0.1) -> None:
        super().__init__(interval)
        self.tracker = tracker
        self.consumed: dict[str, float] = {}  # run id → time.monotonic()

    def poll(self) -> None:
        consumed = self.tracker.track()
        now = time.monotonic()
        for run_id in consumed:
            self.consumed[run_id] = now


def read_run(state: StateDB, rows: int, *, value_bytes: int = 0) -> SpoolFile:
    """A read run of `rows` changelog rows with its complete spool, as a harvest leaves it."""
    run_id = state.start_run(TARGET)
    spool = make_spool(state.spool_dir, run_id, rows, TARGET, value_bytes=value_bytes)
    state.mark_read(run_id, origin=ORIGIN, stores=[], rows=spool.rows, problems=[])
    return spool


def wait_for(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def jvm_pid(sink: ContinuousForwarder) -> int | None:
    worker = sink._worker
    return worker.jvm_pid if worker is not None else None


def worker_pids(sink: ContinuousForwarder) -> dict[str, int | None]:
    worker = sink._worker
    if worker is None:
        return {}
    return {"python": worker._process.pid, "jvm": worker.jvm_pid}


def warm_up(state: StateDB, sink: ContinuousForwarder, visible: Visible, acked: Acked) -> None:
    spool = read_run(state, 10)
    visible.expect(spool.run_id, spool.rows)
    started = time.monotonic()
    harvest.send(state, sink, [spool])
    harvest.commit(state, spool, delivered=False)
    if not wait_for(
        lambda: spool.run_id in acked.consumed and spool.run_id in visible.complete,
        2 * START_TIMEOUT,
    ):
        sys.exit(f"warm-up run not consumed within {2 * START_TIMEOUT:.0f} s: {sink.problem()}")
    print(
        f"warm-up: a 10-row run consumed {time.monotonic() - started:.1f} s after the start "
        f"(JVM start, job submission); JVM {rss(jvm_pid(sink)) / MB:.0f} MB",
        flush=True,
    )


def bench_latency(
    state: StateDB, sink: ContinuousForwarder, visible: Visible, acked: Acked, runs: int
) -> None:
    print(
        f"\nlatency: {runs} runs of {LATENCY_ROWS} rows (~{LATENCY_VALUE_BYTES}-byte values), "
        f"one every {LATENCY_EVERY:g} s"
    )
    print(f"{'run':>4} {'files s':>8} {'consumed s':>10}", flush=True)
    handed: dict[str, float] = {}
    printed: set[str] = set()
    next_at = time.monotonic()
    for _ in range(runs):
        spool = read_run(state, LATENCY_ROWS, value_bytes=LATENCY_VALUE_BYTES)
        time.sleep(max(next_at - time.monotonic(), 0))
        visible.expect(spool.run_id, spool.rows)
        handed[spool.run_id] = time.monotonic()
        harvest.send(state, sink, [spool])
        harvest.commit(state, spool, delivered=False)
        next_at = handed[spool.run_id] + LATENCY_EVERY
        _print_done(handed, printed, visible, acked)
    wait_for(
        lambda: all(r in visible.complete and r in acked.consumed for r in handed),
        SETTLE_SECONDS,
    )
    _print_done(handed, printed, visible, acked, final=True)
    files = [visible.complete[r] - at for r, at in handed.items() if r in visible.complete]
    consumed = [acked.consumed[r] - at for r, at in handed.items() if r in acked.consumed]
    for label, values in (("hand-off → committed part files", files), ("→ consumed_at", consumed)):
        if values:
            print(
                f"{label:>32}: p50 {percentile(values, 0.5):.2f} s, "
                f"p95 {percentile(values, 0.95):.2f} s, max {max(values):.2f} s "
                f"({len(values)} of {runs} runs)"
            )
    for run_id in handed:
        if run_id not in visible.complete or run_id not in acked.consumed:
            print(
                f"  run {run_id}: {visible.rows[run_id]} of {LATENCY_ROWS} rows in committed "
                f"part files, consumed {run_id in acked.consumed}, {SETTLE_SECONDS:.0f} s after "
                f"the last hand-off; problem: {sink.problem()}"
            )
    print(f"JVM now {rss(jvm_pid(sink)) / MB:.0f} MB", flush=True)


def _print_done(
    handed: dict[str, float],
    printed: set[str],
    visible: Visible,
    acked: Acked,
    *,
    final: bool = False,
) -> None:
    """Print each run not `printed` yet once both its figures are in (at the end: whatever it
    has)."""
    for number, (run_id, at) in enumerate(handed.items(), 1):
        complete, consumed = visible.complete.get(run_id), acked.consumed.get(run_id)
        if run_id in printed or (not final and (complete is None or consumed is None)):
            continue
        printed.add(run_id)
        files = f"{complete - at:8.2f}" if complete is not None else f"{'missing':>8}"
        done = f"{consumed - at:10.2f}" if consumed is not None else f"{'missing':>10}"
        print(f"{number:>4} {files} {done}", flush=True)


def bench_throughput(
    work: Path,
    state: StateDB,
    sink: ContinuousForwarder,
    visible: Visible,
    acked: Acked,
    *,
    rows: int,
    runs: int,
    timeout: float,
) -> None:
    spools = [read_run(state, rows // runs) for _ in range(runs)]
    total = sum(spool.rows for spool in spools)
    size = sum(spool.path.stat().st_size for spool in spools)
    print(
        f"\nthroughput: {human(total)} rows in {runs} runs ({size / MB:.0f} MB of spool, "
        f"{size / total:.0f} B/row), handed off in one send"
    )
    started = time.perf_counter()
    JsonLinesSink(work / "baseline").send(spools)
    baseline = time.perf_counter() - started
    floor_seconds = sum(floor(spool, work / "floor.jsonl") for spool in spools)

    pids = worker_pids(sink)
    cpu = cpu_seconds(pids)
    for spool in spools:
        visible.expect(spool.run_id, spool.rows)
    ids = [spool.run_id for spool in spools]
    with PeakSampler(lambda: {"jvm": rss(jvm_pid(sink))}, interval=0.5) as peaks:
        began = time.monotonic()
        harvest.send(state, sink, spools)
        sent = time.monotonic() - began
        finished = wait_for(
            lambda: all(r in acked.consumed and r in visible.complete for r in ids), timeout
        )
    cpu = cpu_seconds(pids) - cpu if worker_pids(sink) == pids else float("nan")
    if not finished:
        consumed = sum(r in acked.consumed for r in ids)
        print(
            f"NOT DONE within {timeout:.0f} s: {consumed} of {runs} runs consumed, "
            f"{sum(visible.rows[r] for r in ids)} of {total} rows in committed part files; "
            f"problem: {sink.problem()}"
        )
        return
    consumed_at = max(acked.consumed[r] for r in ids) - began
    files_at = max(visible.complete[r] for r in ids) - began
    seconds = max(consumed_at, files_at)
    started = time.perf_counter()
    for spool in spools:
        harvest.commit(state, spool, delivered=False)
    commit = time.perf_counter() - started

    print(f"{'':>28} {'seconds':>8} {'rows/s':>9} {'x baseline':>10}")
    for label, value in (
        ("continuous job", seconds),
        ("JsonLinesSink.send", baseline),
        ("orjson read+write floor", floor_seconds),
    ):
        print(f"{label:>28} {value:8.2f} {total / value:9.0f} {value / baseline:10.1f}")
    print(
        f"continuous: send (log hard links) {sent:.2f} s, all consumed at {consumed_at:.2f} s, "
        f"all rows in committed part files at {files_at:.2f} s; {seconds / floor_seconds:.1f}× "
        f"the floor; worker CPU {cpu:.1f} s"
    )
    hwm = status_field(pid, "VmHWM:") * 1024 if (pid := jvm_pid(sink)) else 0
    print(
        f"JVM peak RSS {peaks.peaks.get('jvm', 0) / MB:.0f} MB (sampled), VmHWM {hwm / MB:.0f} "
        f"MB; state commit of the runs afterwards {commit:.1f} s (not counted)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("latency", "throughput"), help="one part only")
    parser.add_argument("--latency-runs", type=int, default=40)
    parser.add_argument("--rows", type=int, default=1_000_000, help="throughput: rows in all")
    parser.add_argument("--runs", type=int, default=10, help="throughput: runs they come in")
    parser.add_argument(
        "--timeout", type=float, default=600, help="throughput: give up after this many s"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/continuous-bench"))
    parser.add_argument("--parallelism", type=int, default=1, help="flink.parallelism")
    args = parser.parse_args()
    work: Path = args.work_dir
    # A fresh state: checkpoints left by an earlier run would be resumed.
    shutil.rmtree(work, ignore_errors=True)
    logging.basicConfig(level=logging.WARNING)
    settings = config(work, parallelism=args.parallelism)
    with (
        StateDB.open(settings.state.dir, keep_runs=10_000) as state,
        ContinuousForwarder(settings) as sink,
    ):
        sink.validate()
        sink.start()
        tracker = Tracker(state, sink, retention=settings.flink.log_retention)
        with Visible(settings.state.data_dir / "changes") as visible, Acked(tracker) as acked:
            warm_up(state, sink, visible, acked)
            if args.only in (None, "latency"):
                bench_latency(state, sink, visible, acked, args.latency_runs)
            if args.only in (None, "throughput"):
                bench_throughput(
                    work,
                    state,
                    sink,
                    visible,
                    acked,
                    rows=args.rows,
                    runs=args.runs,
                    timeout=args.timeout,
                )


if __name__ == "__main__":
    main()
