"""Hostile pages: each ends in a clear error of its run or a correct read, never a hang.

Pages are served from 127.0.0.1; reads go through `read_target` (a run in a real state DB) or the
OriginReader directly, with short page timeouts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from playwright.async_api import Page

from harvester import codec
from harvester.config import BrowserSettings
from harvester.errors import ReaderError
from harvester.harvest import commit
from harvester.reader import OriginReader
from harvester.state import StateDB
from harvester.surrogates import escape_surrogates
from tests.support.hostile_pages import alive, harvest
from tests.support.reader import PRELUDE, Read, read_all, read_page
from tests.support.server import StaticServer

pytestmark = pytest.mark.browser


def _page(script: str) -> str:
    return PRELUDE + "<script>\n" + script + "\n</script>"


# A store "s" of `n` records (keys 0…n-1) in database "d", then ready.
FILLED = """
(async () => {
  const n = Number(new URLSearchParams(location.search).get("n") ?? 50);
  const db = await openDb("d", 1, (db) => db.createObjectStore("s"));
  await put(db, "s", Array.from({ length: n }, (_, i) => [i, { i, text: "x".repeat(100) }]));
  db.close();
  window.ready = true;
})();
"""


# --- a page that never lets go of its main thread -------------------------------------------------


@pytest.mark.slow
def test_a_page_looping_forever_fails_the_run_and_leaves_no_browser(
    tmp_path: Path, static_server: StaticServer
) -> None:
    # The loop starts a second after the page is ready, in the middle of a long read.
    hang = "window.ready = true; setTimeout(() => { for (;;); }, 1000);"
    url = static_server.add("loop.html", _page(FILLED.replace("window.ready = true;", hang)))
    # page_timeout also bounds the wait for ready, which a loaded machine may need seconds for;
    # one record a batch keeps the read going well past the loop's start however fast it is.
    result = harvest(tmp_path, url + "?n=20000", 'page_timeout = "8s"\nbatch_size = 1')
    assert result.run.status == "failed"
    assert result.run.error is not None
    assert "did not answer" in result.run.error and "within 8s" in result.run.error
    assert result.processes, "no Chromium process was seen"
    assert not [pid for pid in result.processes if alive(pid)], "Chromium left running"


# --- a page that goes away while it is read ------------------------------------------------------


async def _navigate_during_read(page: Page, reader: OriginReader, how: str) -> Read:
    (db,) = await reader.schema()
    read = reader.read_store(db.stores[0])
    first = True
    async for _ in read:
        if first:
            # Later, not inside this evaluate: the navigation would fail the evaluate itself.
            await page.evaluate(f"setTimeout(() => {{ {how}; }}, 0)")
            first = False
    raise AssertionError("the read went on after the page went away")


@pytest.mark.parametrize(
    "how", ["location.reload()", "location.href = 'about:blank'", "location.href = '/other.html'"]
)
def test_a_page_that_navigates_away_during_the_read_is_a_reader_error(
    static_server: StaticServer, chromium: BrowserSettings, how: str
) -> None:
    static_server.add("other.html", "<p>elsewhere</p>")
    url = static_server.add("filled.html", _page(FILLED)) + "?n=400"
    with pytest.raises(ReaderError, match="navigated away or closed"):
        read_page(
            url,
            chromium,
            then=lambda page, reader: _navigate_during_read(page, reader, how),
            batch_size=10,
            page_timeout="30s",
        )


def test_a_page_that_navigates_away_fails_its_run_with_a_reason(
    tmp_path: Path, static_server: StaticServer
) -> None:
    # One reload, shortly after ready: a page that reloaded forever might never be seen ready.
    once = """window.ready = true;
    if (!sessionStorage.getItem("reloaded")) {
      sessionStorage.setItem("reloaded", "1");
      setTimeout(() => location.reload(), 50);
    }"""
    script = FILLED.replace("window.ready = true;", once)
    url = static_server.add("reload.html", _page(script)) + "?n=3000"
    result = harvest(tmp_path, url, 'page_timeout = "30s"\nbatch_size = 10')
    # The reload may land before or during the read: either the read was whole, or it failed.
    if result.run.status == "failed":
        assert "navigated away" in (result.run.error or "") or "context" in (result.run.error or "")
    else:
        assert len(result.rows) == 3000


# --- dialogs and popups ---------------------------------------------------------------------------

DIALOGS = """
window.addEventListener("beforeunload", (e) => { e.preventDefault(); e.returnValue = "stay"; });
setInterval(() => alert("hello"), 20);
setInterval(() => confirm("sure?"), 30);
setInterval(() => prompt("name?"), 40);
setInterval(() => window.open("/filled.html?n=1", "_blank"), 25);
"""


def test_dialogs_and_popups_do_not_stop_the_read(
    tmp_path: Path, static_server: StaticServer
) -> None:
    static_server.add("filled.html", _page(FILLED))
    url = static_server.add("dialogs.html", _page(FILLED + DIALOGS)) + "?n=500"
    result = harvest(tmp_path, url, 'page_timeout = "30s"\nbatch_size = 20')
    assert result.run.status == "read", result.run.error
    assert sorted(int(str(row["key"])) for row in result.rows) == list(range(500))
    assert not [pid for pid in result.processes if alive(pid)]


# --- values out of proportion ---------------------------------------------------------------------

# Chromium refuses to store a value nested 100,000 levels deep (its serializer runs out of
# stack): the page stores the deepest value it can, halving the depth until one is taken.
DEEP = """
(async () => {
  const db = await openDb("d", 1, (db) => db.createObjectStore("s"));
  await put(db, "s", [[1, "before"], [3, "after"]]);
  for (let depth = 100000; depth >= 1000; depth = Math.floor(depth / 2)) {
    let deep = "bottom";
    for (let i = 0; i < depth; i++) deep = [deep];
    try {
      await put(db, "s", [[2, deep]]);
      window.depth = depth;
      break;
    } catch (e) {
      window.refused = String(e);
    }
  }
  db.close();
  window.ready = true;
})();
"""


async def _read_deep(page: Page, reader: OriginReader) -> tuple[int, str, Read]:
    depth, refused = await page.evaluate("[window.depth, window.refused]")
    return depth, refused, await read_all(reader)


def test_a_value_nested_100000_levels_deep_is_read_or_a_problem_of_its_record(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add("deep.html", _page(DEEP))
    depth, refused, read = read_page(url, chromium, then=_read_deep, page_timeout="20s")
    assert "Maximum call stack size exceeded" in refused  # 100,000 levels cannot be stored
    assert depth >= 1000
    values = read.values("d/s")
    assert (values["1"], values["3"]) == ('"before"', '"after"')
    if values["2"].startswith('{"$opaque"'):
        (problem,) = read.problems
        assert (problem.store, problem.key) == ("s", "2")
        assert "could not be encoded" in problem.message
    else:
        assert values["2"] == "[" * depth + '"bottom"' + "]" * depth
        assert read.problems == []


BIG_BLOB = """
(async () => {
  const size = 200 * 1024 * 1024;
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = i & 255;
  const db = await openDb("d", 1, (db) => db.createObjectStore("s"));
  await put(db, "s", [[1, { blob: new Blob([bytes], { type: "x/y" }) }], [2, "small"]]);
  db.close();
  window.ready = true;
})();
"""


@pytest.mark.slow
def test_a_200_mb_blob_is_cut_to_its_sha256(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add("blob.html", _page(BIG_BLOB))
    read = read_page(url, chromium, page_timeout="60s")
    size = 200 * 1024 * 1024
    digest = hashlib.sha256(bytes(range(256)) * (size // 256)).hexdigest()
    assert json.loads(read.values("d/s")["1"]) == {
        "blob": {"$blob": {"sha256": digest, "size": size, "truncated": True, "type": "x/y"}}
    }
    assert read.values("d/s")["2"] == '"small"'
    assert read.problems == []


BIG_STRING = """
(async () => {
  const db = await openDb("d", 1, (db) => db.createObjectStore("s"));
  await put(db, "s", [[1, "a".repeat(64 * 1024 * 1024)], [2, "small"]]);
  db.close();
  window.ready = true;
})();
"""


@pytest.mark.slow
def test_a_64_mb_string_is_read_and_the_rest_too(
    tmp_path: Path, static_server: StaticServer
) -> None:
    url = static_server.add("string.html", _page(BIG_STRING))
    result = harvest(tmp_path, url, 'page_timeout = "60s"')
    assert result.run.status == "read", result.run.error
    rows = {row["key"]: row["value"] for row in result.rows}
    assert rows == {"1": '"' + "a" * (64 * 1024 * 1024) + '"', "2": '"small"'}


# --- many and oddly named databases ---------------------------------------------------------------

MANY = """
(async () => {
  await Promise.all(Array.from({ length: 1000 }, async (_, i) => {
    const db = await openDb("db" + i, 1, (db) => db.createObjectStore("s"));
    await put(db, "s", [[i, "v" + i]]);
    db.close();
  }));
  window.ready = true;
})();
"""


@pytest.mark.slow
def test_1000_databases_are_all_read(tmp_path: Path, static_server: StaticServer) -> None:
    url = static_server.add("many.html", _page(MANY))
    result = harvest(tmp_path, url, 'page_timeout = "30s"')
    assert result.run.status == "read", result.run.error
    assert sorted((row["db_name"], row["key"]) for row in result.rows) == sorted(
        (f"db{i}", str(i)) for i in range(1000)
    )


NAMES = ["", "'", '"', "a\"b'c", "a/b", "/", "\\", "é😀", "\u2028", "*?[x]", " ", "\ud800"]

ODD_NAMES = """
(async () => {
  const names = %s;
  for (const name of names) {
    const db = await openDb(name, 1, (db) => { for (const s of names) db.createObjectStore(s); });
    for (const s of names) await put(db, s, [[1, [name, s]]]);
    db.close();
  }
  window.ready = true;
})();
"""


def test_databases_and_stores_with_odd_names(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add("names.html", _page(ODD_NAMES % json.dumps(NAMES)))
    read = read_page(url, chromium)
    assert read.problems == []
    expected = {f"{db}/{s}": [("1", codec.canonical([db, s]))] for db in NAMES for s in NAMES}
    assert read.records == expected


# --- a page that replaces what a reader leans on --------------------------------------------------

# IndexedDB's entry points broken before the page says it is ready; JSON, Array.prototype and
# Promise by `breakMore`, before or during the read.
REPLACED = """
(async () => {
  const db = await openDb("d", 1, (db) => db.createObjectStore("s"));
  await put(db, "s", [[1, { a: [1, 2], m: new Map([[1, 2]]) }], [2, "two"]]);
  db.close();
  Object.defineProperty(window, "indexedDB", { get() { throw new Error("no indexedDB"); } });
  for (const name of ["result", "error", "readyState", "onsuccess", "onerror", "transaction"]) {
    const broken = { get() { throw new Error(name); }, set() {} };
    Object.defineProperty(IDBRequest.prototype, name, broken);
  }
  IDBRequest.prototype.addEventListener = () => {};
  IDBFactory.prototype.open = () => { throw new Error("open patched"); };
  window.ready = true;
})();
window.breakMore = () => {
  JSON.stringify = () => "HACKED";
  JSON.parse = () => ({ hacked: true });
  Array.prototype.map = function () { return ["hacked"]; };
  Array.prototype.join = () => "hacked";
  Array.prototype.push = () => 0;
  Array.prototype.slice = () => [];
  Array.from = () => ["hacked"];
  const realPromise = Promise;
  window.Promise = function () { throw new Error("Promise patched"); };
  window.Promise.resolve = () => { throw new Error("Promise patched"); };
  realPromise.prototype.then = function () { throw new Error("then patched"); };
};
"""
REPLACED_RECORDS = [("1", '{"a":[1,2],"m":{"$map":[[1,2]]}}'), ("2", '"two"')]


def test_a_page_that_replaces_indexeddb_and_idbrequest_is_read_right(
    tmp_path: Path, static_server: StaticServer
) -> None:
    url = static_server.add("replaced.html", _page(REPLACED))
    result = harvest(tmp_path, url, 'page_timeout = "5s"')
    assert result.run.status == "read", result.run.error
    assert sorted((row["key"], row["value"]) for row in result.rows) == REPLACED_RECORDS


async def _break_more_then_read(page: Page, reader: OriginReader) -> Read:
    await reader.schema()  # the reader is in the page before the page breaks the rest
    await page.evaluate("setTimeout(window.breakMore, 0)")
    await page.wait_for_timeout(100)
    return await read_all(reader)


def test_a_page_that_also_replaces_json_arrays_and_promise_is_read_right(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add("replaced.html", _page(REPLACED))
    read = read_page(url, chromium, then=_break_more_then_read, page_timeout="5s")
    assert read.records == {"d/s": REPLACED_RECORDS}
    assert read.problems == []


@pytest.mark.parametrize(
    "ready_function",
    [
        "window.ready === true",
        "() => window.ready === true",
        "async () => window.ready",
        "function () { return window.ready; }",
        "window.ready // set last",
    ],
)
def test_a_page_that_breaks_everything_before_it_is_ready_is_read_right(
    tmp_path: Path, static_server: StaticServer, ready_function: str
) -> None:
    early = REPLACED.replace("  window.ready = true;", "  breakMore();\n  window.ready = true;")
    assert early != REPLACED
    url = static_server.add("early.html", _page(early))
    result = harvest(tmp_path, url, 'page_timeout = "5s"', ready_function)
    assert result.run.status == "read", result.run.error
    assert sorted((row["key"], row["value"]) for row in result.rows) == REPLACED_RECORDS


# --- a store that grows while it is read ----------------------------------------------------------

GROWING = """
(async () => {
  const db = await openDb("d", 1, (db) => db.createObjectStore("s"));
  await put(db, "s", Array.from({ length: 2000 }, (_, i) => [i * 2, "start"]));
  window.ready = true;
  // Records keep coming, before and after the read position, until 3000 more exist.
  let added = 0;
  const grow = async () => {
    const odd = () => Math.floor(Math.random() * 4000) * 2 + 1;
    const batch = Array.from({ length: 30 }, () => [odd(), "added"]);
    await put(db, "s", batch);
    added += batch.length;
    if (added < 3000) setTimeout(grow, 0);
  };
  grow();
})();
"""


@pytest.mark.parametrize("consistency", ["batched", "snapshot"])
def test_a_store_growing_while_read_loses_nothing_and_repeats_nothing(
    static_server: StaticServer, chromium: BrowserSettings, consistency: str
) -> None:
    url = static_server.add("growing.html", _page(GROWING))
    read = read_page(url, chromium, batch_size=25, consistency=consistency)
    keys = [int(key) for key, _ in read.records["d/s"]]
    assert keys == sorted(set(keys)), "keys repeated or out of order"
    assert set(range(0, 4000, 2)) <= set(keys), "a record that existed at the start was lost"
    assert read.complete["d/s"] and read.problems == []


@pytest.mark.parametrize(
    "names",
    [
        pytest.param([n for n in NAMES if n != "\ud800"], id="odd"),
        # UTF-8 (spool, state) cannot hold a lone surrogate: it is written as a \uXXXX escape.
        pytest.param(["a", "\ud800"], id="lone-surrogate"),
    ],
)
def test_odd_names_through_a_whole_harvest(
    tmp_path: Path, static_server: StaticServer, names: list[str]
) -> None:
    url = static_server.add("names.html", _page(ODD_NAMES % json.dumps(names)))
    result = harvest(tmp_path, url, 'page_timeout = "5s"')
    assert result.run.status == "read", result.run.error
    assert sorted((str(r["db_name"]), str(r["store"])) for r in result.rows) == sorted(
        (escape_surrogates(db), escape_surrogates(s)) for db in names for s in names
    )
    assert result.spool is not None
    with StateDB.open(tmp_path / "state") as state:
        assert commit(state, result.spool)
        stored = {(s.db, s.store) for s in state.list_stores(target="app")}
    assert stored == {(str(r["db_name"]), str(r["store"])) for r in result.rows}
