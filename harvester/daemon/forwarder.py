"""The forwarder: the one consumer of finished reads, batching them into sends and commits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from harvester.errors import ConfigError
from harvester.harvest import describe

if TYPE_CHECKING:
    from harvester.daemon.backend import ReadResult, RunBackend

log = logging.getLogger(__name__)


class Forwarder:
    """Takes every finished read waiting, sends their spools in one call, then commits each.

    One consumer, so that reads finishing together share one send (one Flink job) and no two
    sends or commits overlap. The backend's blocking steps run in a thread: Flink blocks.
    """

    def __init__(
        self,
        backend: RunBackend,
        *,
        on_config_error: Callable[[ConfigError], None] | None = None,
    ) -> None:
        self.backend = backend
        # A sink that finds the config broken only when asked to send (its check runs while
        # the first reads do) makes every send fail: the daemon stops rather than go on.
        self.on_config_error = on_config_error
        self._queue: asyncio.Queue[tuple[ReadResult, asyncio.Future[None]]] = asyncio.Queue()

    async def forward(self, result: ReadResult) -> None:
        """Hand a finished read over; returns once it is committed, raises what failed it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((result, done))
        await done

    async def run(self) -> None:
        """Start the sink, then consume finished reads until cancelled."""
        try:
            # Flink's first job pays for the JVM's start: pay it while the first reads run.
            await asyncio.to_thread(self.backend.start)
        except Exception as exc:
            # The first send starts the sink again, and its failure fails the runs it carries.
            log.warning("starting the sink failed: %s", describe(exc))
        try:
            await asyncio.to_thread(self.backend.checked)
        except ConfigError as exc:
            if self.on_config_error is not None:
                self.on_config_error(exc)
        except Exception as exc:
            log.warning("checking the sink's config failed: %s", describe(exc))
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            # A run cancelled while it waited (shutdown) is not sent.
            waiting = [(result, done) for result, done in batch if not done.done()]
            try:
                if waiting:
                    await asyncio.to_thread(self.backend.send, [r for r, _ in waiting])
            except Exception as exc:
                for _, done in waiting:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, ConfigError) and self.on_config_error is not None:
                    self.on_config_error(exc)
                continue
            for result, done in waiting:
                try:
                    await asyncio.to_thread(self.backend.commit, result)
                except Exception as exc:
                    if not done.done():
                        done.set_exception(exc)
                else:
                    if not done.done():
                        done.set_result(None)
