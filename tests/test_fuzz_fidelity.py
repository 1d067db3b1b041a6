"""Fidelity fuzzing: generated records stored by a real page come back from the reader unchanged,
read plainly and hash first; a value changed in one member gets another hash from the page.

One Chromium session serves every example (it runs on its own event loop in a thread, which
hypothesis calls into synchronously); each example replaces the records of one store and reads
them back, so a failure shrinks to the smallest list of records that breaks.
`HARVESTER_FUZZ_EXAMPLES` sets how many examples run, each a list of up to 16 records: the
default of 60 stores some 500 records.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from playwright.async_api import Page

from harvester import codec
from harvester.browser import TargetSession, open_target
from harvester.config import BrowserSettings, TargetSettings
from harvester.reader import OriginReader
from tests.support.fuzz import FuzzRecord, changed_values, records
from tests.support.reader import Read, read_all
from tests.support.server import StaticServer

pytestmark = pytest.mark.browser

EXAMPLES = int(os.environ.get("HARVESTER_FUZZ_EXAMPLES", "60"))
PAGE = '<!doctype html><meta charset="utf-8"><script src="fuzz_page.js"></script>'
T = TypeVar("T")


class BrowserThread:
    """An event loop in a thread holding one open target page and a reader on it; `run` calls
    into the loop."""

    def __init__(self, target: TargetSettings, browser: BrowserSettings) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._opened: AbstractAsyncContextManager[TargetSession] = open_target(target, browser)
        self.page: Page = self.run(self._opened.__aenter__()).page
        self.reader = OriginReader(self.page, limits=target.limits)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def close(self) -> None:
        try:
            self.run(self.reader.close())
            self.run(self._opened.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()


@pytest.fixture(scope="module")
def fuzz_page(
    tmp_path_factory: pytest.TempPathFactory, chromium_path: Path
) -> Iterator[BrowserThread]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "fuzz_page.js").write_text(
        (Path(__file__).parent / "fuzz_page.js").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (root / "fuzz.html").write_text(PAGE, encoding="utf-8")
    server = StaticServer(root)
    target = TargetSettings.model_validate(
        {
            "name": "fuzz",
            "url": server.url("fuzz.html"),
            "schedule": "1h",
            "ready": {"function": "window.ready === true"},
            "limits": {"page_timeout": "20s"},
        }
    )
    browser = BrowserThread(target, BrowserSettings(executable_path=chromium_path))
    try:
        yield browser
    finally:
        browser.close()
        server.close()


async def _store_and_read(browser: BrowserThread, batch: list[FuzzRecord]) -> Read | Any:
    failed = await browser.page.evaluate(
        "(pairs) => window.fuzzWrite(pairs)", [[r.key, r.value] for r in batch]
    )
    if failed is not None:
        return failed
    read = await read_all(browser.reader)
    # Hash first, the same records and hashes: every value's hash is Python's of its text.
    assert (await read_all(browser.reader, hash_first=True)).records == read.records
    return read


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=records(max_size=16))
def test_what_is_stored_is_read_back(fuzz_page: BrowserThread, batch: list[FuzzRecord]) -> None:
    read = fuzz_page.run(_store_and_read(fuzz_page, batch))
    assert not isinstance(read, dict), f"the page could not store a generated record: {read}"
    assert read.problems == []
    (store,) = read.records
    assert read.complete[store]
    expected = sorted(batch, key=lambda r: r.order)
    got = read.records[store]
    assert [k for k, _ in got] == [r.key for r in expected], "keys lost, added or out of order"
    for record, (_, value) in zip(expected, got, strict=True):
        assert value == record.value, (
            f"record {record.key} came back changed:\n  stored: {record.value}\n  read:   {value}"
        )


async def _page_hashes(browser: BrowserThread, texts: tuple[str, str]) -> list[str] | Any:
    """The hashes a hash-first read of the page sends for `texts`, stored under keys 0 and 1."""
    failed = await browser.page.evaluate(
        "(pairs) => window.fuzzWrite(pairs)", [[str(i), text] for i, text in enumerate(texts)]
    )
    if failed is not None:
        return failed
    (db,) = await browser.reader.schema()
    (store,) = db.stores
    return [
        r.value_hash
        async for batch in browser.reader.read_store(store, hash_first=True)
        for r in batch
    ]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(pair=changed_values())
def test_a_value_changed_in_one_member_changes_its_hash(
    fuzz_page: BrowserThread, pair: tuple[str, str]
) -> None:
    hashes = fuzz_page.run(_page_hashes(fuzz_page, pair))
    assert not isinstance(hashes, dict), f"the page could not store a generated value: {hashes}"
    assert hashes == [codec.value_hash(text) for text in pair]
    assert hashes[0] != hashes[1]
