"""Folding change events into bursts: the pure timing of watch mode, and the queue that waits.

A burst starts with its first event and is due `debounce` seconds after its last one, or
`max_delay` seconds after its first, whichever comes first: a quiet app is read soon after it
stops writing, and an app that never stops is still read every `max_delay`. Taking a batch
starts the next burst empty, so an event that arrives while the caller reads belongs to the
next batch: that store is read again afterwards, and no write is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from harvester.errors import WatchError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Accept = Callable[[str, str], bool]


def accept_all(_db: str, _store: str) -> bool:
    """The default `accept`: every store counts."""
    return True


def judged(accept: Accept, db: str, store: str) -> bool:
    """`accept(db, store)`, True when it fails: reading a store too many is cheap, a write
    missed is not."""
    try:
        return accept(db, store)
    except Exception:
        log.exception("watch: accept(%r, %r) failed; the store is read", db, store)
        return True


@dataclass(frozen=True)
class Batch:
    """The stores a burst of events named, to be read now."""

    stores: frozenset[tuple[str, str]]  # (database name, store name) whose contents changed
    schema: bool  # indexedDBListUpdated seen: databases or stores came or went
    first_event: float  # time.monotonic() of the burst's first event
    events: int  # events folded into this batch
    # The databases that came, went or changed version (their stores, old and new, are in
    # `stores`): filled in by `Watcher.next_batch`.
    databases: frozenset[str] = frozenset()


class Bursts:
    """The burst being gathered; every method takes the time `now` from the caller."""

    def __init__(self, *, debounce: float, max_delay: float) -> None:
        if debounce < 0 or max_delay < 0:
            raise ValueError(f"debounce ({debounce}) and max_delay ({max_delay}) must be >= 0")
        self.debounce = debounce
        self.max_delay = max_delay
        self._stores: set[tuple[str, str]] = set()
        self._schema = False
        self._first: float | None = None
        self._last = 0.0
        self._events = 0

    @property
    def pending(self) -> bool:
        return self._first is not None

    def add(self, store: tuple[str, str] | None, now: float) -> None:
        """Fold one event in: a store's contents changed, or (None) the list of databases."""
        if self._first is None:
            self._first = now
        self._last = max(self._last, now)
        self._events += 1
        if store is None:
            self._schema = True
        else:
            self._stores.add(store)

    def due_at(self) -> float | None:
        """When the burst is due (on the caller's clock); None when there is none."""
        if self._first is None:
            return None
        return min(self._last + self.debounce, self._first + self.max_delay)

    def take(self, now: float) -> Batch | None:
        """The burst as a batch if it is due at `now`, and a new empty burst; else None."""
        due = self.due_at()
        if due is None or now < due or self._first is None:
            return None
        batch = Batch(frozenset(self._stores), self._schema, self._first, self._events)
        self._stores = set()
        self._schema = False
        self._first = None
        self._events = 0
        return batch


class BurstQueue:
    """`Bursts` fed by event callbacks and awaited by one consumer, on one event loop.

    `accept(db, store)` chooses the stores that count: an event for another store is counted in
    `received` and otherwise ignored (it starts no burst). `clock` must tick in seconds like the
    loop's timeouts (`time.monotonic` by default).
    """

    def __init__(
        self,
        *,
        debounce: float,
        max_delay: float,
        accept: Accept = accept_all,
        clock: Clock = time.monotonic,
    ) -> None:
        self.bursts = Bursts(debounce=debounce, max_delay=max_delay)
        self.accept = accept
        self.clock = clock
        self.received = 0
        self._wake = asyncio.Event()
        self._closed: str | None = None

    def content(self, db: str, store: str) -> None:
        """One write to `store` of database `db`."""
        self.received += 1
        if judged(self.accept, db, store):
            self._add((db, store))

    def schema(self) -> None:
        """Databases or stores came or went."""
        self.received += 1
        self._add(None)

    def _add(self, store: tuple[str, str] | None) -> None:
        self.bursts.add(store, self.clock())
        self._wake.set()

    def close(self, reason: str) -> None:
        """End the queue: `get` raises WatchError(`reason`) from now on (the first reason
        stays)."""
        if self._closed is None:
            self._closed = reason
        self._wake.set()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def get(self) -> Batch:
        """The next batch, once due; WatchError once closed."""
        while True:
            # Cleared before looking, so an event added from here on wakes the wait below.
            self._wake.clear()
            if self._closed is not None:
                raise WatchError(self._closed)
            batch = self.bursts.take(self.clock())
            if batch is not None:
                return batch
            due = self.bursts.due_at()
            timeout = None if due is None else max(0.0, due - self.clock())
            # Timing out is how a due burst is noticed; the loop above takes it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
