"""Ctrl-C in a one-shot harvest: a run being sent commits first; other moments interrupt; a
run broken by a SIGINT the process ignored is recorded as interrupted."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from rich.console import Console

from harvester.commands._progress import Phases
from harvester.config import Settings
from harvester.harvest import harvest_target
from harvester.interrupts import Interrupts
from harvester.sinks import JsonLinesSink
from harvester.spool import SpoolFile
from harvester.state import StateDB
from tests.support.fake_reader import ORIGIN, FakeReader, fake_opener

WAIT_S = 60
WAITING = (
    "interrupted: waiting for the Flink job to finish, then committing (Ctrl-C again to abort)"
)


class HeldSink(JsonLinesSink):
    """A sink whose send waits until `release` is set, as a Flink job takes its time."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, spools: Sequence[SpoolFile]) -> None:
        self.entered.set()
        assert self.release.wait(WAIT_S), "the test never released the send"
        super().send(spools)


def _wait(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_while_a_run_is_sent_lets_it_commit_and_stops_after_it(
    settings: Settings, state: StateDB
) -> None:
    sink = HeldSink(settings.state.data_dir / "out")
    said: list[str] = []
    out = io.StringIO()

    def press() -> None:
        assert sink.entered.wait(WAIT_S)
        os.kill(os.getpid(), signal.SIGINT)
        _wait("the message", lambda: said)
        sink.release.set()

    presser = threading.Thread(target=press)

    async def harvest() -> Any:
        with interrupts.watching():
            return await harvest_target(
                settings=settings,
                target=settings.target("app"),
                state=state,
                sink=sink,
                opener=fake_opener(FakeReader({"db": {"s": {1: {"id": 1}}}})),
                progress=phases,
            )

    with Interrupts(said.append) as interrupts:
        phases = Phases(Console(file=out, width=200), interrupts)
        presser.start()
        done = asyncio.run(harvest())
    presser.join()

    assert said == [WAITING]
    assert interrupts.stop_requested
    assert (done.run.status, done.run.inserted) == ("committed", 1)
    assert [line.split("] ", 1)[1] for line in out.getvalue().splitlines()] == [
        "app: opening the page",
        f"app: reading IndexedDB of {ORIGIN}",
        "app: read; sending 3 rows",  # the record, +S of its database and store
        "app: committed",
    ]


def test_a_ctrl_c_at_any_other_moment_interrupts(settings: Settings) -> None:
    with Interrupts(print) as interrupts, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(WAIT_S)
    assert interrupts.count == 1  # ours, not Python's default handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_run_broken_after_an_ignored_sigint_is_recorded_as_interrupted(
    settings: Settings, state: StateDB
) -> None:
    loop_said: list[dict[str, Any]] = []

    @asynccontextmanager
    async def dying_driver() -> AsyncIterator[tuple[str, FakeReader]]:
        # What a Playwright driver that took the SIGINT leaves: a failed page, an orphan future.
        os.kill(os.getpid(), signal.SIGINT)
        async with asyncio.timeout(WAIT_S):
            while not interrupts.count:  # noqa: ASYNC110 (the loop's signal callback counts)
                await asyncio.sleep(0.01)
        orphan = asyncio.get_running_loop().create_future()
        orphan.set_exception(RuntimeError("Connection closed"))
        del orphan
        raise RuntimeError("net::ERR_ABORTED; maybe frame was detached?")
        yield ORIGIN, FakeReader({})

    async def harvest() -> Any:
        loop = asyncio.get_running_loop()
        loop.default_exception_handler = loop_said.append  # type: ignore[method-assign]
        with interrupts.watching():
            return await harvest_target(
                settings=settings,
                target=settings.target("app"),
                state=state,
                sink=JsonLinesSink(settings.state.data_dir / "out"),
                opener=dying_driver,
            )

    with _sigint_ignored():
        with Interrupts(print) as interrupts:
            done = asyncio.run(harvest())
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert interrupts.count == 1
    assert (done.run.status, done.run.error) == ("failed", "interrupted (SIGINT)")
    assert loop_said == []
