"""Pages written by real IndexedDB libraries (Dexie, localForage, idb-keyval): read exactly, and
their changes between two harvests of one profile come out as the right changelog rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harvester.cli import main
from harvester.state import StateDB
from tests.support.server import StaticServer

PAGES = Path(__file__).resolve().parent / "pages"

pytestmark = pytest.mark.browser

READY = "window.ready === true"

# (db, store, key) → value, typed JSON, after the first load.
FIRST = {
    ("custom-db", "custom-store", '"k"'): {
        "nested": {
            "deep": {"$array": {"items": {"0": 1, "1": {"$undefined": True}, "3": 3}, "length": 4}}
        }
    },
    ("keyval-store", "keyval", '{"$date":"1970-01-01T00:00:00.005Z"}'): {"$bigint": "10"},
    ("keyval-store", "keyval", '["compound",1]'): {
        "$typed": {"bytes": "CQg=", "type": "Uint8Array"}
    },
    ("lf", "kv", '""'): 0,
    ("lf", "kv", '"blob"'): {"$blob": {"bytes": "AQID", "size": 3, "type": ""}},
    ("lf", "kv", '"user"'): {"id": 1, "roles": ["a"]},
    ("lf", "local-forage-detect-blob-support", '"key"'): {
        "$blob": {"bytes": "", "size": 0, "type": ""}
    },
    ("shop", "files", '"/a.txt"'): {
        "data": {"$blob": {"bytes": "aGVsbG8=", "size": 5, "type": "text/plain"}},
        "path": "/a.txt",
    },
    ("shop", "friends", "1"): {
        "age": 31,
        "born": {"$date": "1970-01-01T00:00:00.000Z"},
        "id": 1,
        "name": "Ann",
        "tags": ["x", "y"],
    },
    ("shop", "friends", "2"): {
        "age": 0,
        "born": {"$date": None},
        "id": 2,
        "name": "Bob",
        "tags": [],
    },
    ("shop", "pairs", '[1,"x"]'): {"a": 1, "b": "x", "v": {"$map": [[1, 2]]}},
    ("shop", "pairs", '[1,"y"]'): {"a": 1, "b": "y", "v": {"$set": [{"$bigint": "2"}, "two"]}},
}


@pytest.fixture
def libraries(static_server: StaticServer) -> str:
    shutil.copytree(PAGES / "vendor", static_server.root / "vendor")
    page = (PAGES / "real_libraries.html").read_text(encoding="utf-8")
    return static_server.add("libraries.html", page)


def test_a_dump_reads_what_the_libraries_wrote_exactly(
    libraries: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dump.jsonl"
    assert main(["dump", libraries, "--wait-for-function", READY, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    got = {
        (line["db"], line["store"], json.dumps(line["key"], separators=(",", ":"))): line["value"]
        for line in lines
    }
    assert got == FIRST
    assert {line["db_version"] for line in lines if line["db"] == "shop"} == {20}  # Dexie's ×10

    assert main(["dump", libraries, "--wait-for-function", READY, "--schema"]) == 0
    schema = {db["name"]: db for db in json.loads(capsys.readouterr().out)}
    friends = next(s for s in schema["shop"]["stores"] if s["name"] == "friends")
    assert friends["key_path"] == "id" and friends["auto_increment"] is True
    indexes = {i["name"]: i for i in friends["indexes"]}
    assert indexes["[name+age]"]["key_path"] == ["name", "age"]
    assert indexes["tags"]["multi_entry"] is True
    pairs = next(s for s in schema["shop"]["stores"] if s["name"] == "pairs")
    assert pairs["key_path"] == ["a", "b"]


def test_two_harvests_give_the_changes_the_libraries_made(
    libraries: str, tmp_path: Path, clean_env: None
) -> None:
    config = tmp_path / "harvester.toml"
    config.write_text(
        f"""
[state]
dir = "state"
data_dir = "data"

[[targets]]
name = "libs"
url = "{libraries}"
schedule = "1h"
[targets.ready]
function = "{READY}"
[targets.auth]
profile_dir = "profile"
""",
        encoding="utf-8",
    )
    harvest = ["harvest", "--config", str(config), "libs", "--sink", "jsonl"]
    assert main(harvest) == 0
    assert main(harvest) == 0

    with StateDB.open(tmp_path / "state") as state:
        newest, oldest = state.list_runs(target="libs")
        assert (oldest.inserted, oldest.updated, oldest.deleted) == (len(FIRST), 0, 0)
        assert newest.status == "committed"
    rows = [
        json.loads(line)
        for line in (tmp_path / "data" / "changes-jsonl" / "changes.jsonl")
        .read_text("utf-8")
        .splitlines()
    ]
    changes = {
        (row["db_name"], row["store"], row["key"], row["op"]): row["value"]
        for row in rows
        if row["run_id"] == newest.id
    }
    assert changes == {
        ("shop", "friends", "1", "+U"): json.dumps(
            {**FIRST["shop", "friends", "1"], "age": 32}, separators=(",", ":")
        ),
        ("shop", "friends", "2", "-D"): None,
        ("shop", "friends", "3", "+I"): (
            '{"age":{"$number":"-0"},"born":{"$date":"1970-01-01T00:00:00.001Z"},'
            '"id":3,"name":"Cy","tags":["z"]}'
        ),
        ("lf", "kv", '"user"', "-D"): None,
        ("lf", "kv", '"new"', "+I"): '{"$number":"NaN"}',
        ("keyval-store", "keyval", '["compound",1]', "+U"): (
            '{"$typed":{"bytes":"CQgH","type":"Uint8Array"}}'
        ),
    }
