"""The changelog log's folder, without Flink: hand-offs are idempotent, consumed files move out
of the job's sight and come back for a reset, old ones retire, acks are read as the job writes
them."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import orjson

from harvester import harvest
from harvester.delivery import Tracker, Waited
from harvester.sinks import ChangeSink
from harvester.sinks.log import ChangeLog, log_name
from harvester.spool import SpoolFile
from harvester.state import StateDB
from tests.support.flink import change, write_spool


def _ack(run_id: str, rows: int, *, retract: bool = False) -> bytes:
    image = {"run_id": run_id, "rows": rows}
    change_ = (
        {"before": image, "after": None, "op": "d"}
        if retract
        else {
            "before": None,
            "after": image,
            "op": "c",
        }
    )
    return orjson.dumps(change_) + b"\n"


def test_a_run_is_handed_off_once_whatever_happens_to_its_file(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "log")
    spool = write_spool(tmp_path / "spool", "shop-1", "shop", [change(1, "+I", "a")])
    path = log.append(spool, 7)
    assert path.name == log_name(7, "shop-1") == "000000000007-shop-1.jsonl"
    assert path.read_bytes() == spool.path.read_bytes()
    assert log.append(spool, 7) == path  # sent again after a crash: nothing new
    assert log.top_seq() == 7

    log.set_aside(["shop-1", "someone-else"])
    assert list(log.files()) == []
    assert [item.run_id for item in log.files(consumed=True)] == ["shop-1"]
    log.append(spool, 7)  # a consumed run sent again is not read again
    assert list(log.files()) == []

    assert log.replay() == 1
    assert [(item.seq, item.run_id) for item in log.files()] == [(7, "shop-1")]


def test_consumed_files_retire_after_the_retention(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "log")
    for number in (1, 2):
        spool = write_spool(tmp_path / "spool", f"r{number}", "shop", [change(1, "+I", "a")])
        log.append(spool, number)
    log.set_aside(["r1", "r2"])
    old = time.time() - 3600
    os.utime(log.consumed_dir / log_name(1, "r1"), (old, old))
    assert log.retire(older_than=time.time() - 60) == 1
    assert [item.run_id for item in log.files(consumed=True)] == ["r2"]


def test_acks_are_the_highest_count_per_run_in_committed_files(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "log")
    log.prepare()
    (log.acks_dir / "part-a-0-0").write_bytes(
        _ack("r1", 2) + _ack("r1", 2, retract=True) + _ack("r1", 5) + _ack("r2", 1)
    )
    (log.acks_dir / "part-b-0-1").write_bytes(b"not json\n" + _ack("r2", 3))
    (log.acks_dir / ".part-c-0-2.inprogress").write_bytes(_ack("r3", 9))
    acks = log.read_acks()
    assert acks.rows == {"r1": 5, "r2": 3}
    assert sorted((path.name, runs) for path, runs in acks.files) == [
        ("part-a-0-0", frozenset({"r1", "r2"})),
        ("part-b-0-1", frozenset({"r2"})),
    ]
    log.remove_acks(path for path, _ in acks.files)
    assert log.read_acks().rows == {}


class _LogSink(ChangeSink):
    """A sink with a log and no consumer: the test writes the acks and counts checkpoints."""

    def __init__(self, log: ChangeLog) -> None:
        self.changelog = log
        self.checkpoints = 5

    def send(self, spools: Sequence[SpoolFile]) -> None:
        pass

    def committed_marker(self) -> int:
        return self.checkpoints


def _handed_off(state: StateDB, sink: ChangeSink) -> str:
    """A read run of 3 inserts, handed off to `sink`'s log and committed; its id."""
    run_id = state.start_run("shop")
    spool = write_spool(state.spool_dir, run_id, "shop", [change(k, "+I", k) for k in range(3)])
    state.mark_read(run_id, origin="http://127.0.0.1:1", stores=[], rows=3, problems=[])
    harvest.send(state, sink, [spool])
    harvest.commit(state, spool, delivered=False)
    return run_id


def test_the_tracker_records_acks_and_sets_consumed_files_aside(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "log")
    sink = _LogSink(log)
    with StateDB.open(tmp_path / "state") as state:
        run_id = _handed_off(state, sink)
        tracker = Tracker(state, sink, retention=timedelta(days=7))

        assert tracker.wait(sink, 0.5) == Waited((run_id,), None)
        (log.acks_dir / "part-x-0-0").write_bytes(_ack(run_id, 2))
        assert tracker.track() == []  # 2 of 3 rows: not yet
        (log.acks_dir / "part-x-0-1").write_bytes(_ack(run_id, 3))
        # Committed in every sink only once a later checkpoint was seen after the ack.
        assert tracker.track() == []
        assert tracker.track() == []
        sink.checkpoints += 1
        assert tracker.track() == [run_id]
        assert tracker.wait(sink, 0.5) == Waited((), None)
        assert list(log.files()) == [] and len(list(log.files(consumed=True))) == 1
        assert list(log.acks_dir.iterdir()) == []
        run = state.get_run(run_id)
        assert run is not None and run.consumed_rows == 3 and run.consumed_at is not None


class _MeetingSink(_LogSink):
    """Holds each `committed_marker` call until a second tracker thread gets there too (or 2 s
    passed): both then decide on the same acks, as the daemon's loop and its shutdown can."""

    def __init__(self, log: ChangeLog) -> None:
        super().__init__(log)
        self.meeting = threading.Barrier(2)

    def committed_marker(self) -> int:
        with contextlib.suppress(threading.BrokenBarrierError):
            self.meeting.wait(timeout=2)
        return self.checkpoints


def test_two_threads_tracking_at_once_record_each_run_once(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "log")
    sink = _MeetingSink(log)
    with StateDB.open(tmp_path / "state") as state:
        run_id = _handed_off(state, sink)
        tracker = Tracker(state, sink, retention=timedelta(days=7))
        (log.acks_dir / "part-x-0-0").write_bytes(_ack(run_id, 3))
        tracker.track()  # seen at this checkpoint; recorded once a later one is seen
        sink.checkpoints += 1
        consumed: list[str] = []
        failures: list[BaseException] = []

        def track() -> None:
            try:
                consumed.extend(tracker.track())
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=track) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert consumed == [run_id]
