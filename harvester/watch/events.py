"""Chromium's IndexedDB change events for a page, over the DevTools protocol.

`Storage.trackIndexedDBForStorageKey` is asked per storage key on a CDP session of the page
(`Storage.getStorageKey` refuses a page session, so each frame's key comes from
`Storage.getStorageKeyForFrame`). Chromium then reports every write to that key's default
bucket, whoever makes it: the page, its frames of that origin, its workers, other tabs of the
context. `indexedDBContentUpdated` names the database and store but no key, and is sent while
the transaction runs, before it commits: the debounce of `bursts` is what lets the read come
after the commit. `indexedDBListUpdated` names nothing, and Chromium sends it after every
read-write transaction as well as when a database is created, upgraded or deleted: so a burst
with one is checked against the databases' names and versions (`IndexedDB.requestDatabaseNames`,
`IndexedDB.requestDatabase`, answered by the browser without touching the page), and its batch
says `schema` only when they changed. Stores come and go only in a version change, so names and
versions are enough.

Names cross the protocol differently by direction: the Storage events write a lone surrogate as
U+FFFD, the IndexedDB domain's replies keep it. A batch's names are resolved through the latter,
so they are the stores' real names.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from playwright.async_api import Error as PlaywrightError

from harvester.errors import WatchError
from harvester.watch.bursts import Accept, Batch, BurstQueue, accept_all, judged
from harvester.watch.names import REPLACEMENT, name_glob

if TYPE_CHECKING:
    from playwright.async_api import CDPSession, Page

log = logging.getLogger(__name__)

DETACH_TIMEOUT = 2.0  # seconds

# Storage key → database name → (version, store names): what a schema change changes.
Databases = dict[str, dict[str, tuple[int, frozenset[str]]]]


def _changes(old: Databases, new: Databases) -> tuple[frozenset[str], set[tuple[str, str]]]:
    """The databases that came, went or changed version between two listings, and every store
    they had or have: reading those is what finds a store created, or gone (its `-D` rows)."""
    names: set[str] = set()
    stores: set[tuple[str, str]] = set()
    for key in old.keys() | new.keys():
        before, after = old.get(key, {}), new.get(key, {})
        for db in before.keys() | after.keys():
            if before.get(db) != after.get(db):
                names.add(db)
                for listing in (before.get(db), after.get(db)):
                    if listing is not None:
                        stores.update((db, store) for store in listing[1])
    return frozenset(names), stores


def _frame_ids(tree: dict[str, Any]) -> list[str]:
    """The ids of a `Page.getFrameTree` frame tree, the top frame first."""
    ids = [tree["frame"]["id"]]
    for child in tree.get("childFrames", []):
        ids.extend(_frame_ids(child))
    return ids


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Watcher:
    """The change events of the storage keys of attached pages, folded into `Batch`es.

    `debounce`, `max_delay`: seconds (see `bursts`). `accept(db, store)` chooses the stores that
    count: an event for another store is counted in `received` and otherwise ignored. Names are
    the stores' own (any character, lone surrogates included), not yet escaped; a glob that
    selects exactly one is `names.store_glob(db, store)`.
    """

    def __init__(
        self,
        *,
        debounce: float,
        max_delay: float,
        accept: Accept = accept_all,
    ) -> None:
        # Names with U+FFFD are let through here and judged once resolved (`_resolve`).
        self._accept = accept
        self._queue = BurstQueue(
            debounce=debounce,
            max_delay=max_delay,
            accept=lambda db, store: REPLACEMENT in db + store or accept(db, store),
        )
        self._sessions: list[CDPSession] = []
        self._pages: list[Page] = []
        self._tracked: dict[str, CDPSession] = {}  # storage key → the session tracking it
        self._databases: Databases = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def received(self) -> int:
        """Events received in all, accepted or not."""
        return self._queue.received

    @property
    def storage_keys(self) -> frozenset[str]:
        """The storage keys tracked so far."""
        return frozenset(self._tracked)

    async def attach(self, page: Page) -> None:
        """Track the storage key of every frame of `page` (and of frames attached or navigated
        later); WatchError naming what Chromium refused."""
        if self._queue.closed:
            raise WatchError("the watcher is closed")
        try:
            session = await page.context.new_cdp_session(page)
        except PlaywrightError as exc:
            raise WatchError(
                f"cannot open a DevTools session on the page: {_first_line(exc)}"
            ) from exc
        self._sessions.append(session)
        self._pages.append(page)
        # Listening before tracking: the first write may follow the tracking at once.
        session.on("Storage.indexedDBContentUpdated", self._on_content)
        session.on("Storage.indexedDBListUpdated", self._on_list)
        session.on("Page.frameNavigated", lambda event: self._on_frame(session, event))
        page.on("close", self._on_close)
        page.on("crash", self._on_crash)
        try:
            # For frameNavigated: frames that appear or change origin later are tracked then.
            await session.send("Page.enable")
            tree = await session.send("Page.getFrameTree")
        except PlaywrightError as exc:
            raise WatchError(f"cannot list the page's frames: {_first_line(exc)}") from exc
        top, *children = _frame_ids(tree["frameTree"])
        await self._track(session, top)
        for frame_id in children:
            await self._track_quietly(session, frame_id)
        self._databases = await self._list_databases()

    async def _track(self, session: CDPSession, frame_id: str) -> None:
        try:
            reply = await session.send("Storage.getStorageKeyForFrame", {"frameId": frame_id})
        except PlaywrightError as exc:
            raise WatchError(
                f"Chromium gives no storage key for frame {frame_id} "
                f"(Storage.getStorageKeyForFrame): {_first_line(exc)}"
            ) from exc
        key = str(reply["storageKey"])
        if key in self._tracked:
            return
        try:
            await session.send("Storage.trackIndexedDBForStorageKey", {"storageKey": key})
        except PlaywrightError as exc:
            raise WatchError(
                f"Chromium refused to track IndexedDB of {key} "
                f"(Storage.trackIndexedDBForStorageKey): {_first_line(exc)}"
            ) from exc
        self._tracked[key] = session
        log.debug("watching IndexedDB of %s", key)

    async def _track_quietly(self, session: CDPSession, frame_id: str) -> None:
        """Track a frame other than the top one: one without a storage key of its own (about:blank,
        an opaque origin) or gone already is no reason to stop watching the page."""
        try:
            await self._track(session, frame_id)
        except WatchError as exc:
            log.debug("frame %s not watched: %s", frame_id, exc)

    def _on_frame(self, session: CDPSession, event: dict[str, Any]) -> None:
        if self._queue.closed:
            return
        task = asyncio.ensure_future(self._track_quietly(session, event["frame"]["id"]))
        # Kept referenced until done: the loop holds tasks only weakly.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_content(self, event: dict[str, Any]) -> None:
        db, store = event.get("databaseName", ""), event.get("objectStoreName", "")
        self._queue.content(str(db), str(store))

    def _on_list(self, _event: dict[str, Any]) -> None:
        self._queue.schema()

    def _on_close(self, _page: Page) -> None:
        self._queue.close("the watched page closed")

    def _on_crash(self, _page: Page) -> None:
        self._queue.close("the watched page crashed")

    async def next_batch(self) -> Batch:
        """Wait for the next burst: returned `debounce` seconds after its last event, or
        `max_delay` after its first, whichever is first. Events that arrive after a batch is
        returned belong to the next batch. WatchError once closed, or once a watched page
        closed or crashed (its events can no longer come)."""
        while True:
            batch = await self._queue.get()
            changed: frozenset[str] = frozenset()
            stores = await self._resolve(batch.stores)
            if batch.schema:
                databases = await self._list_databases()
                changed, had = _changes(self._databases, databases)
                self._databases = databases
                stores |= {pair for pair in had if judged(self._accept, *pair)}
            if stores or changed:
                return replace(batch, stores=stores, schema=bool(changed), databases=changed)
            # Only the list events of plain writes to stores not accepted: nothing to read.

    async def _list_databases(self) -> Databases:
        """The databases of every tracked storage key, as the browser knows them now."""
        found: Databases = {}
        for key, session in list(self._tracked.items()):
            found[key] = {}
            try:
                reply = await session.send("IndexedDB.requestDatabaseNames", {"storageKey": key})
            except PlaywrightError as exc:
                if self._queue.closed:
                    raise WatchError("the watcher is closed") from exc
                # The page is going away: its close or crash event ends the watch.
                log.debug("cannot list the databases of %s: %s", key, _first_line(exc))
                continue
            for name in reply["databaseNames"]:
                params = {"storageKey": key, "databaseName": name}
                try:
                    info = (await session.send("IndexedDB.requestDatabase", params))[
                        "databaseWithObjectStores"
                    ]
                except PlaywrightError:
                    continue  # deleted meanwhile: the next list shows it gone
                stores = frozenset(store["name"] for store in info["objectStores"])
                found[key][str(name)] = (int(info["version"]), stores)
        return found

    async def _resolve(self, stores: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
        """`stores` with each name that Chromium sent with U+FFFD replaced by the real names it
        may stand for, then chosen by `accept`."""
        if not any(REPLACEMENT in db + store for db, store in stores):
            return stores
        databases = await self._list_databases()
        resolved: set[tuple[str, str]] = set()
        for db, store in stores:
            if REPLACEMENT not in db + store:
                resolved.add((db, store))
                continue
            db_glob, store_glob = name_glob(db), name_glob(store)
            for listed in databases.values():
                for real_db, (_version, names) in listed.items():
                    if fnmatch.fnmatchcase(real_db, db_glob):
                        resolved.update(
                            (real_db, name)
                            for name in names
                            if fnmatch.fnmatchcase(name, store_glob)
                            and judged(self._accept, real_db, name)
                        )
        return frozenset(resolved)

    async def close(self) -> None:
        """Stop watching: detach from every page; idempotent."""
        self._queue.close("the watcher is closed")
        for task in list(self._tasks):
            task.cancel()
        for page in self._pages:
            page.remove_listener("close", self._on_close)
            page.remove_listener("crash", self._on_crash)
        sessions, self._sessions, self._pages = self._sessions, [], []
        for session in sessions:
            # A page, context or browser already gone has detached it; a crashed page's session
            # never answers the detach.
            with contextlib.suppress(PlaywrightError, TimeoutError):
                await asyncio.wait_for(session.detach(), DETACH_TIMEOUT)
