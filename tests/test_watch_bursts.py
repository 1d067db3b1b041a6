"""The burst logic of watch mode, on a clock the tests move: no browser, no sleeping."""

from __future__ import annotations

import asyncio

import pytest

from harvester.errors import WatchError
from harvester.watch import name_glob, store_glob
from harvester.watch.bursts import BurstQueue, Bursts
from tests.support.fake_reader import in_loop

A = ("db", "a")
B = ("db", "b")


def test_nothing_pending_gives_nothing() -> None:
    bursts = Bursts(debounce=0.25, max_delay=2.0)
    assert bursts.due_at() is None
    assert bursts.take(100.0) is None


def test_a_burst_is_due_debounce_after_its_last_event() -> None:
    bursts = Bursts(debounce=0.25, max_delay=2.0)
    bursts.add(A, 10.0)
    bursts.add(A, 10.1)
    bursts.add(B, 10.2)
    assert bursts.due_at() == pytest.approx(10.45)
    assert bursts.take(10.44) is None
    batch = bursts.take(10.45)
    assert batch is not None
    assert batch.stores == frozenset({A, B})
    assert batch.events == 3
    assert batch.first_event == 10.0
    assert not batch.schema
    assert not bursts.pending


def test_endless_events_are_still_read_every_max_delay() -> None:
    bursts = Bursts(debounce=0.25, max_delay=2.0)
    now, batches = 0.0, []
    # One event every 100 ms for 10 s: the debounce never expires.
    while now < 10.0:
        bursts.add(A, now)
        if (batch := bursts.take(now)) is not None:
            batches.append((now, batch))
        now = round(now + 0.1, 6)
    assert [round(at, 1) for at, _ in batches] == [2.0, 4.1, 6.2, 8.3]
    for at, batch in batches:
        assert at - batch.first_event <= 2.0 + 1e-9


def test_events_during_a_read_belong_to_the_next_batch() -> None:
    bursts = Bursts(debounce=0.25, max_delay=2.0)
    bursts.add(A, 0.0)
    first = bursts.take(0.25)
    assert first is not None
    assert first.stores == {A}
    # The caller reads A now; the app writes B meanwhile.
    bursts.add(B, 0.3)
    second = bursts.take(0.55)
    assert second is not None
    assert second.stores == {B}
    assert second.first_event == 0.3
    assert second.events == 1


def test_a_list_event_asks_for_the_schema() -> None:
    bursts = Bursts(debounce=0.0, max_delay=1.0)
    bursts.add(None, 5.0)
    batch = bursts.take(5.0)
    assert batch is not None
    assert batch.schema
    assert batch.stores == frozenset()


@in_loop
async def test_rejected_stores_are_counted_but_start_no_burst() -> None:
    queue = BurstQueue(debounce=0.0, max_delay=0.0, accept=lambda db, store: store != "a")
    queue.content(*A)
    queue.content(*A)
    assert queue.received == 2
    assert not queue.bursts.pending
    queue.content(*B)
    batch = await asyncio.wait_for(queue.get(), 10)
    assert batch.stores == {B}
    assert batch.events == 1
    assert queue.received == 3


@in_loop
async def test_an_accept_that_fails_reads_the_store_rather_than_miss_it() -> None:
    def broken(_db: str, _store: str) -> bool:
        raise RuntimeError("bug")

    queue = BurstQueue(debounce=0.0, max_delay=0.0, accept=broken)
    queue.content(*A)
    assert (await asyncio.wait_for(queue.get(), 10)).stores == {A}


def test_bad_timings_are_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        Bursts(debounce=-1.0, max_delay=1.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@in_loop
async def test_the_queue_waits_for_the_burst_to_be_due() -> None:
    clock = FakeClock()
    # Zero timings on a frozen clock: the batch is due as soon as it is looked at.
    queue = BurstQueue(debounce=0.0, max_delay=0.0, clock=clock)
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.content(*A)
    batch = await asyncio.wait_for(waiting, 10)
    assert batch.stores == {A}
    assert batch.first_event == 1000.0


@in_loop
async def test_the_queue_returns_after_debounce_on_the_real_clock() -> None:
    queue = BurstQueue(debounce=0.05, max_delay=5.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    queue.content(*A)
    batch = await asyncio.wait_for(queue.get(), 10)
    assert batch.stores == {A}
    assert loop.time() - started >= 0.04


@in_loop
async def test_a_closed_queue_raises_with_its_reason() -> None:
    queue = BurstQueue(debounce=0.0, max_delay=0.0)
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.close("the watched page crashed")
    queue.close("the watcher is closed")
    with pytest.raises(WatchError, match="crashed"):
        await asyncio.wait_for(waiting, 10)
    with pytest.raises(WatchError, match="crashed"):
        await queue.get()


@pytest.mark.parametrize(
    ("name", "glob"),
    [
        ("plain", "plain"),
        ("a*b?[c]", "a[*]b[?][[]c]"),
        ("lone\ufffdone", "lone?one"),
    ],
)
def test_name_globs_match_the_store_they_name(name: str, glob: str) -> None:
    import fnmatch

    assert name_glob(name) == glob
    real = name.replace("\ufffd", "\ud800")
    assert fnmatch.fnmatchcase(real, glob)
    assert fnmatch.fnmatchcase(f"{real}/{real}", store_glob(name, name))
    assert not fnmatch.fnmatchcase(real + "x", glob)
