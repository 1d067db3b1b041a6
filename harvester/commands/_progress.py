"""A one-shot command's phases on stderr as they happen (a spinner too, on a terminal)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Self

from harvester.redaction import redact

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

    from harvester.interrupts import Interrupts

_PHASES = {
    "open": "{target}: opening the page",
    "read": "{target}: reading IndexedDB of {detail}",
    "send": "{target}: read; sending {detail}",
    "done": "{target}: committed",
    "failed": "{target}: failed: {detail}",
}


class Phases:
    """Each line carries the seconds since the command started; a run's "send" phase is the
    one `interrupts` lets finish. Called as a `harvest.Progress`."""

    def __init__(self, console: Console, interrupts: Interrupts) -> None:
        self.console = console
        self.interrupts = interrupts
        self.started = time.monotonic()
        self._status: Status | None = None

    def __enter__(self) -> Self:
        if self.console.is_terminal:
            self._status = self.console.status("starting", spinner="dots")
            self._status.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        # A page's error may quote its URL, and a URL may hold a secret of an auth step.
        text = redact(text)
        self.console.print(f"[{self.elapsed():5.1f}s] {text}", markup=False, highlight=False)
        if self._status is not None:
            self._status.update(text)

    def __call__(self, target: str, phase: str, detail: str) -> None:
        self.interrupts.sending(phase == "send")
        self.say(_PHASES[phase].format(target=target, detail=detail))
