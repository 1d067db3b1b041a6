"""The ticker page of watch mode's test and benchmarks, and what reached Flink's default sink.

The page (served by `WatchPageServer(TICKER_PAGE)`) holds database `app` with a store `big` of
`?big=` records (default 20,000), written once at the first open, and a store `ticks`. It
writes nothing until told: `tick` writes `count` records `{at: Date.now()}` into `ticks`, one
every `every` ms, and reports each key and `at` once committed; `put` writes into any database
and store, creating them (a version change) as needed; `drop` deletes a database; `worker`, `shared`
and `frame` write `key` into `ticks` from a dedicated worker, a shared worker and a same-origin
frame. Every write
is reported to the server (`WatchPageServer.wrote()`), so a test knows what to expect.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from tests.support.poller import Poller

TICKER_PAGE = """<!doctype html><meta charset="utf-8"><title>ticker</title><script>
const params = new URLSearchParams(location.search);
const big = Number(params.get("big") || 20000);
const tab = Math.random().toString(36).slice(2, 10);
function opened(name, version, upgrade) {
  return new Promise((resolve, reject) => {
    const r = version ? indexedDB.open(name, version) : indexedDB.open(name);
    r.onupgradeneeded = () => upgrade && upgrade(r.result, r.transaction);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.onblocked = () => reject(new Error("blocked"));
  });
}
function report(what) {
  return fetch("/wrote", {method: "POST", body: JSON.stringify(what)});
}
function committed(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}
async function put(c) {
  let db = await opened(c.db);
  if (!db.objectStoreNames.contains(c.store)) {
    const version = db.version + 1;
    db.close();
    db = await opened(c.db, version, (d) => d.createObjectStore(c.store));
  }
  const tx = db.transaction(c.store, "readwrite");
  tx.objectStore(c.store).put(c.value, c.key);
  await committed(tx);
  db.close();
  await report({db: c.db, store: c.store, key: c.key});
}
function drop(c) {
  const r = indexedDB.deleteDatabase(c.db);
  r.onsuccess = () => report({dropped: c.db});
}
// Writes from other contexts of the same storage key: a dedicated worker, a shared worker and
// a same-origin frame. (Not a second tab: the daemon closes the popups a watched page opens.)
const WRITE = `function write(key, from) {
  const r = indexedDB.open("app");
  r.onsuccess = () => {
    const tx = r.result.transaction("ticks", "readwrite");
    tx.objectStore("ticks").put({at: Date.now(), from}, key);
    tx.oncomplete = () => {
      r.result.close();
      fetch("${location.origin}/wrote", {method: "POST",
        body: JSON.stringify({db: "app", store: "ticks", key, from})});
    };
  };
}`;
const WORKER = WRITE + `onmessage = (e) => write(e.data, "worker");`;
const SHARED = WRITE + `onconnect = (e) => {
  e.ports[0].onmessage = (m) => write(m.data, "shared");
};`;
function script(text) {
  return URL.createObjectURL(new Blob([text], {type: "text/javascript"}));
}
async function fromFrame(key) {
  const db = await opened("app");
  const tx = db.transaction("ticks", "readwrite");
  tx.objectStore("ticks").put({at: Date.now(), from: "frame"}, key);
  await committed(tx);
  db.close();
  await report({db: "app", store: "ticks", key, from: "frame"});
}
async function start() {
  if (params.get("frame")) return fromFrame(params.get("frame"));
  const app = await opened("app", 1, (db) => {
    const store = db.createObjectStore("big");
    db.createObjectStore("ticks");
    for (let i = 0; i < big; i++) store.put({i, text: `record ${i} `.padEnd(200, "x")}, i);
  });
  function tick(c) {
    let n = 0;
    const timer = setInterval(() => {
      if (n >= c.count) return clearInterval(timer);
      const key = `${tab}-${n++}`, at = Date.now();
      const tx = app.transaction("ticks", "readwrite");
      tx.objectStore("ticks").put({at}, key);
      tx.oncomplete = () => report({db: "app", store: "ticks", key, at});
    }, c.every);
  }
  const events = new EventSource("/events");
  events.onmessage = (message) => {
    const c = JSON.parse(message.data);
    if (c.op === "tick") tick(c);
    else if (c.op === "put") put(c);
    else if (c.op === "drop") drop(c);
    else if (c.op === "worker") new Worker(script(WORKER)).postMessage(c.key);
    else if (c.op === "shared") new SharedWorker(script(SHARED)).port.postMessage(c.key);
    else if (c.op === "frame") {
      const frame = document.createElement("iframe");
      frame.src = `${location.pathname}?frame=${encodeURIComponent(c.key)}`;
      document.body.append(frame);
    }
  };
  events.onopen = () => { window.watchReady = true; };
}
start();
</script>"""


class SinkRows(Poller):
    """The rows of the committed part files under `folder` (Flink's default `changes` sink), each
    with the wall time it was first seen there, polled every `interval` s in a thread while the
    `with` block runs. Committed part files never change, so each is read once; in-progress
    ones are dot-files."""

    def __init__(self, folder: Path, interval: float = 0.05) -> None:
        super().__init__(interval)
        self.folder = folder
        self._seen: set[Path] = set()
        self._rows: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def poll(self) -> None:
        for directory, _folders, names in os.walk(self.folder):
            for name in names:
                path = Path(directory, name)
                if name.startswith((".", "_")) or path in self._seen:
                    continue
                self._seen.add(path)
                now = time.time()
                with path.open("rb") as file:
                    fresh = [(now, orjson.loads(line)) for line in file if line.strip()]
                with self._lock:
                    self._rows.extend(fresh)

    def rows(self) -> list[tuple[float, dict[str, Any]]]:
        """(first seen, row) for every row so far."""
        with self._lock:
            return list(self._rows)


def tick_delays(
    wrote: list[dict[str, Any]], rows: list[tuple[float, dict[str, Any]]]
) -> dict[str, float | None]:
    """For each tick the page's timer reported, seconds from its write (`at`, the page's clock)
    to its `+I` row first seen in the sink; None for a tick not there (yet)."""
    seen = {
        orjson.loads(row["key"]): at
        for at, row in rows
        if row["store"] == "ticks" and row["op"] == "+I"
    }
    delays: dict[str, float | None] = {}
    for write in wrote:
        if write.get("store") == "ticks" and "at" in write:
            found = seen.get(write["key"])
            delays[write["key"]] = None if found is None else found - write["at"] / 1000
    return delays
