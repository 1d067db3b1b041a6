"""The harvest steps the daemon drives: the `RunBackend` protocol and `HarvestBackend`."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from harvester import harvest

if TYPE_CHECKING:
    from harvester.config import Settings, TargetSettings
    from harvester.harvest import Opener
    from harvester.sinks import ChangeSink
    from harvester.spool import SpoolFile
    from harvester.state import StateDB

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadResult:
    """A finished read phase: the run's complete spool and its counts by op."""

    run_id: str
    spool: SpoolFile
    counts: Mapping[str, int] = field(default_factory=dict)


class RunBackend(Protocol):
    """The harvest steps the daemon drives; `HarvestBackend` is the real one, tests use fakes."""

    def recover(self) -> None:
        """Send and commit the spools of runs read but not committed (blocking)."""

    def start(self) -> None:
        """Get the sink ready, e.g. warm Flink up while the first reads run (blocking)."""

    def checked(self) -> None:
        """Wait for the sink's background check of its config; raise the `ConfigError` it found."""

    async def pending(self, target: TargetSettings) -> list[ReadResult]:
        """Earlier runs of `target` read but not committed; they go before a new read."""

    async def begin(
        self, target: TargetSettings, *, trigger: str | None = None, events: int | None = None
    ) -> str:
        """Record a new run of `target` (`trigger`: "event" for an event-driven one); its id."""

    async def read(
        self, target: TargetSettings, run_id: str, *, opener: Opener | None = None
    ) -> ReadResult:
        """Browser → reader → capture → spool; the run ends in status `read`. `opener`: read
        through a page already open (watch mode) instead of a fresh browser.

        The read owns its deadline, `limits.harvest_timeout`: past it, it raises `TimeoutError`
        saying so, with the run already marked failed.
        """

    def send(self, results: Sequence[ReadResult]) -> None:
        """Send these runs' spools in one go, all or nothing (blocking)."""

    def commit(self, result: ReadResult) -> None:
        """Take the run's snapshot and mark it committed; removes its spool (blocking)."""

    async def fail(self, run_id: str, reason: str) -> None:
        """Mark the run failed with `reason`; a spool it wrote stays pending."""

    def last_started(self, target: str) -> datetime | None:
        """When the target's latest run started (for catch-up), None if it never ran."""

    def pending_spools(self) -> int:
        """How many spools wait to be sent."""

    def writable(self) -> bool:
        """True when the state DB accepts writes."""

    def close(self) -> None:
        """Release the sink and the state DB."""


class HarvestBackend:
    """The real `RunBackend`: `harvester.harvest`'s steps over the state DB and a sink."""

    def __init__(self, settings: Settings, state: StateDB, sink: ChangeSink) -> None:
        self.settings = settings
        self.state = state
        self.sink = sink

    def recover(self) -> None:
        found = harvest.recover(self.state, self.sink)
        if found.died or found.sent or found.unsent or found.lost:
            log.info(
                "recovery: %d run(s) had died, %d pending run(s) sent and committed, "
                "%d still pending, %d lost their spool",
                len(found.died),
                len(found.sent),
                len(found.unsent),
                len(found.lost),
                extra={"event": "recovered", "sent": found.sent, "unsent": found.unsent},
            )

    def start(self) -> None:
        self.sink.start()

    def checked(self) -> None:
        self.sink.checked()

    def _result(self, spool: SpoolFile) -> ReadResult:
        run = self.state.get_run(spool.run_id)
        counts: dict[str, int] = {}
        if run is not None:
            counts = {
                "+I": run.inserted,
                "+U": run.updated,
                "-D": run.deleted,
                "unchanged": run.unchanged,
            }
        return ReadResult(spool.run_id, spool, counts)

    async def pending(self, target: TargetSettings) -> list[ReadResult]:
        spools = await asyncio.to_thread(harvest.pending_spools, self.state, target.name)
        return [await asyncio.to_thread(self._result, spool) for spool in spools]

    async def begin(
        self, target: TargetSettings, *, trigger: str | None = None, events: int | None = None
    ) -> str:
        start = functools.partial(self.state.start_run, trigger=trigger, events=events)
        return await asyncio.to_thread(start, target.name)

    async def read(
        self, target: TargetSettings, run_id: str, *, opener: Opener | None = None
    ) -> ReadResult:
        spool = await harvest.read_target(
            settings=self.settings, target=target, state=self.state, run_id=run_id, opener=opener
        )
        return await asyncio.to_thread(self._result, spool)

    def send(self, results: Sequence[ReadResult]) -> None:
        harvest.send(self.state, self.sink, [result.spool for result in results])

    def commit(self, result: ReadResult) -> None:
        harvest.commit(self.state, result.spool, delivered=self.sink.changelog is None)

    async def fail(self, run_id: str, reason: str) -> None:
        await asyncio.to_thread(self.state.fail_run, run_id, reason)

    def last_started(self, target: str) -> datetime | None:
        runs = self.state.list_runs(target=target, limit=1)
        return runs[0].started_at if runs else None

    def pending_spools(self) -> int:
        return len(self.state.pending_runs())

    def writable(self) -> bool:
        return self.state.writable()

    def close(self) -> None:
        self.sink.close()
        self.state.close()
