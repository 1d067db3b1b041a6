"""Remote browsers for the tests, on 127.0.0.1: a Chromium with `--remote-debugging-port` (CDP)
and `playwright run-server` (a Playwright server), each restartable on its port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Literal

import playwright

from harvester.browser import launch_args
from tests.support.server import free_port

Kind = Literal["cdp", "playwright"]
START_S = 60


def _browsers_folder(root: Path, chromium: Path) -> Path:
    """A PLAYWRIGHT_BROWSERS_PATH whose Chromium (and headless shell) is `chromium`: the server
    launches its own browser, and Playwright's download cannot work here."""
    package = Path(playwright.__file__ or "").parent / "driver" / "package"
    browsers = json.loads((package / "browsers.json").read_text())["browsers"]
    revision = {b["name"]: b["revision"] for b in browsers}
    layout = {
        "chromium": ("chromium", "chrome-linux64", "chrome"),
        "chromium-headless-shell": (
            "chromium_headless_shell",
            "chrome-headless-shell-linux64",
            "chrome-headless-shell",
        ),
    }
    for name, (folder, sub, binary) in layout.items():
        place = root / f"{folder}-{revision[name]}" / sub
        place.mkdir(parents=True, exist_ok=True)
        (place / binary).unlink(missing_ok=True)
        (place / binary).symlink_to(chromium)
    return root


class RemoteBrowser:
    """One remote browser of `kind` on a port of its own; `url` is what `connect_url` takes."""

    def __init__(self, kind: Kind, folder: Path, chromium: Path) -> None:
        self.kind = kind
        self.folder = folder
        self.chromium = chromium
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.ws_url = ""

    @property
    def url(self) -> str:
        if self.kind == "cdp":
            return f"http://127.0.0.1:{self.port}"
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / f"{self.kind}.log").open("ab")
        if self.kind == "cdp":
            command = [
                str(self.chromium),
                "--headless",
                "--no-sandbox",
                f"--remote-debugging-port={self.port}",
                "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={self.folder / 'profile'}",
                *launch_args([]),
            ]
            env = None
        else:
            command = [sys.executable, "-m", "playwright", "run-server"]
            command += ["--host", "127.0.0.1", "--port", str(self.port)]
            browsers = _browsers_folder(self.folder / "browsers", self.chromium)
            env = {**os.environ, "PLAYWRIGHT_BROWSERS_PATH": str(browsers)}
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=log, env=env, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + START_S
        while not self._answers():
            assert self.proc.poll() is None, (self.folder / f"{self.kind}.log").read_text()
            assert time.monotonic() < deadline, f"the {self.kind} browser did not start"
            time.sleep(0.2)

    def _answers(self) -> bool:
        try:
            if self.kind == "cdp":
                with urllib.request.urlopen(f"{self.url}/json/version", timeout=5) as reply:
                    self.ws_url = json.load(reply)["webSocketDebuggerUrl"]
            else:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5):
                    pass
        except OSError:
            return False
        return True

    def pages(self) -> int:
        """How many pages the remote browser shows now: CDP lists them (a renderer may hold
        several), a Playwright server's browser has a renderer per page."""
        assert self.proc is not None
        if self.kind == "cdp":
            with urllib.request.urlopen(f"{self.url}/json/list", timeout=5) as reply:
                targets = json.load(reply)
            return sum(1 for t in targets if t["type"] == "page" and t["url"] != "about:blank")
        # Chromium rewrites its command line into one string; its own UI has renderers too.
        lines = [b" ".join(argv) for argv in _descendant_argvs(self.proc.pid)]
        return sum(
            1
            for line in lines
            if b"--type=renderer" in line
            and b"--top-chrome-webui" not in line
            and b"--extension-process" not in line
        )

    def kill(self) -> None:
        """SIGKILL the whole remote (its browser too), as a crash or a lost host would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _descendant_argvs(pid: int) -> list[list[bytes]]:
    """The command lines of every descendant of `pid` (children of any of its threads)."""
    found: list[list[bytes]] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                found.append(Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0"))
            except OSError:
                continue
            found += _descendant_argvs(child)
    return found
