"""A fake reader that keeps `OriginReader`'s contract, and one run through capture and commit.

Shared by the capture, state, harvest and recovery tests.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from harvester.capture import Capture
from harvester.codec import value_hash
from harvester.reader import DatabaseSchema, IndexSchema, Problem, Record, StoreSchema
from harvester.spool import SpoolWriter, read_rows
from harvester.state import RunStore, StateDB

ORIGIN = "http://fake.test"
Data = dict[str, dict[str, dict[Any, Any]]]  # db → store → key → value (plain JSON)


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the project does not use pytest-asyncio)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def text(value: Any) -> str:
    """Plain JSON is typed JSON; canonical means sorted object keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def record(key: Any, value: Any) -> Record:
    value_text = text(value)
    return Record(text(key), value_text, value_hash(value_text))


class FakeStoreRead:
    """A store read in batches; `fail_after` batches, it stops incomplete as a failed read does."""

    def __init__(
        self,
        store: StoreSchema,
        records: list[Record],
        batch: int,
        fail_after: int | None,
        hash_first: bool = False,
    ):
        self.store = store
        self._records = records
        self.hash_first = hash_first
        self._last: list[Record] = []
        self.asked: list[str] = []  # keys whose values a hash-first read was asked for
        self._batch = batch
        self._fail_after = fail_after
        self.complete = False
        self.problems: list[Problem] = []
        self.records = 0
        self.bytes = 0

    async def __aiter__(self) -> AsyncIterator[list[Record]]:
        for number, start in enumerate(range(0, len(self._records), self._batch)):
            if number == self._fail_after:
                self.problems.append(Problem(self.store.db, self.store.name, None, "store threw"))
                return
            batch = self._last = self._records[start : start + self._batch]
            self.records += len(batch)
            self.bytes += sum(len(r.key) + len(r.value or "") for r in batch)
            yield [Record(r.key, None, r.value_hash) for r in batch] if self.hash_first else batch
        self.complete = self._fail_after is None or self._fail_after * self._batch >= len(
            self._records
        )
        if not self.complete:
            self.problems.append(Problem(self.store.db, self.store.name, None, "store threw"))

    async def values(self, positions: Sequence[int]) -> list[str]:
        assert self.hash_first, "values asked of a read that sent them"
        self.asked += [self._last[i].key for i in positions]
        return [self._last[i].value or "" for i in positions]


class FakeReader:
    """An origin's IndexedDB as nested dicts, read like `OriginReader` reads a page."""

    def __init__(
        self, data: Data, *, batch: int = 2, broken: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.data = data
        self.batch = batch
        self.broken = set(broken)
        self.problems: list[Problem] = []

    def schemas(self) -> list[DatabaseSchema]:
        return [
            DatabaseSchema(
                name=db,
                version=1,
                stores=tuple(
                    StoreSchema(
                        db=db,
                        db_version=1,
                        name=name,
                        key_path="id",
                        auto_increment=False,
                        indexes=(IndexSchema("by_x", "x", False, False),),
                        count=len(records),
                    )
                    for name, records in sorted(stores.items())
                ),
            )
            for db, stores in sorted(self.data.items())
        ]

    async def schema(self) -> list[DatabaseSchema]:
        return self.schemas()

    def read_store(self, store: StoreSchema, *, hash_first: bool = False) -> FakeStoreRead:
        items = sorted(self.data[store.db][store.name].items(), key=lambda kv: text(kv[0]))
        records = [record(key, value) for key, value in items]
        fail_after = 1 if (store.db, store.name) in self.broken else None
        self.last_read = FakeStoreRead(store, records, self.batch, fail_after, hash_first)
        return self.last_read

    async def close(self) -> None:
        pass


def fake_opener(
    reader: FakeReader,
) -> Callable[[], AbstractAsyncContextManager[tuple[str, FakeReader]]]:
    @asynccontextmanager
    async def opened() -> AsyncIterator[tuple[str, FakeReader]]:
        yield ORIGIN, reader

    return opened


async def capture_run(
    state: StateDB, reader: FakeReader, *, full: bool = False, commit: bool = True
) -> tuple[str, list[dict[str, Any]], list[RunStore]]:
    """One run through capture and (unless told not to) commit: (run id, rows, stores)."""
    run_id = state.start_run("app", full=full)
    writer = SpoolWriter(state.spool_dir, run_id=run_id, target="app", origin=ORIGIN)
    capture = Capture(state, writer, target="app", origin=ORIGIN, full=full)
    stores = []
    for database in await reader.schema():
        for store in database.stores:
            read = reader.read_store(store, hash_first=capture.hash_first(store))
            stores.append(await capture.store(store, read))
    capture.close()
    spool = writer.finish()
    state.mark_read(run_id, origin=ORIGIN, stores=stores, rows=spool.rows)
    rows = list(read_rows(spool.path))
    if commit:
        assert state.commit_run(run_id, rows)
    return run_id, rows, stores
