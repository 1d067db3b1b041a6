"""Reading test pages with the real reader: the page prelude, and one read of every store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Page

from harvester import codec
from harvester.browser import open_target
from harvester.config import BrowserSettings, TargetSettings
from harvester.reader import DatabaseSchema, OriginReader, Problem

# Helpers every test page uses: open (creating stores), put entries, then `window.ready = true`.
PRELUDE = """<!doctype html><meta charset="utf-8"><script>
function openDb(name, version, upgrade) {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(name, version);
    r.onupgradeneeded = () => upgrade && upgrade(r.result, r.transaction);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
function put(db, store, entries) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(store, "readwrite");
    for (const [k, v] of entries) {
      if (k === undefined) tx.objectStore(store).put(v);
      else tx.objectStore(store).put(v, k);
    }
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}
</script>"""


@dataclass
class Read:
    """What one reading of a page gave."""

    schema: list[DatabaseSchema]
    records: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    batches: dict[str, list[int]] = field(default_factory=dict)
    complete: dict[str, bool] = field(default_factory=dict)
    compressed: dict[str, int] = field(default_factory=dict)
    hashed: dict[str, int] = field(default_factory=dict)  # batches that came as hashes
    problems: list[Problem] = field(default_factory=list)

    def values(self, store: str) -> dict[str, str]:
        return dict(self.records[store])


def _target(url: str, **limits: Any) -> TargetSettings:
    return TargetSettings.model_validate(
        {
            "name": "t",
            "url": url,
            "schedule": "1h",
            "ready": {"function": "window.ready === true"},
            "limits": {"page_timeout": "20s", **limits},
        }
    )


async def read_all(reader: OriginReader, *, hash_first: bool = False) -> Read:
    """Every store read; `hash_first` reads hash first and asks for every value (so the page
    soon sends values instead), checking that each hash the page sent is Python's `value_hash`
    of the value's text."""
    result = Read(await reader.schema())
    for db in result.schema:
        for store in db.stores:
            name = f"{db.name}/{store.name}"
            read = reader.read_store(store, hash_first=hash_first)
            result.records[name], result.batches[name] = [], []
            result.hashed[name] = 0
            async for batch in read:
                if batch[0].value is None:
                    assert hash_first and all(r.value is None for r in batch)
                    values = await read.values(range(len(batch)))
                    result.hashed[name] += 1
                else:
                    assert all(r.value is not None for r in batch)
                    values = [r.value or "" for r in batch]
                result.records[name].extend(zip((r.key for r in batch), values, strict=True))
                result.batches[name].append(len(batch))
                hashes = [r.value_hash for r in batch]
                assert hashes == [codec.value_hash(value) for value in values]
            result.complete[name] = read.complete
            result.compressed[name] = read.compressed
            result.problems.extend(read.problems)
            assert read.records == len(result.records[name])
    result.problems.extend(reader.problems)
    return result


def read_page(
    url: str,
    browser: BrowserSettings,
    *,
    databases: tuple[str, ...] = ("*",),
    stores: tuple[str, ...] = ("*",),
    then: Callable[[Page, OriginReader], Awaitable[Any]] | None = None,
    **limits: Any,
) -> Any:
    """Open the page in Chromium, wait for `window.ready`, and run `then` with a reader on it."""
    target = _target(url, **limits)

    async def go() -> Any:
        async with open_target(target, browser) as session:
            reader = OriginReader(
                session.page, limits=target.limits, databases=databases, stores=stores
            )
            try:
                if then is None:
                    return await read_all(reader)
                return await then(session.page, reader)
            finally:
                await reader.close()

    return asyncio.run(go())
