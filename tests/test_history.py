"""`harvester history`: every version of one record, over state DBs committed through `StateDB`."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harvester.cli import main
from harvester.codec import canonical, decode, value_hash
from harvester.inspect.filters import key_texts
from harvester.state import StateDB
from harvester.state.history import KEY_CHANGES
from tests.support.inspect_data import TARGET, commit_records

DAY = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
DAY_ISO = "2026-01-02T03:04:05.678Z"
PAIR = (1, "a")

# Record 7 (the number): inserted, updated twice, deleted, inserted again. The string "7" is
# another record, never changed; PAIR is a compound key, DAY a Date key, "alpha" a string key.
V1 = {"id": 7, "name": "seven", "address": {"city": "Paris"}}
V2 = {"id": 7, "name": "Seven", "address": {"city": "Paris"}}
V3 = {"id": 7, "name": "Seven", "address": {"city": "Lyon"}, "email": "s@example.com"}
V5 = {"id": 7, "name": "back", "seen": DAY}
STATES: list[dict[Any, Any]] = [
    {7: V1, "7": {"id": "7"}, PAIR: {"n": 1}, DAY: {"at": DAY, "n": 1}},
    {7: V2, "7": {"id": "7"}, PAIR: {"n": 2}, DAY: {"at": DAY, "n": 1}, "alpha": [1]},
    {7: V3, "7": {"id": "7"}, PAIR: {"n": 2}, DAY: {"at": DAY, "n": 2}, "alpha": [1]},
    {"7": {"id": "7"}, PAIR: {"n": 2}, DAY: {"at": DAY, "n": 2}, "alpha": [1, 2]},
    {7: V5, "7": {"id": "7"}, PAIR: {"n": 2}, DAY: {"at": DAY, "n": 2}, "alpha": [1, 2]},
]


@pytest.fixture
def state_dir(tmp_path: Path) -> tuple[Path, list[str]]:
    folder = tmp_path / "state"
    runs = []
    with StateDB.open(folder) as state:
        before: dict[Any, Any] = {}
        for now in STATES:
            runs.append(commit_records(state, {"items": now}, {"items": before}))
            before = now
    return folder, runs


def history(capsys: pytest.CaptureFixture[str], folder: Path, *argv: str) -> Any:
    capsys.readouterr()
    assert main(["history", TARGET, *argv, "--state", str(folder), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_version_oldest_first_through_delete_and_reinsert(
    state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, runs = state_dir
    result = history(capsys, folder, "shopdb", "items", "7")
    assert (result["target"], result["db"], result["store"]) == (TARGET, "shopdb", "items")
    assert (result["key"], result["key_text"]) == (7, "7")  # the number: JSON wins
    versions = result["versions"]
    assert [v["op"] for v in versions] == ["+I", "+U", "+U", "-D", "+I"]
    assert [v["run_id"] for v in versions] == runs
    seqs = [v["seq"] for v in versions]
    assert seqs == sorted(seqs)
    assert all(v["committed_at"] >= v["started_at"] for v in versions)
    # Each value is rebuilt: the +I's from the next change's old value, the last from the
    # snapshot, a -D's removed value from its own old value.
    assert [(v["old_value"], v["new_value"]) for v in versions] == [
        (None, V1),
        (V1, V2),
        (V2, V3),
        (V3, None),
        (None, json.loads(canonical(V5))),
    ]
    hashes = [value_hash(canonical(v)) for v in (V1, V2, V3, V5)]
    assert [(v["old_hash"], v["new_hash"]) for v in versions] == [
        (None, hashes[0]),
        (hashes[0], hashes[1]),
        (hashes[1], hashes[2]),
        (hashes[2], None),
        (None, hashes[3]),
    ]
    assert [v["fields"] for v in versions] == [
        None,
        [{"field": "name", "old": '"seven"', "new": '"Seven"'}],
        [
            {"field": "address.city", "old": '"Paris"', "new": '"Lyon"'},
            {"field": "email", "old": None, "new": '"s@example.com"'},
        ],
        None,
        None,
    ]
    # The same store named as DB/STORE, as `export --store` names it.
    assert history(capsys, folder, "shopdb/items", "7") == result


def test_keys_compound_date_and_plain_string(
    state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, runs = state_dir
    pair = history(capsys, folder, "shopdb", "items", '[1,"a"]')
    assert (pair["key"], pair["key_text"]) == ([1, "a"], '[1, "a"]')
    assert [(v["op"], v["run_id"], v["new_value"]) for v in pair["versions"]] == [
        ("+I", runs[0], {"n": 1}),
        ("+U", runs[1], {"n": 2}),
    ]

    day = history(capsys, folder, "shopdb", "items", json.dumps({"$date": DAY_ISO}))
    assert day["key"] == {"$date": DAY_ISO}
    assert canonical(decode(day["key"])) == canonical(DAY)
    assert [(v["op"], v["run_id"]) for v in day["versions"]] == [("+I", runs[0]), ("+U", runs[2])]
    assert day["versions"][1]["fields"] == [{"field": "n", "old": "1", "new": "2"}]

    alpha = history(capsys, folder, "shopdb", "items", "alpha")  # not JSON: the string
    assert alpha["key"] == "alpha"
    assert [(v["op"], v["new_value"]) for v in alpha["versions"]] == [("+I", [1]), ("+U", [1, 2])]
    assert alpha["versions"][1]["fields"] == [{"field": "", "old": "[1]", "new": "[1, 2]"}]

    # `"7"` (JSON) names the string 7: another record than the number.
    assert key_texts('"7"') == ['"\\"7\\""', '"7"']
    seven = history(capsys, folder, "shopdb", "items", '"7"')
    assert seven["key"] == "7"
    assert [(v["op"], v["run_id"]) for v in seven["versions"]] == [("+I", runs[0])]


def test_json_is_lossless_typed_json(
    state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _runs = state_dir
    result = history(capsys, folder, "shopdb", "items", "7")
    last = result["versions"][-1]
    assert last["new_value"]["seen"] == {"$date": DAY_ISO}
    assert canonical(decode(last["new_value"])) == canonical(V5)
    assert canonical(decode(result["key"])) == canonical(7)
    for version in result["versions"]:
        for side in ("old", "new"):
            if version[f"{side}_value"] is not None:
                text = canonical(decode(version[f"{side}_value"]))
                assert value_hash(text) == version[f"{side}_hash"]


def test_table_and_csv_rows_per_field_and_whole_values(
    state_dir: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, runs = state_dir
    base = ["history", TARGET, "shopdb", "items", "7", "--state", str(folder), "--format"]
    capsys.readouterr()
    assert main([*base, "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines(keepends=True)))
    assert list(rows[0]) == ["run_id", "committed_at", "op", "field", "old", "new"]
    assert [(r["run_id"], r["op"], r["field"], r["old"], r["new"]) for r in rows] == [
        (runs[0], "+I", "", "", canonical(V1)),
        (runs[1], "+U", "name", "seven", "Seven"),
        (runs[2], "+U", "address.city", "Paris", "Lyon"),
        (runs[2], "+U", "email", "", "s@example.com"),
        (runs[3], "-D", "", canonical(V3), ""),
        (runs[4], "+I", "", "", canonical(V5)),
    ]
    assert all(r["committed_at"].endswith("Z") for r in rows)

    day = ["history", TARGET, "shopdb", "items", DAY_ISO, "--state", str(folder)]
    # A plain string that is no JSON names the string key, not the date.
    assert main([*day, "--format", "csv"]) == 2
    assert f"no history of key {DAY_ISO!r}" in capsys.readouterr().err

    monkeypatch.setenv("COLUMNS", "250")
    assert main([*base, "table"]) == 0
    table = capsys.readouterr().out
    assert f"{TARGET} / shopdb / items / key 7" in table
    assert "address.city" in table and "Date(2026-01-02T03:04:05.678Z)" in table
    assert all(run_id in table for run_id in runs)


def test_values_not_kept_show_their_hash(
    state_dir: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """History from before schema 2 has no old values: a version whose value is nowhere else
    is shown by hash, and its +U has no fields."""
    folder, runs = state_dir
    with sqlite3.connect(folder / "state.db") as conn:
        conn.execute("UPDATE changes SET old_value = NULL WHERE run_id = ?", (runs[1],))
    conn.close()
    v1, v2 = history(capsys, folder, "shopdb", "items", "7")["versions"][:2]
    assert (v1["new_value"], v1["new_hash"]) == (None, value_hash(canonical(V1)))
    assert (v2["old_value"], v2["new_value"], v2["fields"]) == (None, V2, None)
    argv = ["history", TARGET, "shopdb", "items", "7", "--state", str(folder), "--format", "csv"]
    assert main(argv) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines(keepends=True)))
    assert rows[0]["new"] == f"(value not kept; hash {value_hash(canonical(V1))})"
    assert (rows[1]["op"], rows[1]["old"], rows[1]["new"]) == (
        "+U",
        f"(value not kept; hash {value_hash(canonical(V1))})",
        canonical(V2),
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope", "shopdb", "items", "7"], "unknown target 'nope'; known: 'shop'"),
        (
            [TARGET, "shopdb", "x", "7"],
            "unknown store 'x' in database 'shopdb' of target 'shop'; known: 'items'",
        ),
        (
            [TARGET, "other/items", "7"],
            "unknown database 'other' of target 'shop'; known: 'shopdb'",
        ),
        (
            [TARGET, "shopdb", "items", "99"],
            "no history of key '99' in store 'items' of database "
            "'shopdb' of target 'shop': no kept committed run changed it",
        ),
        ([TARGET, "items", "7"], "give TARGET DB STORE KEY, or TARGET DB/STORE KEY"),
        ([TARGET, "shopdb", "items", "7", "8"], "give TARGET DB STORE KEY, or TARGET DB/STORE KEY"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    state_dir: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    folder, _runs = state_dir
    assert main(["history", *argv, "--state", str(folder)]) == 2
    assert message in capsys.readouterr().err


def test_a_record_whose_history_was_pruned_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "state"
    with StateDB.open(folder, keep_runs=1) as state:
        first = commit_records(state, {"items": STATES[0]}, {})
        commit_records(state, {"items": STATES[1]}, {"items": STATES[0]})
    assert main(["history", TARGET, "shopdb", "items", '"7"', "--state", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "no history of key '\"7\"'" in err
    assert f"in the snapshot, last changed by run {first}, older than the runs" in err


def test_a_key_lookup_never_scans_every_change(state_dir: tuple[Path, list[str]]) -> None:
    """Without an index on the changes' keys it walks one target's runs; with one (the
    migration that adds `changes_by_key`) it looks the key up."""
    folder, _runs = state_dir
    params = {"target": TARGET, "origin": "o", "db": "shopdb", "store": "items", "key": "7"}
    with sqlite3.connect(folder / "state.db") as conn:
        has_index = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'changes_by_key'"
        ).fetchone()
        if has_index is None:
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + KEY_CHANGES, params)]
            assert "SEARCH r USING INDEX runs_by_target (target=?)" in plan
            assert not any(step.startswith("SCAN c") for step in plan)
            conn.execute("CREATE INDEX changes_by_key ON changes (target, db, store, key)")
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + KEY_CHANGES, params)]
    conn.close()
    assert any(step.startswith("SEARCH c USING INDEX changes_by_key") for step in plan)


def test_terminal_output_escapes_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "state"
    hostile = {"k\x1b[2J": {"note": "\x1b]0;owned\x07"}}
    with StateDB.open(folder) as state:
        commit_records(state, {"items": hostile}, {})
        commit_records(state, {"items": {"k\x1b[2J": {"note": "\x1b[31m"}}}, {"items": hostile})
    capsys.readouterr()
    argv = ["history", TARGET, "shopdb", "items", "k\x1b[2J", "--state", str(folder)]
    for fmt in ("table", "json"):
        assert main([*argv, "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x07" not in out, fmt
