"""The schema history of a real page in Chromium: an app upgraded from version 1 to 2 (a new
store, a new index) between two harvests, and what `diff --last 2` says about it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harvester.cli import main
from tests.support.configs import harvest_page
from tests.support.server import StaticServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# ?v=N opens the database at version N; each upgrade step runs once, as in a real app.
PAGE = """<!doctype html><meta charset="utf-8"><title>todo</title>
<script>
const version = Number(new URLSearchParams(location.search).get("v"));
const open = indexedDB.open("todoapp", version);
open.onupgradeneeded = (event) => {
  const db = open.result;
  if (event.oldVersion < 1) db.createObjectStore("todos", {keyPath: "id"});
  if (event.oldVersion < 2 && version >= 2) {
    open.transaction.objectStore("todos").createIndex("by_title", "title");
    db.createObjectStore("archive", {autoIncrement: true});
  }
};
open.onsuccess = () => {
  const tx = open.result.transaction("todos", "readwrite");
  tx.objectStore("todos").put({id: version, title: `todo ${version}`});
  tx.oncomplete = () => { open.result.close(); window.ready = true; };
};
</script>"""


def test_an_upgrade_shows_in_the_diff(
    tmp_path: Path,
    static_server: StaticServer,
    chromium_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    static_server.add("todo.html", PAGE)
    harvest_page(tmp_path, static_server.url("todo.html?v=1"), chromium_path)
    config = harvest_page(tmp_path, static_server.url("todo.html?v=2"), chromium_path)
    capsys.readouterr()
    argv = ["diff", "--target", "app", "--last", "2", "--config", str(config), "--format", "json"]
    assert main(argv) == 0
    diff = json.loads(capsys.readouterr().out)
    changes = {(c["kind"], c["db"], c["store"], c["index"]): c for c in diff["schema"]}
    assert set(changes) == {
        ("version_changed", "todoapp", None, None),
        ("store_created", "todoapp", "archive", None),
        ("index_added", "todoapp", "todos", "by_title"),
    }
    assert changes["version_changed", "todoapp", None, None]["new"] == 2
    assert changes["store_created", "todoapp", "archive", None]["new"] == {
        "key_path": None,
        "auto_increment": True,
        "indexes": [],
    }
    assert changes["index_added", "todoapp", "todos", "by_title"]["new"] == {
        "name": "by_title",
        "key_path": "title",
        "unique": False,
        "multi_entry": False,
    }
    # The records' diff is still there, after the schema: the second run's todo.
    (todos,) = diff["stores"]
    assert (todos["store"], todos["counts"]) == ("todos", {"added": 1, "changed": 0, "removed": 0})
    capsys.readouterr()
    assert (
        main(
            ["diff", "--target", "app", "--last", "2", "--config", str(config), "--format", "table"]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines()[0] == (
        "schema: todoapp: version 1 → 2; store archive created; index by_title added to todos"
    )
