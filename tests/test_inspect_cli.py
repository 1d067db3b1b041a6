"""The inspection commands' json output, field by field, over a state DB written by state.py."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harvester.cli import main
from harvester.codec import canonical, value_hash
from harvester.commands.runs import delivered
from harvester.errors import StateError
from harvester.inspect.diff import FieldChange
from harvester.inspect.queries import StateReader
from harvester.state import SCHEMA_VERSION, StateDB
from tests.support.inspect_data import (
    FIRST,
    ORIGIN,
    SECOND,
    TARGET,
    XSS,
    commit_records,
    user,
)


@pytest.fixture
def state_dir(tmp_path: Path) -> tuple[Path, list[str]]:
    folder = tmp_path / "state"
    with StateDB.open(folder) as state:
        runs = [commit_records(state, FIRST, {}), commit_records(state, SECOND, FIRST)]
    return folder, runs


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_runs(state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    folder, (first, second) = state_dir
    runs = run_json(capsys, "runs", "--state", str(folder))
    assert [r["id"] for r in runs] == [second, first]
    assert [(r["inserted"], r["updated"], r["deleted"], r["unchanged"]) for r in runs] == [
        (1, 2, 1, 4),
        (7, 0, 0, 0),
    ]
    assert {r["status"] for r in runs} == {"committed"}
    assert all(r["duration_s"] >= 0 and r["target"] == TARGET for r in runs)
    assert run_json(capsys, "runs", "--state", str(folder), "--limit", "1")[0]["id"] == second


def _logged_run(folder: Path, rows: int) -> str:
    """A run handed off to the changelog log and committed, its rows not acknowledged yet."""
    with StateDB.open(folder) as state:
        run_id = state.start_run(TARGET)
        state.mark_read(run_id, origin=ORIGIN, stores=[], rows=rows)
        state.hand_off(run_id)
        assert state.commit_run(run_id, [], delivered=False)
    return run_id


def test_runs_show_delivery(
    state_dir: tuple[Path, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, (first, second) = state_dir
    logged = _logged_run(folder, 3)
    with StateDB.open(folder) as state:
        failed = state.start_run(TARGET)
        state.fail_run(failed, "page error")
    by_id = {r["id"]: r for r in run_json(capsys, "runs", "--state", str(folder))}
    waiting, sent = by_id[logged], by_id[second]
    assert (waiting["log_seq"], waiting["consumed_at"], waiting["consumed_rows"]) == (1, None, 0)
    assert datetime.fromisoformat(waiting["handed_off_at"]) <= datetime.now(UTC)
    assert (sent["log_seq"], sent["handed_off_at"], sent["consumed_rows"]) == (None, None, 4)
    assert sent["consumed_at"] == sent["finished_at"] and "delivered" not in sent

    monkeypatch.setenv("COLUMNS", "300")
    assert main(["runs", "--state", str(folder), "--format", "table", "--wide"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "delivered" in lines[2] and "handed off" in lines[2] and "consumed rows" in lines[2]
    cells = {run_id: next(line for line in lines if run_id in line) for run_id in by_id}
    assert "│ ✓ " in cells[first] and "│ ✓ " in cells[second]
    assert re.search(r"│ waiting \d+s ", cells[logged])
    assert "│ — " in cells[failed]

    assert main(["runs", "--state", str(folder), "--format", "csv"]) == 0
    table = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert {row["id"]: row["delivered"] for row in table}[second] == "✓"
    assert {"log_seq", "handed_off_at", "consumed_at", "consumed_rows"} <= set(table[0])


def test_the_delivery_cell_says_how_long_a_run_has_waited(
    state_dir: tuple[Path, list[str]],
) -> None:
    folder, (first, _second) = state_dir
    logged = _logged_run(folder, 3)
    empty = _logged_run(folder, 0)
    with StateReader(folder) as reader:
        run, done, nothing = reader.run(logged), reader.run(first), reader.run(empty)
    assert run.handed_off_at is not None
    at = run.handed_off_at
    ages = [timedelta(seconds=s) for s in (-5, 12, 59, 60, 3599, 3600, 47 * 3600, 49 * 3600)]
    assert [delivered(run, at + age) for age in ages] == [
        "waiting 0s",
        "waiting 12s",
        "waiting 59s",
        "waiting 1m",
        "waiting 59m",
        "waiting 1h",
        "waiting 47h",
        "waiting 2d",
    ]
    assert (delivered(done, at), delivered(nothing, at)) == ("✓", "—")
    # Committed for the log, but never handed off (no time to count from): it waits all the same.
    unsent = dataclasses.replace(run, handed_off_at=None, log_seq=None)
    assert delivered(unsent, at) == "waiting"


def test_stores_with_schema(
    state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, (first, second) = state_dir
    orders, users = run_json(capsys, "stores", "--state", str(folder), "--target", TARGET)
    assert (users["target"], users["origin"], users["db"], users["store"]) == (
        TARGET,
        ORIGIN,
        "shopdb",
        "users",
    )
    assert (users["db_version"], users["key_path"], users["auto_increment"]) == (3, "id", False)
    assert users["indexes"] == [
        {"name": "by_name", "key_path": "name", "unique": False, "multi_entry": False}
    ]
    assert users["records"] == 5
    assert (users["first_run"], users["last_run"], users["last_changed_run"]) == (
        first,
        second,
        second,
    )
    assert orders["last_changed_run"] == first and orders["records"] == 2
    assert users["schema"] == {
        "sampled": 5,
        "value_types": {"object": 5},
        "fields": [
            {"field": "id", "count": 5, "frequency": 1.0, "types": {"number": 5}},
            {"field": "name", "count": 5, "frequency": 1.0, "types": {"string": 5}},
            {"field": "tags", "count": 5, "frequency": 1.0, "types": {"array": 5}},
            {"field": "email", "count": 1, "frequency": 0.2, "types": {"string": 1}},
        ],
    }


def test_show(state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    folder, (first, second) = state_dir
    base = ["show", TARGET, "shopdb", "users", "--state", str(folder)]
    records = run_json(capsys, *base)
    assert [r["key"] for r in records] == [1, 2, 3, 5, 6]
    three = records[2]
    assert three["value"] == {
        "email": "three@example.com",
        "id": 3,
        "name": "user three",
        "tags": ["a"],
    }
    assert three["key_text"] == "3"
    assert three["value_hash"] == value_hash(canonical(SECOND["users"][3]))
    assert (three["first_seen_run"], three["last_changed_run"]) == (first, second)
    assert [r["key"] for r in run_json(capsys, *base, "--key", "5")] == [5]
    assert [r["key"] for r in run_json(capsys, *base, "--where", "name=user three")] == [3]
    assert [r["key"] for r in run_json(capsys, *base, "--where", 'tags=["a"]', "--limit", "2")] == [
        1,
        2,
    ]
    # As of the first run: 4 is back, 6 is not there yet; 3 and 5 changed since (by hash).
    old = run_json(capsys, *base, "--run", first)
    assert sorted(r["key"] for r in old) == [1, 2, 3, 4, 5]
    by_key = {r["key"]: r for r in old}
    assert by_key[1]["value"] == user(1)
    assert by_key[3]["value_hash"] == value_hash(canonical(user(3)))


def test_diff(state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    folder, (first, second) = state_dir
    result = run_json(capsys, "diff", first, second, "--state", str(folder))
    assert (
        run_json(capsys, "diff", "--target", TARGET, "--last", "2", "--state", str(folder))
        == result
    )
    assert (result["target"], result["from_run"], result["to_run"]) == (TARGET, first, second)
    (users,) = result["stores"]
    assert (users["db"], users["store"]) == ("shopdb", "users")
    assert users["counts"] == {"added": 1, "changed": 2, "removed": 1}
    (added,) = users["added"]
    assert (added["key"], added["new_value"]) == (6, user(6))
    (removed,) = users["removed"]
    assert (removed["key"], removed["old_hash"]) == (4, value_hash(canonical(user(4))))
    assert [c["key"] for c in users["changed"]] == [3, 5]
    assert [c["new_value"] for c in users["changed"]] == [SECOND["users"][3], SECOND["users"][5]]


def test_export_jsonl_and_csv(state_dir: tuple[Path, list[str]], tmp_path: Path) -> None:
    folder, (first, _second) = state_dir
    out = tmp_path / "users.jsonl"
    argv = ["export", TARGET, "--store", "users", "--state", str(folder)]
    assert main([*argv, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["key"], r["value"]) for r in lines] == [(k, v) for k, v in SECOND["users"].items()]
    assert lines[0] == {
        "target": TARGET,
        "origin": ORIGIN,
        "db": "shopdb",
        "store": "users",
        "key": 1,
        "value": user(1),
        "value_hash": value_hash(canonical(user(1))),
        "first_seen_run": first,
        "last_changed_run": first,
    }
    out_csv = tmp_path / "all.csv"
    assert main(["export", TARGET, "--state", str(folder), "--out", str(out_csv)]) == 0
    with out_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        *("target", "origin", "db", "store", "key"),
        *("value.id", "value.note", "value.name", "value.tags", "value.email"),
    ]
    by_key = {(r["store"], r["key"]): r for r in rows}
    assert len(rows) == 7
    assert by_key[("orders", "o-1")]["value.note"] == XSS[0]
    three = by_key[("users", "3")]
    assert (three["value.id"], three["value.name"], three["value.tags"]) == (
        "3",
        "user three",
        '["a"]',
    )
    assert (
        three["value.email"] == "three@example.com" and by_key[("users", "1")]["value.email"] == ""
    )
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runs", "--target", "nope"], "unknown target 'nope'; known: 'shop'"),
        (["runs", "--status", "odd"], "unknown status 'odd'; known: 'running', 'read'"),
        (["stores", "--target", "nope"], "unknown target 'nope'; known: 'shop'"),
        (["show", "nope", "shopdb", "users"], "unknown target 'nope'; known: 'shop'"),
        (
            ["show", TARGET, "nodb", "users"],
            "unknown database 'nodb' of target 'shop'; known: 'shopdb'",
        ),
        (
            ["show", TARGET, "shopdb", "x"],
            "unknown store 'x' in database 'shopdb' of target 'shop'; known: 'orders', 'users'",
        ),
        (
            ["show", TARGET, "shopdb", "users", "--run", "r-x"],
            "unknown run 'r-x' (newest listed first); known: ",
        ),
        (["diff", "r-x", "r-y"], "unknown run 'r-x'"),
        (["show", "--run", "FAILED", TARGET, "shopdb", "users"], "unknown committed run 'FAILED'"),
        (["diff", "--target", "nope", "--last", "2"], "unknown target 'nope'"),
        (
            ["diff", "--target", TARGET, "--last", "3"],
            "has 2 committed runs kept, fewer than --last 3",
        ),
        (["export", "nope", "--out", "x.jsonl"], "unknown target 'nope'"),
        (["export", TARGET, "--out", "/nonexistent/x.csv"], "cannot write /nonexistent/x.csv"),
        (["report", "--out", "/nonexistent/r.html"], "cannot write /nonexistent/r.html"),
        (
            ["export", TARGET, "--store", "x", "--out", "x.jsonl"],
            "unknown store 'x' for target 'shop'; known (as DB/STORE, or the store name alone): "
            "shopdb/orders, shopdb/users",
        ),
    ],
)
def test_bad_input_exits_2_listing_what_exists(
    state_dir: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    folder, _runs = state_dir
    with StateDB.open(folder) as state:
        failed = state.start_run(TARGET)
        state.fail_run(failed, "boom")
    argv = [failed if arg == "FAILED" else arg for arg in argv]
    message = message.replace("FAILED", failed)
    assert main([*argv, "--state", str(folder)]) == 2
    assert message in capsys.readouterr().err


def test_run_changes_counts_all_and_lists_up_to_the_limit(
    state_dir: tuple[Path, list[str]],
) -> None:
    folder, (_first, second) = state_dir
    with StateReader(folder) as reader:
        users = reader.store(TARGET, "shopdb", "users")
        diff = reader.run_changes(second, users, limit=1)
    assert diff.counts() == {"added": 1, "changed": 2, "removed": 1}
    assert [r.key for r in diff.changed] == ["3"]
    assert diff.unlisted == {"added": 0, "changed": 1, "removed": 0}


def test_diff_is_field_by_field_between_past_runs(
    state_dir: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The history keeps replaced values (`changes.old_value`), so diffs name each field, also
    between past runs whose values the snapshot no longer holds."""
    folder, (first, second) = state_dir
    third_data = {**SECOND, "users": {**SECOND["users"], 3: user(3, name="user 3c")}}
    with StateDB.open(folder) as state:
        commit_records(state, third_data, SECOND)
    result = run_json(capsys, "diff", first, second, "--state", str(folder))
    (users,) = result["stores"]
    three, five = users["changed"]
    assert three["fields"] == [
        {"field": "name", "old": '"user 3"', "new": '"user three"'},
        {"field": "email", "old": None, "new": '"three@example.com"'},
    ]
    assert five["fields"] == [{"field": "tags", "old": '["a"]', "new": '["a", "b"]'}]
    assert (three["old_value"], three["new_value"]) == (user(3), SECOND["users"][3])
    (removed,) = users["removed"]
    assert removed["old_value"] == user(4)
    with StateReader(folder) as reader:
        store = reader.store(TARGET, "shopdb", "users")
        latest = reader.run_changes(second, store, limit=10)
    assert [r.fields for r in latest.changed][1] == (FieldChange("tags", '["a"]', '["a", "b"]'),)
    # `show --run` gets past values from the history too.
    show = ["show", TARGET, "shopdb", "users", "--state", str(folder), "--run", second]
    assert {r["key"]: r["value"] for r in run_json(capsys, *show)} == SECOND["users"]


def test_the_schema_version_is_checked_whatever_the_file_is_called(
    state_dir: tuple[Path, list[str]], tmp_path: Path
) -> None:
    folder, _runs = state_dir
    copy = tmp_path / "backup.sqlite"
    shutil.copyfile(folder / "state.db", copy)
    with StateReader(copy) as reader:
        assert reader.targets() == [TARGET]
    conn = sqlite3.connect(copy)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with pytest.raises(
        StateError, match=f"has schema version 1, this harvester reads {SCHEMA_VERSION}"
    ):
        StateReader(copy)
    assert main(["runs", "--state", str(copy)]) == StateError.exit_code


def test_export_to_dash_writes_stdout_not_a_file(
    state_dir: tuple[Path, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _runs = state_dir
    monkeypatch.chdir(tmp_path)
    assert main(["export", TARGET, "--store", "users", "--state", str(folder), "--out", "-"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["key"] for r in lines] == list(SECOND["users"])
    assert "exported 5 records to stdout" in captured.err
    assert not (tmp_path / "-").exists() and not list(tmp_path.glob("-*"))
    assert main(["export", TARGET, "--state", str(folder), "--out", "-", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("target,origin,db,store,key,value.")


def test_export_takes_a_store_alone_or_as_db_slash_store(
    state_dir: tuple[Path, list[str]], tmp_path: Path
) -> None:
    folder, _runs = state_dir
    exported = {}
    for name in ("users", "shopdb/users"):
        out = tmp_path / f"{name.replace('/', '_')}.jsonl"
        assert (
            main(["export", TARGET, "--store", name, "--state", str(folder), "--out", str(out)])
            == 0
        )
        exported[name] = [json.loads(line)["key"] for line in out.read_text().splitlines()]
    assert exported["users"] == exported["shopdb/users"] == list(SECOND["users"])
    # The forms mix; another database's name for the store is still unknown.
    both = tmp_path / "both.jsonl"
    argv = ["export", TARGET, "--state", str(folder), "--out", str(both)]
    assert main([*argv, "--store", "shopdb/orders", "--store", "users"]) == 0
    assert {json.loads(line)["store"] for line in both.read_text().splitlines()} == {
        "orders",
        "users",
    }
    assert main([*argv, "--store", "otherdb/users"]) == 2


def _state_with_typed_values(folder: Path) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    value = {"id": 1, "at": at, "meta": {"tags": ["a", "b"], "seen": at}, "note": "two\nlines"}
    with StateDB.open(folder) as state:
        commit_records(state, {"events": {at: value}}, {})


def test_csv_cells_are_flat_with_dates_as_iso_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "state"
    _state_with_typed_values(folder)
    iso = "2026-01-02T03:04:05.678Z"

    assert (
        main(["show", TARGET, "shopdb", "events", "--state", str(folder), "--format", "csv"]) == 0
    )
    (row,) = list(csv.DictReader(capsys.readouterr().out.splitlines(keepends=True)))
    assert row["key"] == iso
    assert row["value"] == (
        '{"at":{"$date":"2026-01-02T03:04:05.678Z"},"id":1,'
        '"meta":{"seen":{"$date":"2026-01-02T03:04:05.678Z"},"tags":["a","b"]},'
        '"note":"two\\nlines"}'
    )

    out = tmp_path / "events.csv"
    assert main(["export", TARGET, "--state", str(folder), "--out", str(out)]) == 0
    with out.open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["key"], row["value.at"], row["value.id"]) == (iso, iso, "1")
    assert row["value.meta"] == '{"seen":{"$date":"2026-01-02T03:04:05.678Z"},"tags":["a","b"]}'
    # A harvested string is data: it keeps its newline (CSV quotes it).
    assert row["value.note"] == "two\nlines"

    # The table and JSON forms are as they were: pretty, and lossless typed JSON.
    base = ["show", TARGET, "shopdb", "events", "--state", str(folder), "--format"]
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that no cell is folded
    assert main([*base, "table"]) == 0
    table = capsys.readouterr().out
    assert f"Date({iso})" in table and '"tags": [' in table
    (record,) = run_json(capsys, *base[:-1])
    assert record["value"]["at"] == {"$date": iso} and "\n" in record["value_text"]


def test_runs_fit_one_line_each_at_80_columns_and_wide_shows_every_field(
    state_dir: tuple[Path, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, runs = state_dir
    with StateDB.open(folder) as state:
        failed = state.start_run(TARGET)
        state.fail_run(failed, "net::ERR_CONNECTION_REFUSED at http://127.0.0.1:9/ " + "x" * 80)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["runs", "--state", str(folder), "--format", "table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    # Title, top, header, rule, a line per run, bottom: no run wraps, and each id is whole.
    assert len(lines) == 5 + 3
    for run_id in (failed, *runs):
        assert sum(run_id in line for line in lines) == 1
    assert "1/2/1" in next(line for line in lines if runs[1] in line)
    assert "net::" in next(line for line in lines if failed in line)

    assert main(["runs", "--state", str(folder), "--format", "table", "--wide"]) == 0
    wide = capsys.readouterr().out.splitlines()
    assert len(wide) == 5 + 3 and len(wide[1]) > 80
    for title in ("target", "started", "finished", "unchanged", "incomplete stores", "problems"):
        assert title in wide[2]
    assert "x" * 80 in next(line for line in wide if failed in line)

    assert main(["runs", "--state", str(folder), "--format", "csv"]) == 0
    header = next(csv.reader(capsys.readouterr().out.splitlines()))
    assert header[:3] == ["id", "target", "status"] and "incomplete_stores" in header


def test_diff_csv_cells_are_flat_typed_nodes_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "state"
    before = datetime(2026, 1, 2, tzinfo=UTC)
    after = datetime(2026, 2, 3, tzinfo=UTC)
    old = {"id": 1, "at": before, "a.b": {"c": 1}, "n": None, "gone": [1, 2]}
    new = {"id": 1, "at": after, "a.b": {"c": 2}, "n": "x"}
    one = {"events": {1: old, 2: {"id": 2}}}
    with StateDB.open(folder) as state:
        first = commit_records(state, one, {})
        second = commit_records(state, {"events": {1: new, 3: {"id": 3, "at": after}}}, one)
    assert main(["diff", first, second, "--state", str(folder), "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines(keepends=True)))
    cells = {(r["op"], r["key"], r["field"]): (r["old"], r["new"]) for r in rows}
    assert cells == {
        ("changed", "1", "at"): ("2026-01-02T00:00:00.000Z", "2026-02-03T00:00:00.000Z"),
        ("changed", "1", "a.b.c"): ("1", "2"),
        ("changed", "1", "n"): ("null", "x"),
        ("changed", "1", "gone"): ("[1,2]", ""),
        ("added", "3", ""): ("", '{"at":{"$date":"2026-02-03T00:00:00.000Z"},"id":3}'),
        ("removed", "2", ""): ('{"id":2}', ""),
    }


@pytest.mark.parametrize(
    "argv", [["runs"], ["stores"], ["diff", "--target", TARGET, "--last", "2"]]
)
def test_output_into_a_closed_pipe_ends_quietly(
    state_dir: tuple[Path, list[str]],
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `harvester … --format csv | head`: the reader has gone before we write.
    folder, _runs = state_dir
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        code = main([*argv, "--state", str(folder), "--format", "csv"])
        monkeypatch.undo()
        assert code == 141
        assert capsys.readouterr().err == ""
