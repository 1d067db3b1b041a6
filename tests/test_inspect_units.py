"""Pure logic of `harvester.inspect`: pretty-printing, schema inference, net diffs, filters."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from harvester.commands.runs import delivery_lines
from harvester.errors import UsageError
from harvester.inspect.diff import Change, FieldChange, field_changes, net_diff
from harvester.inspect.filters import Where, key_texts
from harvester.inspect.pretty import pretty, pretty_text
from harvester.inspect.render import Column, csv_cell, safe_text, write_rows
from harvester.inspect.schema import infer
from harvester.state import TargetDelivery


def test_pretty_shows_dates_bytes_maps_and_sets_as_such() -> None:
    value = {
        "at": {"$date": "2026-01-02T03:04:05.678Z"},
        "raw": {"$bytes": "AAEC/w=="},
        "m": {"$map": [["a", 1], [{"$date": None}, {"$undefined": True}]]},
        "s": {"$set": [1, "x"]},
        "n": {"$bigint": "12345678901234567890"},
        "nan": {"$number": "NaN"},
        "holes": {"$array": {"length": 4, "items": {"1": True}}},
        "cycle": {"$ref": ""},
        "file": {"$blob": {"type": "text/plain", "size": 3, "bytes": "YWJj", "name": "a.txt"}},
    }
    assert pretty(value) == (
        '{"at": Date(2026-01-02T03:04:05.678Z), "raw": ArrayBuffer[4 B] 00 01 02 ff, '
        '"m": Map(2) {"a" => 1, Invalid Date => undefined}, "s": Set(2) {1, "x"}, '
        '"n": 12345678901234567890n, "nan": NaN, "holes": [<1 empty>, true, <2 empty>], '
        '"cycle": <ref (root)>, "file": File("a.txt", "text/plain", 3 B, 61 62 63)}'
    )
    assert pretty_text('{"$object":{"$x":1}}') == '{"$x": 1}'
    assert pretty_text(None) == "-"
    # UTF-8 output cannot hold a lone surrogate; it reads as its escape.
    assert pretty_text('"a\\udc00b"') == '"a\\udc00b"'
    assert pretty({"\ud800": "\ud83d"}) == '{"\\ud800": "\\ud83d"}'


def test_pretty_cuts_long_bytes_and_indents() -> None:
    text = pretty({"$bytes": "AAECAwQFBgcICQoLDA0ODxAREhM="})
    assert text.startswith("ArrayBuffer[20 B] 00 01") and text.endswith("0f …")
    assert pretty({"a": [1]}, indent=2) == '{\n  "a": [\n    1\n  ]\n}'


def test_safe_text_escapes_terminal_control_characters() -> None:
    assert safe_text("a\x1b[2Jb\tc\n\x9b") == "a\\x1b[2Jb\tc\n\\x9b"


def test_schema_counts_fields_types_and_frequency() -> None:
    summary = infer(
        [
            {"id": 1, "name": "a", "at": {"$date": "2026-01-01T00:00:00.000Z"}},
            {"id": 2, "name": None},
            {"$object": {"$id": 3}},
            "just a string",
        ]
    ).as_dict()
    assert summary["sampled"] == 4
    assert summary["value_types"] == {"object": 3, "string": 1}
    assert summary["fields"] == [
        {"field": "id", "count": 2, "frequency": 0.5, "types": {"number": 2}},
        {"field": "name", "count": 2, "frequency": 0.5, "types": {"string": 1, "null": 1}},
        {"field": "$id", "count": 1, "frequency": 0.25, "types": {"number": 1}},
        {"field": "at", "count": 1, "frequency": 0.25, "types": {"date": 1}},
    ]


def test_field_changes_walk_nested_objects() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "gone": True, "tags": [1]}
    new = {"a": 1, "b": {"c": 5, "d": 3}, "tags": [1, 2], "new": "x"}
    assert field_changes(old, new) == [
        FieldChange("b.c", "2", "5"),
        FieldChange("gone", "true", None),
        FieldChange("tags", "[1]", "[1, 2]"),
        FieldChange("new", None, '"x"'),
    ]
    assert field_changes(1, 2) == [FieldChange("", "1", "2")]


def _c(run: str, key: str, op: str, old: str | None, new: str | None) -> Change:
    return Change(run, "db", "s", key, op, old, new)


def test_net_diff_folds_several_runs_per_key() -> None:
    changes = [
        _c("r2", "1", "+I", None, "h1"),  # added then changed: added with the last value
        _c("r3", "1", "+U", "h1", "h2"),
        _c("r2", "2", "+U", "a", "b"),  # changed and changed back: no difference
        _c("r3", "2", "+U", "b", "a"),
        _c("r2", "3", "+I", None, "h3"),  # added and removed: no difference
        _c("r3", "3", "-D", "h3", None),
        _c("r3", "4", "-D", "h4", None),
        _c("r3", "5", "+U", "o5", "n5"),
    ]
    values = {"h2": '{"v":2}', "o5": '{"v":1,"w":0}', "n5": '{"v":2,"w":0}'}
    (store,) = net_diff(changes, lambda _net: values)
    assert [(r.key, r.new_value) for r in store.added] == [("1", '{"v":2}')]
    assert [(r.key, r.old_hash, r.old_value) for r in store.removed] == [("4", "h4", None)]
    (changed,) = store.changed
    assert changed.fields == (FieldChange("v", "1", "2"),)
    assert store.as_dict()["counts"] == {"added": 1, "changed": 1, "removed": 1}


def test_net_diff_lists_up_to_the_limit_and_looks_up_only_those() -> None:
    changes = [_c("r2", str(n), "+U", f"o{n}", f"n{n}") for n in range(5)]
    changes += [_c("r2", "9", "+I", None, "n9"), _c("r3", "8", "-D", "o8", None)]
    asked: list[str] = []

    def lookup(net: Sequence[Change]) -> dict[str, str]:
        asked.extend(c.key for c in net)
        return {c.new_hash: '{"v":1}' for c in net if c.new_hash}

    (store,) = net_diff(changes, lookup, limit=2)
    assert [r.key for r in store.changed] == ["0", "1"]
    assert store.unlisted == {"changed": 3}
    assert store.counts() == {"added": 1, "changed": 5, "removed": 1}
    assert sorted(asked) == ["0", "1", "8", "9"]


def test_key_texts_and_where() -> None:
    assert key_texts("42") == ['"42"', "42"]
    assert key_texts("abc") == ['"abc"']
    assert key_texts('[1, "a"]') == ['"[1, \\"a\\"]"', '[1,"a"]']
    assert key_texts("1.0") == ['"1.0"', "1"]
    assert key_texts('{"$date": "2026-01-01T00:00:00.000Z"}')[1] == (
        '{"$date":"2026-01-01T00:00:00.000Z"}'
    )
    where = Where.parse("address.city=Paris")
    assert where.matches({"address": {"city": "Paris"}})
    assert not where.matches({"address": {"town": "Paris"}})
    assert Where.parse("n=1").matches({"n": 1}) and not Where.parse("n=1").matches({"n": True})
    assert Where.parse("at=2026-01-01T00:00:00.000Z").matches(
        {"at": {"$date": "2026-01-01T00:00:00.000Z"}}
    )
    with pytest.raises(UsageError):
        Where.parse("no-equals")
    assert json.loads(key_texts("0")[1]) == 0


def test_tables_show_markup_and_escape_sequences_as_text() -> None:
    out = io.StringIO()
    row = {"v": "[bold red]x[/bold red] \x1b[2J:smile:"}
    write_rows([row], [Column("v", "v")], "table", out, title="[blink]t")
    text = out.getvalue()
    assert "[bold red]x[/bold red] \\x1b[2J:smile:" in text and "[blink]t" in text
    assert "\x1b" not in text
    out = io.StringIO()
    write_rows([{"v": "a\ud800"}], [Column("v", "v")], "csv", out)
    assert out.getvalue() == "v\na\\ud800\n"


def test_csv_cells_are_one_line_with_dates_as_iso_text() -> None:
    iso = "2026-01-02T03:04:05.678Z"
    assert csv_cell({"$date": iso}) == iso
    assert csv_cell('a, "b"') == 'a, "b"'
    assert csv_cell({"$date": None}) == '{"$date":null}'  # an Invalid Date stays typed
    assert csv_cell({"$bigint": "12"}) == '{"$bigint":"12"}'
    assert csv_cell({"a": [1, {"$date": iso}]}) == '{"a":[1,{"$date":"2026-01-02T03:04:05.678Z"}]}'
    assert (csv_cell(1.5), csv_cell(None), csv_cell(True)) == ("1.5", "null", "true")
    # A typed column writes its node in CSV, under the node's name; the table keeps the text.
    rows = [{"v_text": "{\n  a: Date(…)\n}", "v": {"a": {"$date": iso}}}, {"v_text": "gone"}]
    columns = [Column("v_text", "value", typed="v")]
    out = io.StringIO()
    write_rows(rows, columns, "csv", out)
    assert out.getvalue() == 'v\n"{""a"":{""$date"":""2026-01-02T03:04:05.678Z""}}"\ngone\n'


def test_a_cut_column_keeps_each_row_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    columns = [Column("id", "id", fit="keep"), Column("e", "error", fit="cut")]
    rows = [{"id": "r-" + "1" * 40, "e": "first line " + "x" * 100 + "\nsecond line"}]
    write_rows(rows, columns, "table", out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and all(len(line) <= 80 for line in lines)
    assert "r-" + "1" * 40 in lines[3] and lines[3].endswith("… │")
    assert "second" not in out.getvalue()


def test_runs_says_per_target_how_far_flink_consumed_the_log() -> None:
    since = datetime(2026, 12, 2, tzinfo=UTC)
    targets = [
        TargetDelivery("shop", handed_off=5, consumed=5, waiting_since=None, lag_seconds=0.0),
        TargetDelivery("blog", handed_off=3, consumed=1, waiting_since=since, lag_seconds=75.0),
        TargetDelivery("jsonl-only", handed_off=0, consumed=0, waiting_since=None, lag_seconds=0),
    ]
    assert delivery_lines(targets, None) == [
        "shop: 5 of 5 runs consumed by Flink",
        "blog: 1 of 3 runs consumed by Flink, waiting 1m",
    ]
    assert delivery_lines(targets, "blog") == ["blog: 1 of 3 runs consumed by Flink, waiting 1m"]
