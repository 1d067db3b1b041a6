"""A real page in Chromium deletes a store in a version upgrade: the next harvest sends a `-D`
for each of its records (with the value) before the store's `-S`, and the store leaves the
state DB's snapshot and `stores`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harvester.state import StateDB
from tests.support.configs import harvest_page
from tests.support.server import StaticServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# ?v=1 makes stores `todos` and `archive` (two records); ?v=2 deletes `archive` in the upgrade.
PAGE = """<!doctype html><meta charset="utf-8"><title>todo</title>
<script>
const version = Number(new URLSearchParams(location.search).get("v"));
const open = indexedDB.open("todoapp", version);
open.onupgradeneeded = (event) => {
  const db = open.result;
  if (event.oldVersion < 1) {
    db.createObjectStore("todos", {keyPath: "id"});
    const archive = db.createObjectStore("archive", {keyPath: "id"});
    archive.put({id: 1, title: "old one"});
    archive.put({id: 2, title: "old two"});
  }
  if (event.oldVersion < 2 && version >= 2) db.deleteObjectStore("archive");
};
open.onsuccess = () => {
  const tx = open.result.transaction("todos", "readwrite");
  tx.objectStore("todos").put({id: 1, title: "todo"});
  tx.oncomplete = () => { open.result.close(); window.ready = true; };
};
</script>"""


def _harvest(folder: Path, url: str, chromium_path: Path) -> list[dict[str, object]]:
    """Harvest `url` once into JSON lines; every row the sink holds so far."""
    harvest_page(folder, url, chromium_path)
    out = folder / "data" / "changes-jsonl" / "changes.jsonl"
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_a_store_deleted_in_an_upgrade_sends_its_records_deletes(
    tmp_path: Path, static_server: StaticServer, chromium_path: Path
) -> None:
    static_server.add("todo.html", PAGE)
    first = _harvest(tmp_path, static_server.url("todo.html?v=1"), chromium_path)
    rows = _harvest(tmp_path, static_server.url("todo.html?v=2"), chromium_path)[len(first) :]
    gone = [(r["op"], r["store"], r["key"], r["old_value"]) for r in rows if r["op"] == "-D"]
    assert gone == [
        ("-D", "archive", "1", '{"id":1,"title":"old one"}'),
        ("-D", "archive", "2", '{"id":2,"title":"old two"}'),
    ]
    assert all(r["db_name"] == "todoapp" and r["db_version"] == 2 for r in rows)
    # The deletes come before the store's -S, and after them only schema rows.
    ops = [(r["op"], r["store"]) for r in rows]
    assert ops.index(("-S", "archive")) > ops.index(("-D", "archive"))
    assert {op for op, _ in ops[ops.index(("-S", "archive")) :]} <= {"+S", "-S"}
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        assert [s.store for s in state.list_stores(target="app")] == ["todos"]
        origin = str(rows[0]["origin"])
        assert list(state.iter_records("app", origin, "todoapp", "archive")) == []
        (run, _) = state.list_runs(target="app")
        assert run.deleted == 2
