"""A thread that polls while a `with` block runs: for watching sinks and the state DB."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Self


class Poller(ABC):
    """Calls `poll` every `interval` s in a thread while the `with` block runs."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @abstractmethod
    def poll(self) -> None: ...

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
