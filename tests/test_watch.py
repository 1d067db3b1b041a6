"""`harvester.watch.Watcher` on a real Chromium: which writes give which batches."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from harvester.errors import WatchError
from harvester.watch import Watcher, store_glob
from tests.support.fake_reader import in_loop
from tests.support.server import StaticServer
from tests.support.watch import WAIT, batches_until, names, open_ready, watched_page

pytestmark = pytest.mark.browser

ITEMS = ("app", "items")
OTHER = ("app", "other")


@in_loop
async def test_writes_from_the_page_a_worker_and_a_second_tab_each_give_a_batch(
    static_server: StaticServer, chromium_path: Path
) -> None:
    async with watched_page(static_server, chromium_path) as (context, page, watcher):
        assert watcher.storage_keys == {static_server.origin + "/"}
        await page.evaluate("write('app', 'items', [[1, 'from the page']])")
        seen = await batches_until(watcher, names(ITEMS))
        assert not seen[-1].schema

        await page.evaluate("workerWrite('app', 'items', [[2, 'from a worker']])")
        await batches_until(watcher, names(ITEMS))

        # Tracking is per storage key: the second tab needs no attach of its own.
        second = await open_ready(context, page.url)
        await second.evaluate("write('app', 'items', [[3, 'from another tab']])")
        await batches_until(watcher, names(ITEMS))


@in_loop
async def test_a_burst_is_one_batch_and_an_excluded_store_gives_none(
    static_server: StaticServer, chromium_path: Path
) -> None:
    async with watched_page(
        static_server,
        chromium_path,
        seed=("items", "other", "secret"),
        debounce=1.0,
        max_delay=30.0,
        accept=lambda _db, store: store != "secret",
    ) as (_context, page, watcher):
        # 50 transactions of 4 puts, back to back: far inside one debounce.
        await page.evaluate(
            """async () => {
              for (let t = 0; t < 50; t++)
                await write('app', 'items', [0, 1, 2, 3].map((i) => [t * 4 + i, t]));
            }"""
        )
        await page.evaluate("write('app', 'secret', [[1, 'excluded']])")
        before = watcher.received
        # A later accepted write: its batch comes after anything the excluded one caused.
        await page.evaluate("write('app', 'other', [[1, 'marker']])")
        seen = await batches_until(watcher, names(OTHER))
        assert [batch.stores for batch in seen] in ([{ITEMS, OTHER}], [{ITEMS}, {OTHER}])
        assert seen[0].events >= 200
        assert all(("app", "secret") not in batch.stores for batch in seen)
        # The excluded write was received (counted) before the marker's.
        assert before >= 201
        assert watcher.received > before


@in_loop
async def test_new_stores_and_databases_ask_for_the_schema(
    static_server: StaticServer, chromium_path: Path
) -> None:
    async with watched_page(static_server, chromium_path) as (_context, page, watcher):
        # A version change: the database's stores, old and new, are to be read (and no other).
        await page.evaluate("write('app', 'fresh', [[1, 'new store']])")
        seen = await batches_until(watcher, names(("app", "fresh")))
        upgrade = next(batch for batch in seen if batch.schema)
        assert upgrade.databases == {"app"}
        assert {("app", "items"), ("app", "fresh")} <= upgrade.stores

        await page.evaluate("write('second', 'items', [[1, 'new database']])")
        seen = await batches_until(watcher, names(("second", "items")))
        assert any(batch.schema and batch.databases == {"second"} for batch in seen)

        # A database deleted: its stores as they were, for their -D rows.
        await page.evaluate(
            "new Promise((done) => { indexedDB.deleteDatabase('second').onsuccess = done; })"
        )
        seen = await batches_until(watcher, lambda batch: batch.databases == {"second"})
        assert seen[-1].schema and seen[-1].stores == {("second", "items")}

        # A lone surrogate reaches the Storage events as U+FFFD: the batch has the real name.
        await page.evaluate("write('app', 'odd\\ud800name', [[1, 'lone surrogate']])")
        real = ("app", "odd\ud800name")
        await batches_until(watcher, names(real))
        assert fnmatch.fnmatchcase("app/odd\ud800name", store_glob(*real))

        # A plain write to a known store changes no schema (Chromium still sends a list
        # event after each read-write transaction).
        await page.evaluate("write('app', 'items', [[2, 'plain']])")
        seen = await batches_until(watcher, names(ITEMS))
        assert not seen[-1].schema


@in_loop
async def test_closing_ends_the_watch(static_server: StaticServer, chromium_path: Path) -> None:
    async with watched_page(static_server, chromium_path) as (_context, page, watcher):
        await watcher.close()
        await watcher.close()
        with pytest.raises(WatchError, match="closed"):
            await watcher.next_batch()
        with pytest.raises(WatchError, match="closed"):
            await watcher.attach(page)

        # A page that goes away ends the watch too: its events can no longer come.
        other = Watcher(debounce=0.1, max_delay=5.0)
        await other.attach(page)
        await page.close()
        with pytest.raises(WatchError, match="page closed"):
            await batches_until(other, lambda _batch: False, within=WAIT)
        await other.close()

        gone = Watcher(debounce=0.1, max_delay=5.0)
        with pytest.raises(WatchError, match="DevTools session"):
            await gone.attach(page)
