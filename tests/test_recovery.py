"""Crash recovery: `harvester harvest` killed (SIGKILL) at chosen points, then run again.

The harvest runs in a child process with one function patched to signal a marker file and then
hang at the point under test; the test kills it there and runs `harvester harvest` again.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from harvester.cli import main
from harvester.config import load_settings
from harvester.errors import StateLockedError
from harvester.harvest import DIED_DURING_READ, commit, read_target, recover, send
from harvester.lock import StateLock
from harvester.sinks import JsonLinesSink
from harvester.state import RunStore, StateDB
from tests.support.configs import SHOP_PAGE, write_config
from tests.support.fake_reader import FakeReader, fake_opener, in_loop

# argv: marker, where to hang ("read" or "send"), then the `harvester` arguments.
CHILD = """
import asyncio, sys, time
from pathlib import Path
from harvester import reader
from harvester.sinks import jsonl
from harvester.cli import main

marker, where, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
if where == "read":
    take = reader.StoreRead.__anext__
    calls = 0

    async def hang_on_third_batch(self):
        global calls
        calls += 1
        if calls == 3:  # two batches are in the spool's .part file
            marker.touch()
            await asyncio.sleep(3600)
        return await take(self)

    reader.StoreRead.__anext__ = hang_on_third_batch
else:
    send = jsonl.JsonLinesSink.send

    def hang(self, spools):
        if where == "after-send":
            send(self, spools)
        marker.touch()
        time.sleep(3600)

    jsonl.JsonLinesSink.send = hang
sys.exit(main(argv))
"""

# The shop page's first run: 21 records, then +S of its database and of its two stores.
SPOOLED = 21 + 3


def _start(tmp_path: Path, where: str, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
    marker = tmp_path / f"{where}.marker"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(marker), where, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        if child.poll() is not None:
            raise AssertionError(child.stderr.read().decode() if child.stderr else "child died")
        assert time.monotonic() < deadline, "the child never reached the point under test"
        time.sleep(0.05)
    return child, marker


def _kill(child: subprocess.Popen[bytes]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    if child.stderr:
        child.stderr.close()


def _setup(tmp_path: Path, static_server: Any) -> tuple[list[str], Path]:
    static_server.add("shop.html", SHOP_PAGE)
    extra = '[targets.ready]\nfunction = "window.ready === true"\n'
    extra += "[targets.limits]\nbatch_size = 4\n"
    config = write_config(tmp_path, url=static_server.url("shop.html"), extra=extra)
    out = tmp_path / "out"
    return ["harvest", "--config", str(config), "app", "--sink", f"jsonl:{out}"], out / (
        "changes.jsonl"
    )


def _rows(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


@pytest.mark.browser
@pytest.mark.slow
def test_killed_during_the_read_recovers(tmp_path: Path, static_server: Any) -> None:
    argv, sent = _setup(tmp_path, static_server)
    child, _ = _start(tmp_path, "read", argv)
    parts = list((tmp_path / "state" / "spool").glob("*.jsonl.part"))
    _kill(child)
    assert len(parts) == 1 and not sent.exists()

    assert main(argv) == 0
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        new, died = state.list_runs()
        assert (died.status, died.error, died.pending) == ("failed", DIED_DURING_READ, False)
        assert new.status == "committed" and new.inserted == 21
    assert not list((tmp_path / "state" / "spool").iterdir())
    rows = _rows(sent)
    assert {row["run_id"] for row in rows} == {new.id} and len(rows) == SPOOLED


@pytest.mark.browser
@pytest.mark.slow
def test_killed_before_the_commit_recovers_and_a_second_process_is_refused(
    tmp_path: Path, static_server: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    argv, sent = _setup(tmp_path, static_server)
    child, _ = _start(tmp_path, "before-send", argv)
    try:
        # While it lives, it owns the state folder: a second harvester exits 2 naming it.
        assert main(argv) == 2
        assert f"is owned by process {child.pid}" in capfd.readouterr().err
    finally:
        _kill(child)
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        (read,) = state.list_runs()
        assert (read.status, read.pending, read.rows) == ("read", True, SPOOLED)
    assert not sent.exists()

    assert main(argv) == 0
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        new, old = state.list_runs()
        assert old.id == read.id and old.status == "committed" and old.seq == 1
        assert new.status == "committed" and new.rows == 0 and new.unchanged == 21
    rows = _rows(sent)
    assert {row["run_id"] for row in rows} == {read.id} and len(rows) == SPOOLED
    assert not list((tmp_path / "state" / "spool").iterdir())


@pytest.mark.browser
@pytest.mark.slow
def test_killed_between_send_and_commit_commits_once(tmp_path: Path, static_server: Any) -> None:
    argv, sent = _setup(tmp_path, static_server)
    child, _ = _start(tmp_path, "after-send", argv)
    _kill(child)
    assert len(_rows(sent)) == SPOOLED

    assert main(argv) == 0
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        new, old = state.list_runs()
        assert old.status == "committed" and new.rows == 0
        assert len(list(state.run_changes(old.id))) == 21
    # Sending is at least once across such a crash: the same run's rows came again, and its
    # run_id lets a consumer drop them. The state committed it once.
    rows = _rows(sent)
    assert len(rows) == 2 * SPOOLED and {row["run_id"] for row in rows} == {old.id}


def test_the_lock_names_its_owner_and_dies_with_it(tmp_path: Path) -> None:
    with (
        StateLock(tmp_path),
        pytest.raises(StateLockedError, match=f"owned by process {os.getpid()} "),
    ):
        StateLock(tmp_path).acquire()
    with StateLock(tmp_path):
        pass
    holder = "import sys, time; from pathlib import Path; from harvester.lock import StateLock\n"
    holder += "StateLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"locked\n"
        with pytest.raises(StateLockedError, match=f"owned by process {child.pid} "):
            StateLock(tmp_path).acquire()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        if child.stdout:
            child.stdout.close()
    with StateLock(tmp_path):  # a dead owner never blocks
        pass


@in_loop
async def test_recover_cleans_up_after_each_kind_of_crash(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    sink = JsonLinesSink(tmp_path / "out")
    data = {"db": {"s": {n: {"id": n} for n in range(3)}}}
    with StateDB.open(settings.state.dir) as state:
        # Committed, but the process died before removing its spool.
        committed = state.start_run("app")
        spool = await read_target(
            settings=settings,
            target=settings.target("app"),
            state=state,
            run_id=committed,
            opener=fake_opener(FakeReader(data)),
        )
        kept = tmp_path / "kept.jsonl"
        shutil.copy(spool.path, kept)
        send(state, sink, [spool])
        assert commit(state, spool)
        shutil.copy(kept, spool.path)
        # Died during its read, with a half-written spool.
        running = state.start_run("app")
        (state.spool_dir / f"{running}.jsonl.part").write_text('{"op": "+I"}\n')
        # Read, but its spool file has gone.
        lost = state.start_run("other")
        nothing: list[RunStore] = []
        state.mark_read(lost, origin="http://o", stores=nothing, rows=3)
        # Not ours: left alone.
        (state.spool_dir / "stranger.jsonl").write_text("")

        found = recover(state, sink)
        assert (found.died, found.lost, found.sent, found.unsent) == ([running], [lost], [], {})
        assert found.quarantined == {}
        assert [p.name for p in state.spool_dir.iterdir()] == ["stranger.jsonl"]
        died = state.get_run(running)
        assert died is not None and (died.status, died.error) == ("failed", DIED_DURING_READ)
        gone = state.get_run(lost)
        assert gone is not None and gone.status == "failed" and not gone.pending
        assert gone.error is not None and gone.error.startswith("spool file missing")
        assert len(sink.path.read_bytes().splitlines()) == 5  # nothing sent twice (3 records, 2 +S)
        assert not commit(
            state, dataclasses.replace(spool, path=kept)
        )  # committing again is a no-op


@in_loop
async def test_a_bad_spool_is_quarantined_unsent_and_does_not_hold_up_the_others(
    tmp_path: Path,
) -> None:
    other = '[[targets]]\nname = "other"\nurl = "http://127.0.0.1:9/"\nschedule = "15m"\n'
    settings = load_settings(write_config(tmp_path, extra=other))
    sink = JsonLinesSink(tmp_path / "out")
    data = {"db": {"s": {n: {"id": n} for n in range(3)}}}
    with StateDB.open(settings.state.dir) as state:
        spools = []
        for name in ("app", "other"):
            spools.append(
                await read_target(
                    settings=settings,
                    target=settings.target(name),
                    state=state,
                    run_id=state.start_run(name),
                    opener=fake_opener(FakeReader(data)),
                )
            )
        bad, good = spools
        bad.path.write_bytes(bad.path.read_bytes().replace(b'"run_id":"', b'"run_id":"x'))
        found = recover(state, sink)
        assert found.sent == [good.run_id] and found.unsent == {}
        assert list(found.quarantined) == [bad.run_id]
        assert f"line 1: a row of run 'x{bad.run_id}'" in found.quarantined[bad.run_id]
        dropped = state.get_run(bad.run_id)
        assert dropped is not None and not dropped.pending and dropped.status == "failed"
        assert dropped.error == found.quarantined[bad.run_id]
        assert not bad.path.exists() and not good.path.exists()
        assert {row["run_id"] for row in _rows(sink.path)} == {good.run_id}
