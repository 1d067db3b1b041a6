"""One harvest end to end: read → capture → spool → send → commit, with fakes and a real page."""

from __future__ import annotations

import ast
import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from harvester.config import Settings, load_settings
from harvester.errors import StateError
from harvester.harvest import harvest_target, read_target, recover, send_pending
from harvester.sinks import JsonLinesSink
from harvester.spool import SpoolFile, read_rows
from harvester.state import StateDB
from tests.support.configs import SHOP_PAGE, write_config
from tests.support.fake_reader import ORIGIN, Data, FakeReader, fake_opener, in_loop


class FlakySink(JsonLinesSink):
    """A JSON-lines sink that fails after `fail_after` rows while `failing` is set."""

    def __init__(self, directory: Path, fail_after: int = 0) -> None:
        super().__init__(directory)
        self.failing = True
        self.fail_after = fail_after
        self.calls: list[list[str]] = []

    def send(self, spools: Sequence[SpoolFile]) -> None:
        self.calls.append([spool.run_id for spool in spools])
        if not self.failing:
            super().send(spools)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as out:
            start = out.tell()
            for row in list(read_rows(spools[0].path))[: self.fail_after]:
                out.write(orjson.dumps(row) + b"\n")
            out.truncate(start)  # all or nothing, as the contract asks
        raise ConnectionError("the sink went away")

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines()]


def _data() -> Data:
    return {"db": {"s": {n: {"id": n} for n in range(5)}}}


@in_loop
async def test_harvest_target_sends_then_commits(settings: Settings, state: StateDB) -> None:
    sink = JsonLinesSink(settings.state.data_dir / "out")
    target = settings.target("app")
    reader = FakeReader(_data())
    first = await harvest_target(
        settings=settings, target=target, state=state, sink=sink, opener=fake_opener(reader)
    )
    # 5 records, then the first run's schema rows: +S of its database and of its store.
    assert (first.run.status, first.run.inserted, first.run.rows) == ("committed", 5, 7)
    assert [(s.store, s.inserted, s.complete) for s in first.stores] == [("s", 5, True)]
    assert not list(state.spool_dir.iterdir())
    second = await harvest_target(
        settings=settings, target=target, state=state, sink=sink, opener=fake_opener(reader)
    )
    assert (second.run.status, second.run.rows, second.run.unchanged) == ("committed", 0, 5)
    lines = sink.path.read_bytes().splitlines()
    assert [orjson.loads(line)["run_id"] for line in lines] == [first.run.id] * 7


@in_loop
async def test_a_failing_sink_keeps_the_spool_and_the_next_harvest_recovers_it_first(
    settings: Settings, state: StateDB
) -> None:
    sink = FlakySink(settings.state.data_dir / "out", fail_after=2)
    target = settings.target("app")
    data = _data()
    failed = await harvest_target(
        settings=settings,
        target=target,
        state=state,
        sink=sink,
        opener=fake_opener(FakeReader(data)),
    )
    assert failed.run.status == "failed" and failed.run.pending
    assert failed.run.error == "sending failed: ConnectionError: the sink went away"
    assert list(state.iter_records("app", ORIGIN, "db", "s")) == []
    assert [p.name for p in state.spool_dir.iterdir()] == [f"{failed.run.id}.jsonl"]
    assert sink.rows() == []

    data["db"]["s"][0]["x"] = 1
    del data["db"]["s"][4]
    sink.failing = False
    # As `harvester harvest` does: recovery sends the pending run, then the target is read.
    assert recover(state, sink).sent == [failed.run.id]
    second = await harvest_target(
        settings=settings,
        target=target,
        state=state,
        sink=sink,
        opener=fake_opener(FakeReader(data)),
    )
    assert sink.calls[1:] == [[failed.run.id], [second.run.id]]
    recovered = state.get_run(failed.run.id)
    assert recovered is not None and recovered.status == "committed" and not recovered.pending
    assert second.run.status == "committed"
    rows = sink.rows()
    assert [(r["run_id"], r["op"], r["key"]) for r in rows] == [
        *[(failed.run.id, "+I", str(n)) for n in range(5)],
        (failed.run.id, "+S", None),
        (failed.run.id, "+S", None),
        (second.run.id, "+U", "0"),
        (second.run.id, "-D", "4"),
    ]
    assert not list(state.spool_dir.iterdir())


@in_loop
async def test_a_pending_run_that_still_fails_blocks_new_reads(
    settings: Settings, state: StateDB
) -> None:
    sink = FlakySink(settings.state.data_dir / "out")
    target = settings.target("app")
    opener = fake_opener(FakeReader(_data()))
    await harvest_target(settings=settings, target=target, state=state, sink=sink, opener=opener)
    (pending,) = recover(state, sink).unsent
    with pytest.raises(StateError, match=f"run {pending} is still pending .sending failed"):
        await harvest_target(
            settings=settings, target=target, state=state, sink=sink, opener=opener
        )
    assert len(state.list_runs()) == 1
    assert len(sink.calls) == 2  # the read's send, recovery's; never the target's again
    refused = state.start_run("app")
    with pytest.raises(StateError, match="waits to be sent"):
        await read_target(
            settings=settings, target=target, state=state, run_id=refused, opener=opener
        )
    run = state.get_run(refused)
    assert run is not None and run.status == "failed"
    sink.failing = False
    assert send_pending(state, sink).sent == [pending]


@in_loop
async def test_a_read_that_fails_leaves_no_spool_and_no_trace(
    settings: Settings, state: StateDB
) -> None:
    reader = FakeReader(_data())

    @asynccontextmanager
    async def broken_page() -> AsyncIterator[tuple[str, FakeReader]]:
        yield ORIGIN, reader
        raise AssertionError("unreachable")

    async def schema() -> list[Any]:
        raise RuntimeError("page crashed")

    reader.schema = schema  # type: ignore[method-assign]
    sink = JsonLinesSink(settings.state.data_dir / "out")
    summary = await harvest_target(
        settings=settings,
        target=settings.target("app"),
        state=state,
        sink=sink,
        opener=broken_page,
    )
    assert (summary.run.status, summary.run.error) == ("failed", "RuntimeError: page crashed")
    assert not summary.run.pending and not list(state.spool_dir.iterdir())
    assert state.list_stores() == [] and not sink.path.exists()


@in_loop
async def test_harvest_timeout_fails_the_run(tmp_path: Path) -> None:
    limits = "[targets.limits]\nharvest_timeout = '200ms'"
    settings = load_settings(write_config(tmp_path, extra=limits))

    @asynccontextmanager
    async def hung_page() -> AsyncIterator[tuple[str, FakeReader]]:
        await asyncio.sleep(30)
        yield ORIGIN, FakeReader(_data())

    with StateDB.open(settings.state.dir) as state:
        summary = await harvest_target(
            settings=settings,
            target=settings.target("app"),
            state=state,
            sink=JsonLinesSink(tmp_path / "out"),
            opener=hung_page,
        )
    assert (summary.run.status, summary.run.error) == ("failed", "harvest timed out after 200ms")


def test_harvest_needs_targets_or_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harvester.cli import main

    config = str(write_config(tmp_path))
    assert main(["harvest", "--config", config]) == 2
    assert "name at least one target, or give --all" in capsys.readouterr().err
    assert main(["harvest", "--config", config, "nope"]) == 2
    assert "no target named 'nope'" in capsys.readouterr().err
    assert main(["harvest", "--config", config, "app", "--sink", "kafka"]) == 2
    assert "expected `flink`, `jsonl` or `jsonl:DIR`" in capsys.readouterr().err


def test_no_command_module_imports_another() -> None:
    # Pieces two commands share live in the non-command modules `_sinks` and `_once`.
    from harvester import commands

    names = {module.__name__ for module in commands.COMMANDS}
    for module in commands.COMMANDS:
        assert module.__file__ is not None
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        assert not imported & names, module.__name__


# ---- a real Chromium page -------------------------------------------------------------------


def _page_config(tmp_path: Path, url: str, extra: str = "") -> Settings:
    # Each load of the page writes its data whole into a fresh browser context.
    ready = '[targets.ready]\nfunction = "window.ready === true"\n'
    return load_settings(write_config(tmp_path, url=url, extra=ready + extra))


@pytest.mark.browser
@in_loop
async def test_real_page_first_all_inserts_then_nothing_then_exactly_six_rows(
    tmp_path: Path, static_server: Any
) -> None:
    static_server.add("shop.html", SHOP_PAGE)
    sink = JsonLinesSink(tmp_path / "out")

    async def harvest(step: int, state: StateDB) -> list[dict[str, Any]]:
        settings = _page_config(tmp_path, static_server.url(f"shop.html?step={step}"))
        before = len(sink.path.read_bytes().splitlines()) if sink.path.exists() else 0
        summary = await harvest_target(
            settings=settings, target=settings.target("app"), state=state, sink=sink
        )
        assert summary.run.status == "committed", summary.run.error
        assert all(store.complete for store in summary.stores)
        rows = [orjson.loads(line) for line in sink.path.read_bytes().splitlines()[before:]]
        # The record rows: the schema rows (+S, -S) have tests of their own (test_schema_log).
        return [row for row in rows if row["op"] not in ("+S", "-S")]

    with StateDB.open(tmp_path / "state") as state:
        first = await harvest(0, state)
        assert {r["op"] for r in first} == {"+I"} and len(first) == 21
        assert {r["origin"] for r in first} == {static_server.origin}
        note = next(r for r in first if r["store"] == "notes")
        assert json.loads(note["value"])["big"] == {"$bigint": "12345678901234567890"}
        assert await harvest(0, state) == []
        changes = await harvest(1, state)
        assert sorted((r["op"], r["key"]) for r in changes) == [
            ("+I", "21"),
            ("+I", "22"),
            ("+I", "23"),
            ("+U", "2"),
            ("+U", "5"),
            ("-D", "9"),
        ]
        # A +U or -D carries the value the first harvest committed; a +I none.
        committed = {(r["store"], r["key"]): r["value"] for r in first}
        assert [r["old_value"] for r in changes] == [
            None if r["op"] == "+I" else committed[r["store"], r["key"]] for r in changes
        ]
        assert sum(r["old_value"] is not None for r in changes) == 3
        (store,) = [s for s in state.list_stores() if s.store == "orders"]
        assert store.records == 22 and store.key_path == "id"
        assert store.indexes[0]["name"] == "by_total"

        settings = _page_config(tmp_path, static_server.url("shop.html?step=1"))
        before = len(sink.path.read_bytes().splitlines())
        full = await harvest_target(
            settings=settings, target=settings.target("app"), state=state, sink=sink, full=True
        )
        again = [orjson.loads(line) for line in sink.path.read_bytes().splitlines()[before:]]
        assert {r["op"] for r in again} == {"+I"} and len(again) == 23
        assert {r["old_value"] for r in again} == {None}
        assert (full.run.full, full.run.unchanged, full.run.rows) == (True, 23, 23)
        assert list(state.run_changes(full.run.id)) == []


@pytest.mark.browser
@in_loop
async def test_real_page_store_cut_by_max_records_emits_no_deletes(
    tmp_path: Path, static_server: Any
) -> None:
    static_server.add("shop.html", SHOP_PAGE)
    sink = JsonLinesSink(tmp_path / "out")
    with StateDB.open(tmp_path / "state") as state:
        settings = _page_config(tmp_path, static_server.url("shop.html?step=0"))
        await harvest_target(
            settings=settings, target=settings.target("app"), state=state, sink=sink
        )
        sent = len(sink.path.read_bytes().splitlines())
        cut = "[targets.limits]\nmax_records = 10\n"
        settings = _page_config(tmp_path, static_server.url("shop.html?step=1"), cut)
        summary = await harvest_target(
            settings=settings, target=settings.target("app"), state=state, sink=sink
        )
        rows = [orjson.loads(line) for line in sink.path.read_bytes().splitlines()[sent:]]
    # Keys 1–11 were read (9 is gone): its changes, but no -D for 9 and nothing past the cut.
    assert sorted((r["op"], r["key"]) for r in rows) == [("+U", "2"), ("+U", "5")]
    orders = next(s for s in summary.stores if s.store == "orders")
    assert not orders.complete and orders.deleted == 0
    assert "max_records" in orders.problems[0]["message"]
    assert summary.run.status == "committed" and summary.run.incomplete_stores == 1
