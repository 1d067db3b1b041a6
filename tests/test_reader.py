"""The IndexedDB reader against real Chromium pages: every type, keys, batches, hostile pages."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from playwright.async_api import Page

from harvester import codec
from harvester.config import BrowserSettings
from harvester.errors import EvaluateTimeoutError, ReaderError
from harvester.reader import (
    DatabaseSchema,
    IndexSchema,
    OriginReader,
    Problem,
    StoreRead,
    StoreSchema,
)
from tests.support.reader import PRELUDE, Read, read_all, read_page
from tests.support.server import StaticServer
from tests.support.values import graphs

pytestmark = pytest.mark.browser

# --- every type ---------------------------------------------------------------------------------

TYPES_PAGE = (
    PRELUDE
    + """<script>
(async () => {
  const db = await openDb("types", 1, (db) => db.createObjectStore("values"));
  const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 128 }, false, ["encrypt"]);
  const cyclic = { name: "c" };
  cyclic.self = cyclic;
  const shared = [1, 2];
  const sparse = [1, , 3];
  sparse.x = "y";
  const objectKey = { k: 1 };
  const values = {
    null: null, true: true, false: false, number: 1.5, integer: -7, big_number: 1e21,
    tiny: 5e-7, nan: NaN, negative_zero: -0, infinity: Infinity, minus_infinity: -Infinity,
    bigint: 12345678901234567890n, undefined: undefined, string: 'é"\\n\\u2028😀',
    lone_surrogates: "\\ud800x\\udfff", date: new Date(Date.UTC(1999, 11, 31, 23, 59, 59, 999)),
    invalid_date: new Date(NaN), far_date: new Date(8.64e15), regexp: /ab+c/gi,
    map: new Map([[objectKey, "v"], ["b", 2], [objectKey.k, objectKey]]),
    set: new Set([3, 1, 2, "1"]), bytes: new Uint8Array([1, 2, 3]).buffer,
    float64: new Float64Array([1.5]), int16: new Int16Array([-2, 3]),
    bigint64: new BigInt64Array([-1n]), dataview: new DataView(new ArrayBuffer(2)),
    view_of_part: new Uint8Array(new Uint8Array([9, 8, 7, 6]).buffer, 1, 2),
    blob: new Blob(["hi"], { type: "text/plain" }),
    file: new File(["x"], "a.txt", { type: "text/plain", lastModified: 5 }),
    sparse, holes: new Array(3), empty_array: [], dense: [undefined, null],
    boxed: [new Number(3), new String("s"), new Boolean(false), Object(5n), new Number(NaN)],
    error: new TypeError("boom"), range_error: new RangeError("far"),
    cyclic, shared: { a: shared, b: shared, c: [shared] }, escaped: { $x: 1, y: { $ref: "no" } },
    key, nested: { z: { y: [{ x: 1 }] }, a: [] },
    sorted: { b: 1, a: 2, 10: 3, 9: 4, "é": 5, "😀": 6, "\\uff00": 7 },
    empty_object: {}, proto_key: JSON.parse('{"__proto__": 1}'),
  };
  await put(db, "values", Object.entries(values));
  db.close();
  window.ready = true;
})();
</script>"""
)

EXPECTED_VALUES = {
    '"null"': "null",
    '"true"': "true",
    '"false"': "false",
    '"number"': "1.5",
    '"integer"': "-7",
    '"big_number"': "1e+21",
    '"tiny"': "5e-7",
    '"nan"': '{"$number":"NaN"}',
    '"negative_zero"': '{"$number":"-0"}',
    '"infinity"': '{"$number":"Infinity"}',
    '"minus_infinity"': '{"$number":"-Infinity"}',
    '"bigint"': '{"$bigint":"12345678901234567890"}',
    '"undefined"': '{"$undefined":true}',
    '"string"': '"é\\"\\n\u2028😀"',
    '"lone_surrogates"': '"\\ud800x\\udfff"',
    '"date"': '{"$date":"1999-12-31T23:59:59.999Z"}',
    '"invalid_date"': '{"$date":null}',
    '"far_date"': '{"$date":"+275760-09-13T00:00:00.000Z"}',
    '"regexp"': '{"$regexp":{"flags":"gi","source":"ab+c"}}',
    '"map"': '{"$map":[[{"k":1},"v"],["b",2],[1,{"$ref":"/$map/0/0"}]]}',
    '"set"': '{"$set":[3,1,2,"1"]}',
    '"bytes"': '{"$bytes":"AQID"}',
    '"float64"': '{"$typed":{"bytes":"AAAAAAAA+D8=","type":"Float64Array"}}',
    '"int16"': '{"$typed":{"bytes":"/v8DAA==","type":"Int16Array"}}',
    '"bigint64"': '{"$typed":{"bytes":"//////////8=","type":"BigInt64Array"}}',
    '"dataview"': '{"$typed":{"bytes":"AAA=","type":"DataView"}}',
    '"view_of_part"': '{"$typed":{"bytes":"CAc=","type":"Uint8Array"}}',
    '"blob"': '{"$blob":{"bytes":"aGk=","size":2,"type":"text/plain"}}',
    '"file"': (
        '{"$blob":{"bytes":"eA==","lastModified":5,"name":"a.txt","size":1,"type":"text/plain"}}'
    ),
    '"sparse"': '{"$array":{"items":{"0":1,"2":3,"x":"y"},"length":3}}',
    '"holes"': '{"$array":{"items":{},"length":3}}',
    '"empty_array"': "[]",
    '"dense"': '[{"$undefined":true},null]',
    '"boxed"': (
        '[{"$boxed":3},{"$boxed":"s"},{"$boxed":false},{"$boxed":{"$bigint":"5"}},'
        '{"$boxed":{"$number":"NaN"}}]'
    ),
    '"error"': '{"$error":{"message":"boom","name":"TypeError"}}',
    '"range_error"': '{"$error":{"message":"far","name":"RangeError"}}',
    '"cyclic"': '{"name":"c","self":{"$ref":""}}',
    '"shared"': '{"a":[1,2],"b":{"$ref":"/a"},"c":[{"$ref":"/a"}]}',
    '"escaped"': '{"$object":{"$x":1,"y":{"$object":{"$ref":"no"}}}}',
    '"key"': (
        '{"$opaque":{"algorithm":{"length":128,"name":"AES-GCM"},"extractable":false,'
        '"keyType":"secret","reason":"CryptoKey is not extractable","type":"CryptoKey",'
        '"usages":["encrypt"]}}'
    ),
    '"nested"': '{"a":[],"z":{"y":[{"x":1}]}}',
    '"sorted"': '{"10":3,"9":4,"a":2,"b":1,"é":5,"😀":6,"\uff00":7}',
    '"empty_object"': "{}",
    '"proto_key"': '{"__proto__":1}',
}


def test_every_type_is_read_back_exactly(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    read = read_page(static_server.add("types.html", TYPES_PAGE), chromium)
    assert read.values("types/values") == EXPECTED_VALUES
    # In key order (IndexedDB orders string keys by code unit, as sorted() on UTF-16 does).
    keys = [key for key, _ in read.records["types/values"]]
    assert keys == sorted(keys, key=lambda k: json.loads(k).encode("utf-16-be", "surrogatepass"))
    assert read.complete == {"types/values": True}
    assert read.problems == [
        Problem("types", "values", '"key"', "value: CryptoKey is not extractable")
    ]
    # And Python reads the same text back into the same text.
    for text in EXPECTED_VALUES.values():
        assert codec.canonical(codec.decode(text)) == text


KEYS_PAGE = (
    PRELUDE
    + """<script>
(async () => {
  const db = await openDb("keys", 1, (db) => {
    db.createObjectStore("any");
    db.createObjectStore("compound", { keyPath: ["a", "b"] });
    db.createObjectStore("auto", { keyPath: "id", autoIncrement: true })
      .createIndex("by_tag", "tags", { multiEntry: true });
    db.createObjectStore("nested_path", { keyPath: "meta.id" })
      .createIndex("u", "x", { unique: true });
    db.createObjectStore("typed_path", { keyPath: ["bin", "when"] });
    db.createObjectStore("itself", { keyPath: "" });
  });
  await put(db, "any", [
    [0, "zero"], ["", "empty string"], [-1.5, "negative"], [Infinity, "inf"], [-Infinity, "-inf"],
    [new Date(0), "epoch"], [new Date(-1), "before epoch"], [new Uint8Array([0, 255]), "binary"],
    [new Uint8Array([]).buffer, "empty binary"], [[], "empty array"],
    [[0, "", [new Date(5)]], "compound"],
    ["\\ud800", "lone surrogate"], ["z", "z"],
  ]);
  await put(db, "compound", [
    [undefined, { a: 1, b: "x" }], [undefined, { a: 1, b: "" }], [undefined, { a: 0, b: "y" }],
  ]);
  await put(db, "auto", [[undefined, { tags: ["a", "b"] }], [undefined, { tags: [] }]]);
  await put(db, "nested_path", [[undefined, { meta: { id: "m" }, x: 1 }]]);
  const bytes = new Uint8Array([7, 1, 2, 3]);
  await put(db, "typed_path", [
    [undefined, { bin: new Uint8Array(bytes.buffer, 1, 2), when: new Date(3) }],
    [undefined, { bin: new Uint16Array([1]), when: new Date(0) }],
  ]);
  await put(db, "itself", [[undefined, "b"], [undefined, "a"]]);
  db.close();
  window.ready = true;
})();
</script>"""
)


def test_keys_of_every_kind_in_key_order(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    read = read_page(static_server.add("keys.html", KEYS_PAGE), chromium, batch_size=2)
    assert read.records["keys/any"] == [
        ('{"$number":"-Infinity"}', '"-inf"'),
        ("-1.5", '"negative"'),
        ("0", '"zero"'),
        ('{"$number":"Infinity"}', '"inf"'),
        ('{"$date":"1969-12-31T23:59:59.999Z"}', '"before epoch"'),
        ('{"$date":"1970-01-01T00:00:00.000Z"}', '"epoch"'),
        ('""', '"empty string"'),
        ('"z"', '"z"'),
        ('"\\ud800"', '"lone surrogate"'),
        ('{"$bytes":""}', '"empty binary"'),
        ('{"$bytes":"AP8="}', '"binary"'),
        ("[]", '"empty array"'),
        ('[0,"",[{"$date":"1970-01-01T00:00:00.005Z"}]]', '"compound"'),
    ]
    assert [k for k, _ in read.records["keys/compound"]] == ['[0,"y"]', '[1,""]', '[1,"x"]']
    assert read.records["keys/auto"] == [
        ("1", '{"id":1,"tags":["a","b"]}'),
        ("2", '{"id":2,"tags":[]}'),
    ]
    assert read.records["keys/nested_path"] == [('"m"', '{"meta":{"id":"m"},"x":1}')]
    # Keys found in the values at their key paths, converted as IndexedDB converts them.
    assert [k for k, _ in read.records["keys/typed_path"]] == [
        '[{"$bytes":"AQA="},{"$date":"1970-01-01T00:00:00.000Z"}]',
        '[{"$bytes":"AQI="},{"$date":"1970-01-01T00:00:00.003Z"}]',
    ]
    assert read.records["keys/itself"] == [('"a"', '"a"'), ('"b"', '"b"')]
    assert all(size <= 2 for sizes in read.batches.values() for size in sizes)
    (db,) = read.schema
    assert db == DatabaseSchema(
        "keys",
        1,
        (
            StoreSchema("keys", 1, "any", None, False, (), 13),
            StoreSchema(
                "keys", 1, "auto", "id", True, (IndexSchema("by_tag", "tags", False, True),), 2
            ),
            StoreSchema("keys", 1, "compound", ["a", "b"], False, (), 3),
            StoreSchema("keys", 1, "itself", "", False, (), 2),
            StoreSchema(
                "keys", 1, "nested_path", "meta.id", False, (IndexSchema("u", "x", True, False),), 1
            ),
            StoreSchema("keys", 1, "typed_path", ["bin", "when"], False, (), 2),
        ),
    )


# --- batches, limits, consistency ---------------------------------------------------------------

MANY_PAGE = (
    PRELUDE
    + """<script>
(async () => {
  const db = await openDb("many", 1, (db) => {
    db.createObjectStore("records");
    db.createObjectStore("empty");
    db.createObjectStore("big");
  });
  const n = Number(new URLSearchParams(location.search).get("n"));
  for (let start = 0; start < n; start += 5000) {
    const entries = [];
    for (let i = start; i < Math.min(n, start + 5000); i++) entries.push([i, { i, s: "v" + i }]);
    await put(db, "records", entries);
  }
  await put(db, "big", [["a", "x".repeat(1 << 20)], ["b", "é".repeat(1 << 20)], ["c", 1]]);
  db.close();
  (await openDb("no_stores", 3)).close();
  window.ready = true;
})();
</script>"""
)


@pytest.mark.slow
@pytest.mark.parametrize("consistency", ["batched", "snapshot"])
def test_25000_records_across_batches_none_lost_or_repeated(
    static_server: StaticServer, chromium: BrowserSettings, consistency: str
) -> None:
    url = static_server.add("many.html", MANY_PAGE) + "?n=25000"
    read = read_page(
        url, chromium, stores=("many/records",), batch_size=1000, consistency=consistency
    )
    records = read.records["many/records"]
    assert [k for k, _ in records] == [str(i) for i in range(25000)]
    assert all(v == f'{{"i":{i},"s":"v{i}"}}' for i, (_, v) in enumerate(records))
    sizes = read.batches["many/records"]
    assert max(sizes) == 1000
    assert len(sizes) >= 25
    assert read.complete == {"many/records": True}
    assert read.problems == []


def test_big_strings_empty_store_and_database_without_stores(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add("many.html", MANY_PAGE) + "?n=3"
    read = read_page(url, chromium, max_batch_bytes=1 << 20)
    assert [(db.name, [s.name for s in db.stores]) for db in read.schema] == [
        ("many", ["big", "empty", "records"]),
        ("no_stores", []),
    ]
    assert read.schema[1].version == 3
    big = read.values("many/big")
    assert big['"a"'] == '"' + "x" * (1 << 20) + '"'
    assert big['"b"'] == '"' + "é" * (1 << 20) + '"'
    # The byte bound cut batches down: each 1 MB string came in a batch of its own.
    assert read.batches["many/big"] == [1, 1, 1]
    assert read.records["many/empty"] == []
    assert read.batches["many/empty"] == []
    assert read.complete == {"many/big": True, "many/empty": True, "many/records": True}


def test_max_records_cuts_the_store_and_says_so(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add("many.html", MANY_PAGE) + "?n=10"
    for consistency in ("batched", "snapshot"):
        read = read_page(
            url,
            chromium,
            stores=("many/records", "many/big"),
            max_records=3,
            batch_size=2,
            consistency=consistency,
        )
        assert [k for k, _ in read.records["many/records"]] == ["0", "1", "2"]
        assert read.complete == {"many/big": True, "many/records": False}
        assert [p.message for p in read.problems] == ["stopped after limits.max_records=3 records"]


def test_selection_by_database_and_store_globs(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add("many.html", MANY_PAGE) + "?n=1"
    read = read_page(url, chromium, databases=("m*",), stores=("*/e*", "many/rec*"))
    assert list(read.records) == ["many/empty", "many/records"]
    read = read_page(url, chromium, databases=("no_*",))
    assert [db.name for db in read.schema] == ["no_stores"]


def test_blob_over_max_value_bytes_keeps_its_sha256(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    page = (
        PRELUDE
        + """<script>
(async () => {
  const db = await openDb("blobs", 1, (db) => db.createObjectStore("b"));
  const bytes = new Uint8Array(300000).map((_, i) => (i * 7) % 251);
  const file = new File([bytes], "big.bin", { type: "application/x-big", lastModified: 7 });
  await put(db, "b", [["small", new Blob([bytes.slice(0, 100)])], ["large", file]]);
  db.close();
  window.ready = true;
})();
</script>"""
    )
    read = read_page(static_server.add("blobs.html", page), chromium, max_value_bytes=1000)
    data = bytes((i * 7) % 251 for i in range(300000))
    values = read.values("blobs/b")
    assert codec.decode(values['"small"']) == codec.Blob("", 100, data[:100])
    assert codec.decode(values['"large"']) == codec.File(
        "application/x-big",
        300000,
        None,
        sha256=hashlib.sha256(data).hexdigest(),
        truncated=True,
        name="big.bin",
        last_modified=7,
    )


# --- hostile and broken pages ---------------------------------------------------------------------

HOSTILE_PAGE = (
    PRELUDE
    + """<script>
(async () => {
  const db = await openDb("h", 1, (db) => db.createObjectStore("s"));
  await put(db, "s", [[1, { a: [1, 2], d: new Date(0), m: new Map([[1, 2]]) }], [2, "two"]]);
  db.close();
  window.ready = true;
})();
// Everything a reader could lean on, broken; run once the page is ready (Playwright's own
// readiness check needs the page's Promise).
window.breakEverything = () => {
  JSON.stringify = () => "HACKED";
  JSON.parse = () => ({ hacked: true });
  IDBObjectStore.prototype.getAll = function () { throw new Error("getAll patched"); };
  IDBObjectStore.prototype.getAllRecords = function () { throw new Error("patched"); };
  IDBObjectStore.prototype.getAllKeys = function () { throw new Error("patched"); };
  IDBFactory.prototype.open = function () { throw new Error("open patched"); };
  IDBFactory.prototype.databases = async () => [];
  Object.defineProperty(window, "indexedDB", { value: { databases: async () => [] } });
  Array.prototype.map = function () { return ["hacked"]; };
  Array.prototype.join = function () { return "hacked"; };
  Array.prototype.sort = function () { return this.reverse(); };
  Object.keys = () => [];
  Map.prototype[Symbol.iterator] = function* () { yield ["hacked", 1]; };
  Date.prototype.toISOString = () => "hacked";
  window.Promise = function () { throw new Error("Promise patched"); };
  window.broken = true;
};
</script>"""
)


async def _break_then_read(page: Page, reader: OriginReader) -> Read:
    await page.evaluate("setTimeout(window.breakEverything, 0)")
    # Polled from here: Playwright's own waiting runs in the page and meets the patched Promise.
    for _ in range(1200):
        if await page.evaluate("window.broken === true"):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the page never broke its built-ins: the test would prove nothing")
    return await read_all(reader)


def test_hostile_page_cannot_change_what_is_read(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    read = read_page(
        static_server.add("hostile.html", HOSTILE_PAGE), chromium, then=_break_then_read
    )
    assert read.records == {
        "h/s": [
            ("1", '{"a":[1,2],"d":{"$date":"1970-01-01T00:00:00.000Z"},"m":{"$map":[[1,2]]}}'),
            ("2", '"two"'),
        ]
    }
    assert read.problems == []


BLOCKED_PAGE = (
    PRELUDE
    + """<script>
(async () => {
  const ok = await openDb("ok", 1, (db) => db.createObjectStore("s"));
  await put(ok, "s", [[1, "fine"]]);
  ok.close();
  // Held open and never closed on versionchange: the upgrade below waits for ever, and every
  // later open of "blocked" queues behind it.
  const held = await openDb("blocked", 1, (db) => db.createObjectStore("s"));
  window.held = held;
  const upgrade = indexedDB.open("blocked", 2);
  upgrade.onblocked = () => { window.ready = true; };
})();
</script>"""
)


def test_blocked_database_is_a_problem_and_the_rest_is_read(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    read = read_page(static_server.add("blocked.html", BLOCKED_PAGE), chromium, page_timeout="3s")
    assert read.records == {"ok/s": [("1", '"fine"')]}
    (problem,) = read.problems
    assert (problem.db, problem.store, problem.key) == ("blocked", None, None)
    assert problem.message.startswith("cannot open: could not be opened within 1s")


async def _upgrade_while_reading(page: Page, reader: OriginReader) -> tuple[int, StoreRead]:
    (db,) = await reader.schema()
    read = reader.read_store(db.stores[0])
    seen = 0
    async for batch in read:
        seen += len(batch)
        if seen == 10:
            # The page upgrades its database: we must let go (not block it) and report.
            await page.evaluate(
                "openDb('u', 2, (db) => db.createObjectStore('new')).then((db) => db.close())"
            )
    return seen, read


def test_store_that_fails_while_read_is_a_problem_and_connections_let_go(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    page = (
        PRELUDE
        + """<script>
(async () => {
  const db = await openDb("u", 1, (db) => db.createObjectStore("s"));
  await put(db, "s", Array.from({ length: 200 }, (_, i) => [i, i]));
  db.close();
  window.ready = true;
})();
</script>"""
    )
    seen, read = read_page(
        static_server.add("upgrade.html", page),
        chromium,
        then=_upgrade_while_reading,
        batch_size=10,
    )
    assert 10 <= seen < 200
    assert read.complete is False
    assert read.records == seen
    assert "upgraded or deleted the database while it was read" in read.problems[-1].message


# Counts, in the reader's isolated world, the connections closed; the DOM is shared between
# worlds, so the page's world can read the count. Nothing asks for a version change here (which
# would make the reader close them itself), so only `close()` can close them.
_COUNT_CLOSES = """(() => {
  const close = IDBDatabase.prototype.close;
  IDBDatabase.prototype.close = function () {
    const root = document.documentElement;
    root.dataset.closed = String(Number(root.dataset.closed || 0) + 1);
    return close.call(this);
  };
})()"""


async def _closes(page: Page, reader: OriginReader) -> tuple[str | None, str | None]:
    await read_all(reader)
    await reader._evaluate(_COUNT_CLOSES, "count closes")
    before = await page.evaluate("document.documentElement.dataset.closed ?? null")
    await reader.close()
    after = await page.evaluate("document.documentElement.dataset.closed ?? null")
    return before, after


def test_close_closes_every_connection(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add("many.html", MANY_PAGE) + "?n=5"
    # The reader opened two databases, "many" and "no_stores".
    assert read_page(url, chromium, then=_closes) == (None, "2")


async def _read_while_hung(page: Page, reader: OriginReader) -> None:
    await reader.schema()
    await page.evaluate(
        "setTimeout(() => { const end = Date.now() + 4000; while (Date.now() < end); }, 0)"
    )
    await reader.schema()


def test_a_hung_page_times_out(static_server: StaticServer, chromium: BrowserSettings) -> None:
    url = static_server.add("many.html", MANY_PAGE) + "?n=1"
    with pytest.raises(EvaluateTimeoutError, match="within 1s"):
        read_page(url, chromium, then=_read_while_hung, page_timeout="1s")


# --- the page and Python write the same text ------------------------------------------------------

# Builds JavaScript values from typed JSON (the reverse of the reader's encoder), so that values
# generated in Python can be stored by the page and read back.
REVIVER_PAGE = (
    PRELUDE
    + """<script>
const esc = (s) => String(s).replaceAll("~", "~0").replaceAll("/", "~1");
const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const ERRORS = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
function define(o, k, v) {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}
// The text's member order (UTF-16 code units), in which a `$ref` target comes before the
// reference: JSON.parse puts integer-like names first.
const members = (o) => Object.keys(o).sort();
function revive(node, path, refs) {
  if (node === null || typeof node !== "object") return node;
  if (Array.isArray(node)) {
    const out = [];
    refs.set(path, out);
    node.forEach((x, i) => out.push(revive(x, path + "/" + i, refs)));
    return out;
  }
  const keys = Object.keys(node);
  if (keys.length === 1 && keys[0][0] === "$") {
    const name = keys[0], p = node[name], inner = path + "/" + esc(name);
    switch (name) {
      case "$undefined": return undefined;
      case "$number": return { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity, "-0": -0 }[p];
      case "$bigint": return BigInt(p);
      case "$date": return new Date(p === null ? NaN : p);
      case "$regexp": return new RegExp(p.source, p.flags);
      case "$bytes": return bytes(p).buffer;
      case "$typed": return p.type === "DataView" ? new DataView(bytes(p.bytes).buffer)
                                                  : new globalThis[p.type](bytes(p.bytes).buffer);
      case "$blob": return "name" in p
        ? new File([bytes(p.bytes)], p.name, { type: p.type, lastModified: p.lastModified })
        : new Blob([bytes(p.bytes)], { type: p.type });
      case "$error": return new ERRORS[p.name](p.message);
      case "$boxed": return Object(revive(p, inner, refs));
      case "$ref": return refs.get(p);
      case "$object": {
        const o = {};
        refs.set(path, o);
        for (const k of members(p)) define(o, k, revive(p[k], inner + "/" + esc(k), refs));
        return o;
      }
      case "$map": {
        const m = new Map();
        refs.set(path, m);
        p.forEach(([k, v], i) =>
          m.set(revive(k, `${inner}/${i}/0`, refs), revive(v, `${inner}/${i}/1`, refs)));
        return m;
      }
      case "$set": {
        const s = new Set();
        refs.set(path, s);
        p.forEach((v, i) => s.add(revive(v, `${inner}/${i}`, refs)));
        return s;
      }
      case "$array": {
        const a = new Array(p.length);
        refs.set(path, a);
        for (const k of members(p.items)) {
          define(a, k, revive(p.items[k], `${inner}/items/${esc(k)}`, refs));
        }
        return a;
      }
    }
    throw new Error("cannot revive " + name);
  }
  const o = {};
  refs.set(path, o);
  for (const k of members(node)) define(o, k, revive(node[k], path + "/" + esc(k), refs));
  return o;
}
window.store = async (texts) => {
  const values = JSON.parse(texts).map((t) => revive(JSON.parse(t), "", new Map()));
  const db = await openDb("agree", 1, (db) => db.createObjectStore("values"));
  await put(db, "values", values.map((v, i) => [i, v]));
  db.close();
};
window.ready = true;
</script>"""
)


def _store_then_read(texts: list[str]) -> Callable[[Page, OriginReader], Awaitable[list[str]]]:
    async def go(page: Page, reader: OriginReader) -> list[str]:
        await page.evaluate("(texts) => window.store(texts)", json.dumps(texts))
        read = await read_all(reader)
        return [value for _, value in read.records["agree/values"]]

    return go


@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # shrinking values through a browser takes ages
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # the server and browser settings hold no state
    ],
)
# Past about 50 graphs an example outgrows Hypothesis's choice budget and generating it takes
# tens of seconds; more, smaller examples cover as much.
@given(values=st.lists(graphs(with_opaque=False), min_size=40, max_size=40))
def test_page_and_python_write_the_same_canonical_text(
    values: list[Any], static_server: StaticServer, chromium: BrowserSettings
) -> None:
    texts = [codec.canonical(v) for v in values]
    url = static_server.add("agree.html", REVIVER_PAGE)
    written = read_page(url, chromium, then=_store_then_read(texts))
    assert len(written) == len(texts)
    for python, page in zip(texts, written, strict=True):
        assert page == python


def test_base64_of_binary_matches_python(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    data = bytes(range(256)) * 3
    text = codec.canonical(data)
    assert text == '{"$bytes":"' + base64.b64encode(data).decode() + '"}'
    url = static_server.add("agree.html", REVIVER_PAGE)
    assert read_page(url, chromium, then=_store_then_read([text])) == [text]


async def _read_after_navigation(page: Page, reader: OriginReader) -> None:
    await reader.schema()
    await page.goto(page.url + "?again")
    await reader.schema()


def test_a_page_that_navigated_away_is_a_reader_error(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add("many.html", MANY_PAGE) + "?n=1"
    with pytest.raises(ReaderError, match="navigated away or closed"):
        read_page(url, chromium, then=_read_after_navigation)


async def _worlds_after_reads(page: Page, reader: OriginReader) -> tuple[int, list[str], int]:
    """Records read by 20 readers one after another (beside `reader`, whose world is open
    throughout, reading last), and the reader worlds the page then holds."""
    await reader.schema()
    read = 0
    for _ in range(20):
        other = OriginReader(page, limits=reader.limits, stores=reader.stores)
        try:
            read += sum(len(records) for records in (await read_all(other)).records.values())
        finally:
            await other.close()
    mine = sum(len(records) for records in (await read_all(reader)).records.values())
    session = await page.context.new_cdp_session(page)
    contexts: list[dict[str, Any]] = []
    session.on("Runtime.executionContextCreated", lambda event: contexts.append(event["context"]))
    await session.send("Runtime.enable")  # reports every context that exists now
    await session.detach()
    names = sorted(c["name"] for c in contexts if c["name"].startswith("idb-harvester"))
    return read, names, mine


def test_readers_one_after_another_reuse_one_world_and_one_open_keeps_its_own(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    # A world lives as long as the document: a new one per read grew a watched page without end.
    url = static_server.add("many.html", MANY_PAGE) + "?n=5"
    read, names, mine = read_page(url, chromium, stores=("many/records",), then=_worlds_after_reads)
    assert read == 20 * 5 and mine == 5
    assert len(names) == 2 and len(set(names)) == 2, names
