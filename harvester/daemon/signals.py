"""The daemon's signals: SIGTERM stops, SIGINT stops (twice: at once), SIGHUP reloads."""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from harvester.daemon.daemon import Daemon

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def install(loop: asyncio.AbstractEventLoop, daemon: Daemon) -> None:
    def on_interrupt() -> None:
        if daemon.stopping:
            # Committed data is safe in SQLite; whatever is uncommitted stays spooled.
            log.warning("second interrupt: exiting now", extra={"event": "daemon_killed"})
            logging.shutdown()
            os._exit(130)
        daemon.request_stop()

    def on_hangup() -> None:
        # The loop keeps only weak references to tasks: hold this one until it is done.
        task = loop.create_task(daemon.reload())
        daemon.reloads.add(task)
        task.add_done_callback(daemon.reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, daemon.request_stop)
    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)


def remove(loop: asyncio.AbstractEventLoop) -> None:
    for sig in SIGNALS:
        loop.remove_signal_handler(sig)
