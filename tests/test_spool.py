"""Spool files and the JSON-lines sink."""

from __future__ import annotations

import json
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from harvester.sinks import JsonLinesSink
from harvester.spool import (
    ROW_FIELDS,
    SpoolFile,
    SpoolWriter,
    read_rows,
)
from harvester.surrogates import escape_surrogates
from harvester.timefmt import iso_utc


def _writer(tmp_path: Path, run_id: str = "t-1") -> SpoolWriter:
    writer = SpoolWriter(tmp_path / "spool", run_id=run_id, target="t", origin="http://o")
    writer.begin_store(db="db", db_version=3, store="s")
    return writer


def test_rows_have_exactly_the_changelog_fields_in_order(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.write('"k1"', "+I", '{"a":1}', None, "h1", "2026-01-02T03:04:05.678Z")
    writer.write("2", "-D", None, '"was"', None, "2026-01-02T03:04:05.678Z")
    assert writer.part.exists() and not writer.path.exists()
    spool = writer.finish()
    assert spool == SpoolFile(run_id="t-1", target="t", path=writer.path, rows=2)
    assert not writer.part.exists()
    lines = spool.path.read_bytes().splitlines()
    assert [list(json.loads(line)) for line in lines] == [list(ROW_FIELDS)] * 2
    first, second = read_rows(spool.path)
    assert first == {
        "run_id": "t-1",
        "target": "t",
        "origin": "http://o",
        "db_name": "db",
        "db_version": 3,
        "store": "s",
        "key": '"k1"',
        "op": "+I",
        "value": '{"a":1}',
        "old_value": None,
        "value_hash": "h1",
        "harvested_at": "2026-01-02T03:04:05.678Z",
    }
    assert second["op"] == "-D" and second["value"] is None and second["value_hash"] is None
    assert second["old_value"] == '"was"'


def test_spool_files_are_private(tmp_path: Path) -> None:
    spool = _writer(tmp_path).finish()
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(spool.path.parent.stat().st_mode) == 0o700


def test_discard_removes_the_part_file(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.write("1", "+I", "1", None, "h", iso_utc())
    writer.discard()
    assert list((tmp_path / "spool").iterdir()) == []


def test_escaped_surrogates_stay_byte_exact_and_raw_ones_never_crash(tmp_path: Path) -> None:
    escaped = '"a\\ud800b"'  # how JSON.stringify writes a lone surrogate: ASCII text
    raw = '"a\ud800b\udfff"'  # a raw lone surrogate, which UTF-8 cannot hold
    writer = _writer(tmp_path)
    writer.write(escaped, "+I", escaped, None, "h", iso_utc())
    writer.write(raw, "+U", raw, raw, "h", iso_utc())
    rows = list(read_rows(writer.finish().path))
    assert rows[0]["key"] == escaped and rows[0]["value"] == escaped
    assert rows[1]["key"] == rows[1]["value"] == rows[1]["old_value"] == '"a\\ud800b\\udfff"'
    # The escape means the same JSON string as the raw text did.
    assert json.loads(rows[1]["value"]) == json.loads(raw)


def test_escape_surrogates_leaves_other_text_alone() -> None:
    assert escape_surrogates('"plain"') == '"plain"'
    assert escape_surrogates('"é 😀"') == '"é 😀"'
    assert escape_surrogates("\udc80") == "\\udc80"


def test_iso_utc_has_milliseconds_and_z() -> None:
    moment = datetime(2026, 11, 26, 15, 0, 0, 123456, tzinfo=UTC)
    assert iso_utc(moment) == "2026-11-26T15:00:00.123Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", iso_utc())
    # strftime would write year 999 as "999".
    assert iso_utc(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00.000Z"


def test_jsonl_sink_appends_and_is_all_or_nothing(tmp_path: Path) -> None:
    spools: list[SpoolFile] = []
    for n in range(2):
        writer = _writer(tmp_path, run_id=f"t-{n}")
        writer.write(str(n), "+I", str(n), None, "h", iso_utc())
        spools.append(writer.finish())
    sink = JsonLinesSink(tmp_path / "out")
    sink.send(spools[:1])
    before = sink.path.read_bytes()
    missing = SpoolFile(run_id="t-9", target="t", path=tmp_path / "nope.jsonl", rows=1)
    with pytest.raises(FileNotFoundError):
        sink.send([spools[1], missing])
    assert sink.path.read_bytes() == before
    sink.send(spools[1:])
    assert [orjson.loads(line)["run_id"] for line in sink.path.read_bytes().splitlines()] == [
        "t-0",
        "t-1",
    ]
