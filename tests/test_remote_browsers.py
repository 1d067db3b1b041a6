"""`browser.connect_url`: the demo harvested through a CDP endpoint and a Playwright server on
127.0.0.1; a remote browser that goes away mid-run fails that run clearly, and the next run
connects again."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harvester.browser import connect_protocol
from harvester.config import BrowserSettings
from harvester.demo import DemoServer, serve_demo
from harvester.state import StateDB
from tests.support.remote_browsers import Kind, RemoteBrowser

pytestmark = pytest.mark.slow

WAIT_S = 120


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    with serve_demo(0) as server:
        yield server


@pytest.fixture(params=["cdp", "playwright"])
def remote(
    request: pytest.FixtureRequest, tmp_path: Path, chromium_path: Path
) -> Iterator[RemoteBrowser]:
    kind: Kind = request.param
    browser = RemoteBrowser(kind, tmp_path / "remote", chromium_path)
    browser.start()
    try:
        yield browser
    finally:
        browser.kill()


def _config(tmp_path: Path, url: str, connect_url: str, ready: str) -> Path:
    config = tmp_path / "harvester.toml"
    config.write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[browser]\nconnect_url = "{connect_url}"\n'
        f'[[targets]]\nname = "demo"\nurl = "{url}"\nschedule = "1h"\n'
        f'[targets.ready]\nfunction = "{ready}"\n[targets.limits]\npage_timeout = "2m"\n'
    )
    return config


@pytest.fixture
def harvest() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Starts `harvester harvest --all` on a config; kills what a failed test left running."""
    started: list[subprocess.Popen[str]] = []

    def start(config: Path) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "harvester", "harvest", "--all", "--sink", "jsonl"]
        started.append(
            subprocess.Popen(
                [*command, "--config", str(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _runs(tmp_path: Path) -> list[tuple[str, int, str | None]]:
    with StateDB.open(tmp_path / "state", readonly=True) as state:
        runs = sorted(state.list_runs(target="demo"), key=lambda run: run.started_at)
        return [(run.status, run.inserted, run.error) for run in runs]


def test_the_protocol_follows_the_url_unless_told() -> None:
    def protocol(url: str, told: str = "auto") -> str:
        return connect_protocol(BrowserSettings(connect_url=url, connect_protocol=told))

    assert protocol("http://127.0.0.1:9222") == "cdp"
    assert protocol("ws://127.0.0.1:9222/devtools/browser/0b1c") == "cdp"
    assert protocol("ws://127.0.0.1:3000/") == "playwright"
    assert protocol("wss://browsers.example/chromium?token=x") == "playwright"
    assert protocol("wss://browsers.example/?token=x", "cdp") == "cdp"


def test_the_demo_is_harvested_through_a_remote_browser_that_may_go_away(
    tmp_path: Path,
    demo: DemoServer,
    remote: RemoteBrowser,
    harvest: Callable[[Path], subprocess.Popen[str]],
) -> None:
    urls = [remote.url, remote.ws_url] if remote.kind == "cdp" else [remote.url]
    for url in urls:
        done = harvest(_config(tmp_path, demo.url, url, "window.demoReady === true"))
        out, err = done.communicate(timeout=WAIT_S)
        assert done.returncode == 0, out + err
    runs = _runs(tmp_path)
    assert [status for status, _, _ in runs] == ["committed"] * len(urls)
    assert runs[0][1] > 1000

    # A page that never gets ready holds the run open while the remote browser goes away.
    config = _config(tmp_path, demo.url, remote.url, "window.never === true")
    pages = remote.pages()
    stuck = harvest(config)
    deadline = time.monotonic() + WAIT_S
    while remote.pages() <= pages:
        assert stuck.poll() is None, stuck.communicate()
        assert time.monotonic() < deadline, "the run never opened its page"
        time.sleep(0.2)
    # Usually past the page's load, in the wait for ready.function (which once asked a closed
    # page again until page_timeout); either moment must fail the run at once.
    time.sleep(1)
    remote.kill()
    out, err = stuck.communicate(timeout=WAIT_S)
    assert stuck.returncode == 1, out + err
    status, _, error = _runs(tmp_path)[-1]
    assert status == "failed"
    assert error == (
        f"target demo: the browser at browser.connect_url {remote.url} went away during the "
        "run; the next run connects again"
    ), err

    # The browser is back on its port: the next run connects to it.
    remote.start()
    done = harvest(_config(tmp_path, demo.url, remote.url, "window.demoReady === true"))
    out, err = done.communicate(timeout=WAIT_S)
    assert done.returncode == 0, out + err
    assert _runs(tmp_path)[-1][0] == "committed"
