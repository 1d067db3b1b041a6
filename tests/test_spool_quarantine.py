"""A bad pending spool is quarantined before it is sent, and each pending spool is sent once per
attempt (issue 14, item 4): real spool files, a real state DB and a JSON-lines sink."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from harvester.cli import main
from harvester.config import Settings
from harvester.daemon import Daemon, HarvestBackend
from harvester.daemon.health import TargetStatus, health_body
from harvester.errors import StateError
from harvester.harvest import commit, harvest_target, pending_spools, read_target, recover, send
from harvester.sinks import JsonLinesSink
from harvester.spool import (
    QUARANTINED,
    BadSpoolError,
    SpoolFile,
    check_spool,
    quarantine,
    quarantine_dir,
    quarantined,
    row_problem,
)
from harvester.state import StateDB
from tests.support.fake_reader import ORIGIN, FakeReader, fake_opener, in_loop


class CountingSink(JsonLinesSink):
    """A JSON-lines sink that records every send and fails while `failing` is set."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.failing = False
        self.calls: list[list[str]] = []

    def send(self, spools: Sequence[SpoolFile]) -> None:
        self.calls.append([spool.run_id for spool in spools])
        if self.failing:
            raise ConnectionError("the sink went away")
        super().send(spools)

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines()]


@pytest.fixture
def sink(settings: Settings) -> CountingSink:
    return CountingSink(settings.state.data_dir / "out")


def _data(count: int = 3) -> dict[str, Any]:
    return {"db": {"s": {n: {"id": n} for n in range(count)}}}


async def _pending(settings: Settings, state: StateDB, data: dict[str, Any]) -> SpoolFile:
    """A run of `app` read into a complete spool and left pending (as after a crash)."""
    return await read_target(
        settings=settings,
        target=settings.target("app"),
        state=state,
        run_id=state.start_run("app"),
        opener=fake_opener(FakeReader(data)),
    )


async def _harvest(
    settings: Settings, state: StateDB, sink: CountingSink, data: dict[str, Any]
) -> Any:
    return await harvest_target(
        settings=settings,
        target=settings.target("app"),
        state=state,
        sink=sink,
        opener=fake_opener(FakeReader(data)),
    )


def _edit_line(spool: SpoolFile, number: int, edit: Any) -> None:
    lines = spool.path.read_bytes().splitlines(keepends=True)
    lines[number - 1] = edit(lines[number - 1])
    spool.path.write_bytes(b"".join(lines))


def _reason(state: StateDB, run_id: str) -> dict[str, Any]:
    folder = quarantine_dir(state.path.parent)
    reason: dict[str, Any] = json.loads((folder / f"{run_id}.reason.json").read_text())
    return reason


@in_loop
async def test_a_row_of_another_run_is_quarantined_before_any_send_and_the_target_goes_on(
    settings: Settings,
    state: StateDB,
    sink: CountingSink,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = await _pending(settings, state, _data())
    other = b'"run_id":"app-20260101T000000000Z-000000"'
    _edit_line(bad, 2, lambda line: line.replace(f'"run_id":"{bad.run_id}"'.encode(), other))

    found = recover(state, sink)
    assert (found.sent, found.unsent, found.lost) == ([], {}, [])
    assert sink.calls == []  # never sent: no row of it reached the sink
    folder = quarantine_dir(settings.state.dir)
    moved = folder / f"{bad.run_id}.jsonl"
    # 3 records and the first run's schema rows (+S of its database and store).
    assert not bad.path.exists() and moved.read_bytes().count(b"\n") == 5
    problem = "line 2: a row of run 'app-20260101T000000000Z-000000', not of run " + bad.run_id
    error = f"{QUARANTINED}: {problem} (moved to {moved})"
    assert found.quarantined == {bad.run_id: error}
    reason = _reason(state, bad.run_id)
    assert (reason["run_id"], reason["target"], reason["rows"]) == (bad.run_id, "app", 5)
    assert (reason["problem"], reason["spool"]) == (problem, moved.name)
    run = state.get_run(bad.run_id)
    assert run is not None and (run.status, run.pending, run.error) == ("failed", False, error)

    assert main(["runs", "--state", str(settings.state.dir), "--format", "table"]) == 0
    assert f"{bad.run_id}: {error}" in capsys.readouterr().out.splitlines()
    assert main(["runs", "--state", str(settings.state.dir), "--format", "json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["status"], listed["error"]) == ("failed", error)

    # The snapshot never took the quarantined rows: the next run's diff sends them again.
    summary = await _harvest(settings, state, sink, _data())
    # The schema history never took the quarantined run either: its +S rows come again.
    assert (summary.run.status, summary.run.inserted, summary.run.rows) == ("committed", 3, 5)
    assert sink.calls == [[summary.run.id]]
    assert [(r["run_id"], r["op"], r["key"]) for r in sink.rows()] == [
        *((summary.run.id, "+I", str(n)) for n in range(3)),
        (summary.run.id, "+S", None),
        (summary.run.id, "+S", None),
    ]
    assert len(list(state.iter_records("app", ORIGIN, "db", "s"))) == 3
    assert moved.exists()  # kept for a person to look at


@in_loop
async def test_a_line_that_is_not_json_is_quarantined(
    settings: Settings, state: StateDB, sink: CountingSink
) -> None:
    bad = await _pending(settings, state, _data())
    _edit_line(bad, 3, lambda line: line[:20] + b"\n")
    found = recover(state, sink)
    assert sink.calls == [] and not found.sent
    problem = "line 3: not JSON: unexpected control character in string at byte 20"
    assert _reason(state, bad.run_id)["problem"] == problem
    assert found.quarantined[bad.run_id].startswith(f"{QUARANTINED}: line 3: not JSON")


@in_loop
async def test_a_truncated_spool_is_quarantined(
    settings: Settings, state: StateDB, sink: CountingSink
) -> None:
    short = await _pending(settings, state, _data())
    lines = short.path.read_bytes().splitlines(keepends=True)
    short.path.write_bytes(b"".join(lines[:2]))  # cut at a line's end: every line is whole
    found = recover(state, sink)
    assert sink.calls == [] and not found.sent
    assert _reason(state, short.run_id)["problem"] == "2 rows, but its run spooled 5"


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": "r",
        "target": "t",
        "origin": ORIGIN,
        "db_name": "db",
        "db_version": 1,
        "store": "s",
        "key": "1",
        "op": "+U",
        "value": '{"id":1}',
        "old_value": '{"id":0}',
        "value_hash": "h",
        "harvested_at": "2026-11-26T15:00:00.123Z",
    }
    row.update(changes)
    return {name: value for name, value in row.items() if value is not ...}


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (_row(), None),
        (_row(op="-D", value=None, value_hash=None), None),
        (_row(op="+I", old_value=None), None),
        ([1], "an array, not an object"),
        (None, "null, not an object"),
        (_row(key=..., extra=1), "missing field(s) key; unknown field(s) extra"),
        (_row(db_version=True), "db_version is not an integer"),
        (_row(db_version="1"), "db_version is not an integer"),
        (_row(key=None), "a +U row without a key"),
        (_row(value=7), "value is not a string"),
        (_row(harvested_at="2026-11-26T15:00:00"), "harvested_at is not an ISO-8601 time"),
        (_row(harvested_at="yesterday"), "harvested_at is not an ISO-8601 time"),
        (_row(run_id="q"), "a row of run 'q', not of run r"),
        (_row(target="u"), "a row of target 'u', not of 't'"),
        (_row(op="+X"), "op '+X' is none of +I, +U, -D, +S, -S"),
        (_row(value_hash=None), "a +U row without a value_hash"),
        (_row(op="+I", value=None), "a +I row without a value"),
        (_row(op="-D", value_hash=None), "a -D row with a value"),
    ],
)
def test_each_kind_of_bad_row_is_named(row: object, problem: str | None) -> None:
    found = row_problem(row, run_id="r", target="t")
    assert found == problem if problem is None else (found or "").startswith(problem)


@in_loop
async def test_a_bad_spool_found_at_commit_is_sent_once_then_quarantined(
    settings: Settings, state: StateDB, sink: CountingSink
) -> None:
    # A spool turned bad after its check (between send and commit): sent, but never again.
    spool = await _pending(settings, state, _data())
    send(state, sink, [spool])
    _edit_line(spool, 1, lambda line: line.replace(b'"op":"+I"', b'"op":"+Q"'))
    with pytest.raises(BadSpoolError, match=f"^{QUARANTINED}: line 1: op '\\+Q'"):
        commit(state, spool)
    run = state.get_run(spool.run_id)
    assert run is not None and run.status == "failed" and not run.pending
    assert list(state.iter_records("app", ORIGIN, "db", "s")) == []  # nothing committed
    assert recover(state, sink).sent == [] and len(sink.calls) == 1


@in_loop
async def test_a_quarantine_a_crash_left_unrecorded_is_recorded_next_time(
    settings: Settings, state: StateDB, sink: CountingSink
) -> None:
    spool = await _pending(settings, state, _data())
    moved = quarantine(spool, "line 1: broken", quarantine_dir(settings.state.dir))
    # The process died before the state DB heard of it: the run is still pending.
    assert [run.id for run in state.pending_runs()] == [spool.run_id]
    found = recover(state, sink)
    assert found.quarantined == {spool.run_id: moved.error} and found.lost == []
    run = state.get_run(spool.run_id)
    assert run is not None and run.error == moved.error and not run.pending


@in_loop
async def test_a_good_spool_passes_the_check(settings: Settings, state: StateDB) -> None:
    spool = await _pending(settings, state, {"db": {"s": {}, "t": {1: {"id": 1}}}})
    check_spool(spool)
    assert pending_spools(state) == [spool]


@in_loop
async def test_each_pending_spool_is_sent_once_per_attempt(
    settings: Settings, state: StateDB, sink: CountingSink
) -> None:
    # Attempt 1 (as `harvester harvest` runs): its read's send fails; the spool stays pending.
    sink.failing = True
    first = await _harvest(settings, state, sink, _data())
    assert first.run.pending and sink.calls == [[first.run.id]]

    # Attempt 2: recovery sends it, fails again; the target is not read nor sent again.
    found = recover(state, sink)
    assert list(found.unsent) == [first.run.id]
    with pytest.raises(StateError, match=f"run {first.run.id} is still pending"):
        await _harvest(settings, state, sink, _data())
    assert sink.calls == [[first.run.id]] * 2
    assert len(state.list_runs()) == 1

    # Attempt 3: recovery sends it once and it commits; the new read's spool goes alone.
    sink.failing = False
    assert recover(state, sink).sent == [first.run.id]
    second = await _harvest(settings, state, sink, _data(4))
    assert second.run.status == "committed" and second.run.inserted == 1
    assert sink.calls == [[first.run.id]] * 3 + [[second.run.id]]
    records = [r["run_id"] for r in sink.rows() if r["op"] not in ("+S", "-S")]
    assert records == [first.run.id] * 3 + [second.run.id]


@in_loop
async def test_healthz_reports_each_targets_quarantined_spools(
    settings: Settings, state: StateDB, sink: CountingSink
) -> None:
    older = await _pending(settings, state, _data())
    _edit_line(older, 1, lambda line: line.replace(b'"target":"app"', b'"target":"shop"'))
    recover(state, sink)
    newer = await _pending(settings, state, _data())
    newer.path.write_bytes(b"")
    recover(state, sink)
    found = quarantined(quarantine_dir(settings.state.dir))
    assert [q.run_id for q in found] == [older.run_id, newer.run_id]

    targets = {"app": TargetStatus(), "quiet": TargetStatus()}
    ok, body = health_body(
        targets,
        scheduling=True,
        writable=True,
        next_run=lambda _name: None,
        unhealthy_after=3,
        redact=lambda text: text.replace("spooled", "****"),
        quarantined=found,
    )
    app, quiet = body["targets"]["app"], body["targets"]["quiet"]
    assert ok and app["healthy"] and app["quarantined"] == 2
    assert app["last_quarantined"] == {
        "run_id": newer.run_id,
        "at": found[-1].at,
        "reason": "0 rows, but its run **** 5",
    }
    assert (quiet["quarantined"], quiet["last_quarantined"]) == (0, None)
    # The daemon finds them in its config's state folder.
    daemon = Daemon(settings, HarvestBackend(settings, state, sink), serve_http=False)
    daemon.status["app"] = TargetStatus()
    assert daemon.health()[1]["targets"]["app"]["quarantined"] == 2
    # A spool a person removed from the quarantine folder is reported no more.
    found[0].path.unlink()
    assert [q.run_id for q in quarantined(quarantine_dir(settings.state.dir))] == [newer.run_id]
