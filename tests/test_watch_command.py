"""`harvester watch URL` as a user runs it: a subprocess printing the page's changes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harvester.demo import serve_demo
from tests.support.server import StaticServer
from tests.support.watch import WAIT, serve_watch_page

pytestmark = pytest.mark.browser

READY = "window.ready === true"
DEMO_READY = "window.demoReady === true"


def _harvester(*args: str, **options: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harvester", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A session of its own: SIGINT then goes to the whole group, as a terminal's Ctrl-C
        # does (Playwright's driver gets it too).
        start_new_session=True,
        **options,  # type: ignore[call-overload]
    )


def _session_alive(sid: int) -> list[int]:
    """Processes still in session `sid` (the command, its driver, its Chromium)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    alive.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return alive


@contextmanager
def _watchdog(process: subprocess.Popen[str]) -> Iterator[None]:
    """Kill `process`'s group if the block outlasts a generous bound, and when it leaves."""
    # The reads in the block block: a command that hangs is killed, and the test fails, not hangs.
    watchdog = threading.Timer(WAIT * 3, os.killpg, (process.pid, signal.SIGKILL))
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _changes_then_ctrl_c(process: subprocess.Popen[str], server: StaticServer) -> None:
    with _watchdog(process):
        assert process.stderr is not None and process.stdout is not None
        # The baseline is read: the page's burst may start now and is watched.
        line = process.stderr.readline()
        assert line.startswith("watching http://127.0.0.1:"), line
        (server.root / "go.json").write_text("{}")
        printed = [process.stdout.readline().rstrip("\n") for _ in range(3)]
        assert sorted(printed) == [
            '+I  app/items  2  {"name": "b", "qty": 2}',
            '+U  app/items  1  name: "a" → "a2"',
            '-D  app/items  3  {"name": "c", "qty": 3}',
        ]
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(WAIT) == 0
        rest = process.stderr.read()
        assert rest.strip() == "stopped", rest


def test_watch_prints_each_change_and_ctrl_c_ends_it_cleanly(
    static_server: StaticServer, tmp_path: Path
) -> None:
    url = serve_watch_page(static_server) + "?seed=1&go=go.json"
    out = tmp_path / "changes.jsonl"
    with _harvester("watch", url, "--ready", READY, "--out", str(out)) as process:
        _changes_then_ctrl_c(process, static_server)
    deadline = time.monotonic() + WAIT
    while (alive := _session_alive(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, "the browser outlived the command"
    records = {row["op"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {"+I", "+U", "-D"}
    assert records["+U"]["key"] == 1
    assert records["+U"]["fields"] == [{"field": "name", "old": '"a"', "new": '"a2"'}]
    assert records["+U"]["old_value"] == {"name": "a", "qty": 1}
    assert records["+U"]["new_value"] == {"name": "a2", "qty": 1}
    assert records["+I"]["new_value"] == {"name": "b", "qty": 2}
    assert records["-D"]["old_value"] == {"name": "c", "qty": 3}
    assert records["-D"]["new_value"] is None
    assert len({row["run"] for row in records.values()}) == 1
    assert {(row["db"], row["store"]) for row in records.values()} == {("app", "items")}


@pytest.mark.slow
def test_clicks_on_the_demo_app_print_the_orders_they_changed() -> None:
    # Two clicks of "Mark next order paid": the app's two lowest pending ids (fixed by its seed,
    # and a watch's fresh context always starts from the first load's data).
    expected = [
        '+U  shop/orders  28  status: "pending" → "paid"',
        '+U  shop/orders  33  status: "pending" → "paid"',
    ]
    click = ("--click", "#mark-paid")
    with (
        serve_demo(0) as server,
        _harvester("watch", server.url, "--ready", DEMO_READY, *click, *click) as process,
        _watchdog(process),
    ):
        assert process.stderr is not None and process.stdout is not None
        printed: list[str] = []
        while len(printed) < len(expected):
            line = process.stdout.readline()
            assert line, f"the command ended early: {process.stderr.read()}"
            printed.append(line.rstrip("\n"))
        assert printed == expected
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(WAIT) == 0
        said = process.stderr.read().splitlines()
    assert said[0].startswith(f"watching {server.url.rstrip('/')} "), said
    assert said[1:] == ["clicked #mark-paid", "clicked #mark-paid", "stopped"]


def _finished(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "harvester", *args],
        capture_output=True,
        text=True,
        timeout=WAIT * 4,
        env=env,
        check=False,
    )
    return done.returncode, done.stderr


def test_a_bad_url_is_a_usage_error() -> None:
    code, err = _finished("watch", "ftp://example.com/")
    assert code == 2
    assert "is not an http(s) URL" in err


def test_a_page_that_never_becomes_ready_says_so(static_server: StaticServer) -> None:
    url = serve_watch_page(static_server)
    code, err = _finished("watch", url, "--ready", "false", "--timeout", "2s")
    assert code == 2
    assert "ready.function 'false' did not hold within 2s" in err


def test_no_chromium_is_said_plainly(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty), "PLAYWRIGHT_BROWSERS_PATH": str(empty)}
    code, err = _finished("watch", "http://127.0.0.1:9/", env=env)
    assert code == 2
    assert "no Chromium found" in err


def test_a_click_selector_that_matches_nothing_says_which(static_server: StaticServer) -> None:
    url = serve_watch_page(static_server) + "?seed=1"
    code, err = _finished(
        "watch", url, "--ready", READY, "--click", "#no-such-button", "--timeout", "5s"
    )
    assert code == 2
    *_, last = err.splitlines()
    expected = "--click '#no-such-button' did not finish within 5s: no element matches its selector"
    assert last == f"error: {expected}", err
    assert "Traceback" not in err
