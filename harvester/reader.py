"""Reading an origin's IndexedDB from a Playwright page, as canonical typed JSON.

`reader.js` runs in an isolated world of the page's main frame, created over the Chrome DevTools
Protocol: it sees the origin's IndexedDB but none of the page's JavaScript, so a page that
replaced `indexedDB`, `JSON.stringify` or `Array.prototype` methods cannot change what is read.
Each store is read in key order, in batches bounded by records and bytes; each batch is one page
evaluation returning one string, and while Python takes a batch the page already reads the next.

Consistency (`limits.consistency`):
- `batched` (default): each batch is its own read transaction, paged by key range after the last
  key read. The page's memory holds about two batches, but writes that the app makes between
  batches may show (a record moved past the read position is seen twice or not at all).
- `snapshot`: the whole store is read in one transaction, so the read is one point in time;
  the page's memory then holds the whole store until it has been handed out in batches.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import itertools
import json
import weakref
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from harvester.errors import EvaluateTimeoutError, ReaderError
from harvester.limits import MAX_PROBLEMS

if TYPE_CHECKING:
    from playwright.async_api import CDPSession, Page

    from harvester.config import LimitsSettings

__all__ = [
    "DatabaseSchema",
    "IndexSchema",
    "OriginReader",
    "Problem",
    "Record",
    "StoreRead",
    "StoreSchema",
]

_WORLD_NAME: Final = "idb-harvester"
# Each reader holds a world of its own while it reads: one reader's closed connections or lost
# databases must not be another's. A world lives as long as the document (Chromium keeps each
# name a page was given: a fresh world per read grew a watched page by about 0.3 MB a read), so
# a reader that closed cleanly gives its world back, and the page's next reader reuses it.
_worlds: Final = itertools.count(1)
_free_worlds: Final[weakref.WeakKeyDictionary[Page, list[str]]] = weakref.WeakKeyDictionary()
_API: Final = "globalThis.__idbHarvester"


@dataclass(frozen=True)
class IndexSchema:
    name: str
    key_path: str | list[str] | None
    unique: bool
    multi_entry: bool


@dataclass(frozen=True)
class StoreSchema:
    db: str
    db_version: int
    name: str
    key_path: str | list[str] | None
    auto_increment: bool
    indexes: tuple[IndexSchema, ...]
    count: int


@dataclass(frozen=True)
class DatabaseSchema:
    name: str
    version: int
    stores: tuple[StoreSchema, ...]


@dataclass(frozen=True, slots=True)
class Record:
    key: str  # canonical typed JSON text of the key
    # Canonical typed JSON text of the value; None in a hash-first read, until asked for with
    # `StoreRead.values`.
    value: str | None
    value_hash: str  # codec.value_hash(value)


@dataclass(frozen=True)
class Problem:
    """Something that could not be read: a database, a store, or one record (by key text)."""

    db: str
    store: str | None
    key: str | None
    message: str


def _loads(text: str) -> Any:
    # Not orjson: it refuses lone surrogates, which the page's database, store and member names
    # may hold (JSON.stringify writes them as \udXXX escapes). These texts are small; the
    # records' texts are never parsed here.
    return json.loads(text)


def _unpack(text: str) -> str:
    """A batch as the page sent it: plain, or deflated in base64 after a `~`."""
    if text.startswith("~"):
        return zlib.decompress(base64.b64decode(text[1:]), -15).decode()
    return text


def _load_script() -> str:
    return resources.files("harvester").joinpath("reader.js").read_text(encoding="utf-8")


def selected(name: str, patterns: Sequence[str]) -> bool:
    """Whether a glob of `patterns` matches `name` (case counts), as a target's globs choose."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def chosen(databases: Sequence[str], stores: Sequence[str]) -> Callable[[str, str], bool]:
    """Whether a target's `databases` and `stores` globs choose store `db/store`, as the reader
    does."""
    databases, stores = tuple(databases), tuple(stores)
    return lambda db, store: selected(db, databases) and selected(f"{db}/{store}", stores)


class OriginReader:
    """Reads the selected databases and stores of the origin open in `page`.

    `databases` are globs of database names, `stores` globs of "db/store" names. Problems that
    concern a whole database (it could not be opened) are collected in `problems`. `compress`:
    whether the page may deflate large batches (see reader.js). Worth it only over a network: on
    one machine deflating costs the renderer more than the smaller relay saves
    (bench/read_bench.py: 1.69x the in-page floor plain, 2.13x deflated, at 100k records).
    """

    def __init__(
        self,
        page: Page,
        *,
        limits: LimitsSettings,
        databases: Sequence[str] = ("*",),
        stores: Sequence[str] = ("*",),
        compress: bool = False,
    ) -> None:
        self.page = page
        self.compress = compress
        self.limits = limits
        self.databases = tuple(databases)
        self.stores = tuple(stores)
        self.problems: list[Problem] = []
        self._timeout = limits.page_timeout.total_seconds()
        self._session: CDPSession | None = None
        self._context_id: int | None = None
        self._world_name: str | None = None
        self._reads: list[StoreRead] = []

    @property
    def _open_timeout_ms(self) -> int:
        # Well inside the evaluate watchdog, so that a blocked database is reported as such.
        return max(1, int(self._timeout * 1000 / 3))

    async def _world(self) -> tuple[CDPSession, int]:
        if self._session is None or self._context_id is None:
            session = await self._guard(self.page.context.new_cdp_session(self.page), "attach")
            tree = await self._guard(session.send("Page.getFrameTree"), "attach")
            free = _free_worlds.setdefault(self.page, [])
            self._world_name = free.pop() if free else f"{_WORLD_NAME}-{next(_worlds)}"
            world = await self._guard(
                session.send(
                    "Page.createIsolatedWorld",
                    {"frameId": tree["frameTree"]["frame"]["id"], "worldName": self._world_name},
                ),
                "attach",
            )
            self._session, self._context_id = session, world["executionContextId"]
            await self._evaluate(_load_script(), "inject reader.js")
        return self._session, self._context_id

    async def _guard(self, call: Awaitable[Any], what: str) -> Any:
        try:
            return await asyncio.wait_for(call, self._timeout)
        except TimeoutError:
            raise EvaluateTimeoutError(
                f"the page did not answer {what} within {self._timeout:g}s (limits.page_timeout)"
            ) from None
        except ReaderError:
            raise
        except Exception as exc:  # Playwright's errors: the page closed, the world went away…
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            # CDP words a navigation mid-read differently depending on when it lands.
            if "Cannot find context" in first or "navigated or closed" in first:
                first = "the page navigated away or closed while it was being read"
            raise ReaderError(f"{what}: {first}") from exc

    async def _evaluate(self, expression: str, what: str) -> Any:
        session, context_id = await self._world()
        params = {
            "expression": expression,
            "contextId": context_id,
            "awaitPromise": True,
            "returnByValue": True,
        }
        reply = await self._guard(session.send("Runtime.evaluate", params), what)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise ReaderError(f"{what}: {text}")
        return reply["result"].get("value")

    async def _call(self, function: str, *args: Any) -> Any:
        # json.dumps escapes lone surrogates, so any name is a valid JavaScript literal.
        arguments = ",".join(json.dumps(arg) for arg in args)
        return await self._evaluate(f"{_API}.{function}({arguments})", function)

    async def schema(self) -> list[DatabaseSchema]:
        """The selected databases with their selected stores, key paths, indexes and counts."""
        listed = _loads(await self._call("databases"))
        names = [d["name"] for d in listed if selected(d["name"], self.databases)]
        described = _loads(await self._call("schema", names, self._open_timeout_ms))
        chosen: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        for db in described:
            if "error" in db:
                self._problem(Problem(db["name"], None, None, f"cannot open: {db['error']}"))
                continue
            prefix = db["name"] + "/"
            picked = [s for s in db["stores"] if selected(prefix + s["name"], self.stores)]
            if picked or not db["stores"]:  # a database none of whose stores is wanted is left out
                chosen.append((db, picked))
        pairs = [[db["name"], s["name"]] for db, stores in chosen for s in stores]
        counts = iter(_loads(await self._call("counts", pairs, self._open_timeout_ms)))
        result: list[DatabaseSchema] = []
        for db, stores in chosen:
            schemas: list[StoreSchema] = []
            for s in stores:
                counted = next(counts)
                if "error" in counted:
                    message = f"cannot count: {counted['error']}"
                    self._problem(Problem(db["name"], s["name"], None, message))
                schemas.append(_store_schema(db, s, counted.get("count", 0)))
            result.append(DatabaseSchema(db["name"], db["version"], tuple(schemas)))
        return result

    def _problem(self, problem: Problem) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def read_store(self, store: StoreSchema, *, hash_first: bool = False) -> StoreRead:
        """An async iterable of the store's records in key order, one list per batch.

        `hash_first`: the records come without their values (`value` None) and the caller asks
        for the values it needs with `StoreRead.values`: for a store whose values are mostly
        known already, a tenth of the bytes cross from the page.
        """
        read = StoreRead(self, store, hash_first=hash_first)
        self._reads.append(read)
        return read

    async def close(self) -> None:
        """Close every connection the page opened for us and forget the isolated world."""
        for read in self._reads:
            read.cancel()
        self._reads.clear()
        if self._session is None:
            return
        try:
            await self._call("close")
            if self._world_name is not None:
                _free_worlds.setdefault(self.page, []).append(self._world_name)
            await self._guard(self._session.detach(), "detach")
        except ReaderError:
            pass  # the page is gone, and its connections with it
        finally:
            self._session = self._context_id = self._world_name = None


def _key_path(value: str | list[str] | None) -> str | list[str] | None:
    return list(value) if isinstance(value, list) else value


def _store_schema(db: dict[str, Any], store: dict[str, Any], count: int) -> StoreSchema:
    indexes = tuple(
        IndexSchema(i["name"], _key_path(i["keyPath"]), i["unique"], i["multiEntry"])
        for i in store["indexes"]
    )
    return StoreSchema(
        db=db["name"],
        db_version=db["version"],
        name=store["name"],
        key_path=_key_path(store["keyPath"]),
        auto_increment=store["autoIncrement"],
        indexes=indexes,
        count=count,
    )


@dataclass
class StoreRead:
    """One read of one store: `async for batch in read` gives `list[Record]` in key order.

    Batches are never empty: an empty store gives none.

    After the last batch: `complete` (every record was read: no error, nothing skipped, no
    `max_records` cut), `problems`, `records` and `bytes` (UTF-8 of the key and value texts),
    and `compressed` (how many batches the page sent deflated).
    """

    reader: OriginReader
    store: StoreSchema
    hash_first: bool = False
    complete: bool = False
    problems: list[Problem] = field(default_factory=list)
    records: int = 0
    bytes: int = 0
    compressed: int = 0
    _id: int | None = None
    _next: asyncio.Task[str] | None = None
    _done: bool = False
    _failed: bool = False
    _dropped_problems: int = 0
    _batches: int = 0  # the page's number of the last batch taken
    _last_size: int = 0  # records in it

    def __aiter__(self) -> StoreRead:
        return self

    async def __anext__(self) -> list[Record]:
        while not self._done:
            try:
                if self._id is None:
                    await self._begin()
                task = self._next or self._fetch()
                self._next = None
                text = await task
            except BaseException:
                self._failed = True
                self._finish()
                raise
            batch = self._take(text)
            if not self._done:
                # Ask for the next batch now: its transfer overlaps whatever the caller does next.
                self._next = self._fetch()
            if batch:
                return batch
        raise StopAsyncIteration

    def _fetch(self) -> asyncio.Task[str]:
        return asyncio.ensure_future(self.reader._call("next", self._id))

    async def _begin(self) -> None:
        limits = self.reader.limits
        options: dict[str, Any] = {
            "batchSize": limits.batch_size,
            "maxBatchBytes": limits.max_batch_bytes,
            "maxValueBytes": limits.max_value_bytes,
            "maxRecords": limits.max_records,
            "consistency": limits.consistency,
            "openTimeoutMs": self.reader._open_timeout_ms,
            "hashFirst": self.hash_first,
            "compress": self.reader.compress,
        }
        self._id = await self.reader._call("begin", self.store.db, self.store.name, options)

    async def values(self, positions: Sequence[int]) -> list[str]:
        """The value texts of the records at `positions` of the last batch of a hash-first
        read (the page keeps them until two batches later).

        When most of a batch is asked for, the store is changing wholesale: hashes first would
        only add a call per batch, so the page is told to send values for the rest of the read
        (the batches it already made still come as hashes).
        """
        if not positions:
            return []
        plain = len(positions) * 2 > self._last_size
        self.hash_first = self.hash_first and not plain
        asked = await self.reader._call("values", self._id, self._batches, list(positions), plain)
        text = _unpack(asked)
        texts = text.split("\n")
        if len(texts) != len(positions):
            raise ReaderError(f"values: asked for {len(positions)}, the page sent {len(texts)}")
        return texts

    def _take(self, text: str) -> list[Record]:
        self.compressed += text.startswith("~")
        head, _, body = _unpack(text).partition("\n")
        header = _loads(head)
        for problem in header["problems"]:
            self._add_problem(problem["key"], problem["message"])
        if header.get("skipped"):
            self._failed = True
        if header.get("fatal"):
            self._add_problem(None, header["fatal"])
            self._failed = True
        if header.get("truncated"):
            cut = f"stopped after limits.max_records={self.reader.limits.max_records} records"
            self._add_problem(None, cut)
            self._failed = True
        records: list[Record] = []
        if header["n"] and "seq" in header:  # a hash-first batch
            texts = body.split("\n")
            keys = texts[::2]
            records = [Record(key, None, h) for key, h in zip(keys, texts[1::2], strict=True)]
            self._batches, self._last_size = header["seq"], len(records)
            self.records += len(records)
            self.bytes += header["valueBytes"] + sum(len(key.encode()) for key in keys)
        elif header["n"]:
            texts = body.split("\n")
            keys, values = texts[::2], texts[1::2]
            data = [value.encode() for value in values]
            hashes = [hashlib.sha256(d).hexdigest() for d in data]
            records = list(map(Record, keys, values, hashes))
            self.records += len(records)
            self.bytes += sum(map(len, data)) + sum(len(key.encode()) for key in keys)
        if header["done"]:
            self._finish()
        return records

    def _add_problem(self, key: str | None, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(self.store.db, self.store.name, key, message))
        else:
            self._dropped_problems += 1

    def _finish(self) -> None:
        self.complete = not self._failed
        if self._dropped_problems:
            more = f"{self._dropped_problems} more problems not listed"
            self.problems.append(Problem(self.store.db, self.store.name, None, more))
            self._dropped_problems = 0
        self.cancel()

    def cancel(self) -> None:
        """Stop reading and drop the batch asked for ahead (the page forgets it on close)."""
        self._done = True
        if self._next is not None:
            self._next.cancel()
            self._next = None
