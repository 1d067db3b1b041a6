"""How batches cross from the page: deflated when that pays, hash first when asked, and the same
records either way, whatever the page did to the built-ins the reader uses for it."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from harvester.config import BrowserSettings
from harvester.reader import OriginReader
from tests.support.reader import PRELUDE, Read, read_all, read_page
from tests.support.server import StaticServer

pytestmark = pytest.mark.browser

# "d/text": 3000 records of some 300 bytes that deflate well (non-ASCII and astral characters
# too); "d/noise": 1500 records of 2 KB pseudo-random base64, which hardly deflates.
STORES = """
(async () => {
  const db = await openDb("d", 1, (db) => {
    db.createObjectStore("text");
    db.createObjectStore("noise");
  });
  const words = ["order", "paid", "shipped", "é", "𝄞", "naïve", "\\u2028", "x\\ny"];
  await put(db, "text", Array.from({ length: 3000 }, (_, i) => [i, {
    i, note: Array.from({ length: 40 }, (_, j) => words[(i * 7 + j) % words.length]).join(" "),
  }]));
  let seed = 12345; // the same noise on every load
  const byte = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
  const noise = () => {
    const bytes = new Uint8Array(1536).map(byte);
    return btoa(String.fromCharCode(...bytes));
  };
  await put(db, "noise", Array.from({ length: 1500 }, (_, i) => ["k" + i, noise()]));
  db.close();
  window.ready = true;
})();
"""

# What the reader's transport could lean on, replaced by the page once it is ready.
BREAK_TRANSPORT = """() => {
  window.CompressionStream = function () { throw new Error("CompressionStream patched"); };
  window.Blob = function () { throw new Error("Blob patched"); };
  window.Response = function () { throw new Error("Response patched"); };
  window.TextEncoder = function () { throw new Error("TextEncoder patched"); };
  window.btoa = () => "hacked";
  String.fromCharCode = () => "hacked";
  Uint8Array.prototype.toBase64 = () => "hacked";
  Uint8Array.prototype.subarray = () => new Uint8Array(0);
  ReadableStream.prototype.pipeThrough = () => { throw new Error("pipeThrough patched"); };
  Object.defineProperty(crypto, "subtle", { get() { throw new Error("no subtle"); } });
  Math.imul = () => 0;
}"""


def _url(static_server: StaticServer) -> str:
    return static_server.add("stores.html", PRELUDE + "<script>" + STORES + "</script>")


async def _three_ways(page: Page, reader: OriginReader) -> tuple[Read, Read, Read]:
    deflated = await read_all(OriginReader(page, limits=reader.limits, compress=True))
    return await read_all(reader), deflated, await read_all(reader, hash_first=True)


async def _broken_then_three_ways(page: Page, reader: OriginReader) -> tuple[Read, Read, Read]:
    await page.evaluate(BREAK_TRANSPORT)
    return await _three_ways(page, reader)


def test_deflated_plain_and_hash_first_reads_give_the_same_records(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    plain, deflated, hashed = read_page(_url(static_server), chromium, then=_three_ways)
    assert len(plain.records["d/text"]) == 3000 and len(plain.records["d/noise"]) == 1500
    assert deflated.records == plain.records == hashed.records
    assert plain.compressed == {"d/text": 0, "d/noise": 0}
    assert deflated.compressed["d/text"] == len(deflated.batches["d/text"]) > 1
    # Random bytes do not shrink: after the first batch, the page sends them as they are.
    assert deflated.compressed["d/noise"] == 1 < len(deflated.batches["d/noise"])
    assert all(read.problems == [] and all(read.complete.values()) for read in (deflated, hashed))
    # Every value was asked for: after the batches the page had made ahead, values come along.
    assert plain.hashed == deflated.hashed == {"d/text": 0, "d/noise": 0}
    assert 0 < hashed.hashed["d/text"] < len(hashed.batches["d/text"])


def test_a_page_that_replaces_what_the_transport_uses_is_read_right(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    clean, _, _ = read_page(_url(static_server), chromium, then=_three_ways)
    plain, deflated, hashed = read_page(_url(static_server), chromium, then=_broken_then_three_ways)
    assert plain.records == deflated.records == hashed.records == clean.records
    assert deflated.compressed["d/text"] > 0
    assert all(read.problems == [] for read in (plain, deflated, hashed))
