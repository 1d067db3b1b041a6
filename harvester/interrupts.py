"""Ctrl-C (SIGINT) during a one-shot command: a send in progress finishes and commits first.

The first SIGINT while a run is being sent asks the command to stop once that run is committed
(its rows are in Flink already: interrupting would only send them again); a second one exits at
once, leaving the run pending for the next harvest. At any other moment SIGINT interrupts as
Python's default does. A process started with SIGINT ignored (a background job of a
non-interactive shell) keeps ignoring it, but Playwright's driver does not, and dies: the run it
broke is then recorded as interrupted rather than as a page error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Self

log = logging.getLogger(__name__)

_installed: Interrupts | None = None


def noted() -> bool:
    """Whether the installed `Interrupts` (if any) has seen a SIGINT."""
    return _installed is not None and _installed.count > 0


class Interrupts:
    """Installs the SIGINT handler while entered (main thread only); `say` prints a line.

    Inside an event loop, `watching` hands SIGINT to the loop instead: a signal caught by
    another thread (a send's) then still wakes the loop, where a plain handler could wait for
    the loop's next event.
    """

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.count = 0
        self.stop_requested = False
        self._sending = False
        self._ignored = False
        self._previous: Any = None

    def __enter__(self) -> Self:
        global _installed
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            self._ignored = self._previous is signal.SIG_IGN
            signal.signal(signal.SIGINT, self._on_sigint)
            _installed = self
        return self

    def __exit__(self, *_exc: object) -> None:
        global _installed
        if _installed is self:
            signal.signal(signal.SIGINT, self._previous)
            _installed = None

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Within the running task: SIGINT cancels it, unless a run is being sent."""
        task = asyncio.current_task()
        if _installed is not self or task is None:
            yield
            return
        loop = task.get_loop()
        loop.add_signal_handler(signal.SIGINT, self._on_loop_sigint, task)
        loop.set_exception_handler(self._loop_exceptions)
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, self._on_sigint)

    def sending(self, active: bool) -> None:
        """A run's send (and commit) starts or ends."""
        self._sending = active

    def _on_sigint(self, _signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if not self._ignored:
            raise KeyboardInterrupt

    def _on_loop_sigint(self, task: asyncio.Task[Any]) -> None:
        self.count += 1
        if self._ignored:
            return
        if not self._sending:
            task.cancel()
            return
        if self.stop_requested:
            self.say("aborted: the run stays pending; the next harvest sends it again")
            # Its spool is durable and the state DB committed nothing: exiting loses nothing,
            # and waiting for the threads that send would wait for the job this aborts.
            logging.shutdown()
            os._exit(130)
        self.stop_requested = True
        self.say(
            "interrupted: waiting for the Flink job to finish, then committing "
            "(Ctrl-C again to abort)"
        )

    def _loop_exceptions(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Playwright's orphaned futures, once its driver died of a SIGINT, are no news.
        if self.count and "never retrieved" in str(context.get("message", "")):
            log.debug("after SIGINT: %s", context.get("exception"))
            return
        loop.default_exception_handler(context)
