"""Delivery in the state DB: hand-off to the changelog log, acknowledgements, lag, retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from harvester.errors import StateError
from harvester.state import StateDB, TargetDelivery
from tests.support.fake_reader import ORIGIN, FakeReader, capture_run, in_loop


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDB]:
    db = StateDB.open(tmp_path / "state")
    yield db
    db.close()


def _read(state: StateDB, target: str, rows: int) -> str:
    """A run of `target` whose spool of `rows` rows waits to be sent (the rows themselves are
    not needed: the commit applies none)."""
    run_id = state.start_run(target)
    state.mark_read(run_id, origin=ORIGIN, stores=[], rows=rows)
    return run_id


def _logged(state: StateDB, target: str, rows: int) -> str:
    """A run handed off to the log and committed, as the log sink does it."""
    run_id = _read(state, target, rows)
    state.hand_off(run_id)
    assert state.commit_run(run_id, [], delivered=False)
    return run_id


def test_hand_off_numbers_runs_once_in_hand_off_order(state: StateDB) -> None:
    first, second, other = _read(state, "app", 3), _read(state, "app", 2), _read(state, "b", 1)
    assert [state.hand_off(first), state.hand_off(first)] == [1, 1]
    handed = state.get_run(first)
    assert handed is not None and handed.log_seq == 1 and handed.handed_off_at is not None
    assert [state.hand_off(other), state.hand_off(second)] == [2, 3]
    assert state.commit_run(first, [], delivered=False)
    assert state.hand_off(first) == 1
    again = state.get_run(first)
    assert again is not None and (again.log_seq, again.handed_off_at) == (1, handed.handed_off_at)
    with pytest.raises(StateError, match="no run 'nope'"):
        state.hand_off("nope")
    running = state.start_run("app")
    with pytest.raises(StateError, match="has no spool to hand off"):
        state.hand_off(running)


def test_a_delivered_commit_is_consumed_a_logged_one_waits(state: StateDB) -> None:
    sent = _read(state, "app", 4)
    assert state.commit_run(sent, [])
    run = state.get_run(sent)
    assert run is not None and run.finished_at is not None
    assert (run.consumed_at, run.consumed_rows, run.log_seq) == (run.finished_at, 4, None)

    logged = _logged(state, "app", 5)
    run = state.get_run(logged)
    assert run is not None and (run.consumed_at, run.consumed_rows) == (None, 0)
    assert [r.id for r in state.undelivered()] == [logged]

    # Nothing to deliver: consumed at commit whatever the sink.
    empty = _logged(state, "app", 0)
    run = state.get_run(empty)
    assert run is not None and run.consumed_at == run.finished_at
    assert [r.id for r in state.undelivered()] == [logged]


def test_mark_consumed_keeps_the_highest_count_and_says_what_became_consumed(
    state: StateDB,
) -> None:
    run_id = _logged(state, "app", 10)
    assert state.mark_consumed({run_id: 4}) == []
    assert state.mark_consumed({run_id: 4}) == []
    assert state.mark_consumed({run_id: 2}) == []  # an older count, read again
    run = state.get_run(run_id)
    assert run is not None and (run.consumed_rows, run.consumed_at) == (4, None)
    assert state.mark_consumed({run_id: 10, "another-harvesters-run": 3}) == [run_id]
    run = state.get_run(run_id)
    assert run is not None and run.consumed_rows == 10 and run.consumed_at is not None
    assert state.mark_consumed({run_id: 10}) == []
    assert state.get_run(run_id) == run
    assert state.undelivered() == []
    assert state.get_run("another-harvesters-run") is None


def test_mark_consumed_ignores_runs_never_handed_off_and_returns_log_order(
    state: StateDB,
) -> None:
    sent = _read(state, "app", 3)
    first, second = _logged(state, "b", 2), _logged(state, "c", 2)
    assert state.mark_consumed({sent: 3}) == []
    run = state.get_run(sent)
    assert run is not None and run.consumed_rows == 0
    assert state.mark_consumed({second: 2, first: 5}) == [first, second]


def test_an_acknowledgement_before_the_commit_is_kept(state: StateDB) -> None:
    run_id = _read(state, "app", 3)
    state.hand_off(run_id)
    assert state.mark_consumed({run_id: 3}) == [run_id]
    before = state.get_run(run_id)
    assert state.commit_run(run_id, [], delivered=False)
    run = state.get_run(run_id)
    assert before is not None and run is not None
    assert (run.status, run.consumed_at, run.consumed_rows) == ("committed", before.consumed_at, 3)


def test_undelivered_is_oldest_first_and_by_target(state: StateDB) -> None:
    first, other, second = (
        _logged(state, "app", 1),
        _logged(state, "b", 1),
        _logged(state, "app", 1),
    )
    pending = _read(state, "app", 1)
    state.hand_off(pending)  # handed off, not committed yet: not counted
    assert [r.id for r in state.undelivered()] == [first, other, second]
    assert [r.id for r in state.undelivered("app")] == [first, second]
    state.mark_consumed({first: 1})
    assert [r.id for r in state.undelivered("app")] == [second]


def test_delivery_counts_and_lag_per_target(state: StateDB) -> None:
    old, new = _logged(state, "app", 2), _logged(state, "app", 2)
    done = _logged(state, "b", 1)
    state.mark_consumed({done: 1})
    sent = _read(state, "c", 1)
    assert state.commit_run(sent, [])
    waiting = state.get_run(old)
    assert waiting is not None and waiting.handed_off_at is not None
    now = waiting.handed_off_at + timedelta(seconds=12)
    assert state.delivery(now) == [
        TargetDelivery("app", 2, 0, waiting.handed_off_at, 12.0),
        TargetDelivery("b", 1, 1, None, 0.0),
        TargetDelivery("c", 0, 0, None, 0.0),
    ]
    state.mark_consumed({old: 2})
    (app, *_) = state.delivery(now)
    newer = state.get_run(new)
    assert newer is not None and app.waiting_since == newer.handed_off_at
    assert (app.handed_off, app.consumed) == (2, 1)
    # A clock that went back never makes a negative lag.
    assert state.delivery(now - timedelta(days=1))[0].lag_seconds == 0.0


@in_loop
async def test_retention_keeps_every_run_from_the_oldest_not_consumed(tmp_path: Path) -> None:
    data = {"db": {"s": {0: {"id": 0, "v": "v"}}}}
    with StateDB.open(tmp_path / "state", keep_runs=2) as state:
        runs = []
        for n in range(5):
            data["db"]["s"][0]["v"] = f"v{n}"
            run_id, rows, _ = await capture_run(state, FakeReader(data), commit=False)
            if n == 1:
                state.hand_off(run_id)  # the one run the consumer has not taken yet
            assert state.commit_run(run_id, rows, delivered=n != 1)
            runs.append(run_id)
        assert [r.id for r in state.list_runs(target="app")] == runs[:0:-1]
        # Its history is whole from it on: the store as it left it can be rebuilt.
        (then,) = state.iter_records("app", ORIGIN, "db", "s", as_of=runs[1])
        assert then.value == '{"id":0,"v":"v1"}'
        state.mark_consumed({runs[1]: 1})
        data["db"]["s"][0]["v"] = "last"
        last, _, _ = await capture_run(state, FakeReader(data))
        assert [r.id for r in state.list_runs(target="app")] == [last, runs[4]]
