"""Chromium discovery, launch flags, and opening targets in a real Chromium."""

from __future__ import annotations

import asyncio
import base64
import http.server
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from harvester import browser
from harvester.browser import find_chromium, launch_args, open_target
from harvester.config import BrowserSettings, TargetSettings
from harvester.errors import BrowserNotFoundError, PageError
from tests.support.server import StaticServer

PAGES = Path(__file__).resolve().parent / "pages"


def _fake_executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_managed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point Playwright at an empty browsers folder, so its Chromium counts as not installed."""
    browsers = tmp_path / "ms-playwright"
    browsers.mkdir()
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(browsers))
    return browsers


def test_configured_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = _fake_executable(tmp_path / "bin" / "chromium")
    monkeypatch.setenv("PATH", str(on_path.parent))
    configured = _fake_executable(tmp_path / "custom" / "my-chrome")
    assert find_chromium(configured) == configured


def test_configured_path_missing_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A browser on PATH must not be used in its place.
    monkeypatch.setenv("PATH", str(_fake_executable(tmp_path / "bin" / "chromium").parent))
    missing = tmp_path / "nowhere" / "chrome"
    with pytest.raises(BrowserNotFoundError) as caught:
        find_chromium(missing)
    message = str(caught.value)
    assert f"browser.executable_path {missing} does not exist" in message
    assert "python -m playwright install chromium" in message


def test_configured_path_not_executable(tmp_path: Path) -> None:
    plain = tmp_path / "chrome"
    plain.write_text("not a program")
    with pytest.raises(BrowserNotFoundError, match="is not an executable file"):
        find_chromium(plain)


def test_path_lookup_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_managed: Path
) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    google = _fake_executable(first / "google-chrome")
    chromium_browser = _fake_executable(second / "chromium-browser")
    monkeypatch.setenv("PATH", f"{first}{os.pathsep}{second}")
    # chromium-browser comes before google-chrome, wherever each sits on PATH.
    assert find_chromium() == chromium_browser
    chromium_browser.unlink()
    assert find_chromium() == google


def test_nothing_found_names_every_place_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_managed: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BrowserNotFoundError) as caught:
        find_chromium()
    message = str(caught.value)
    assert f"Playwright's managed Chromium at {no_managed}" in message
    for name in ("chromium", "chromium-browser", "google-chrome"):
        assert f"`{name}` on PATH" in message
    assert "python -m playwright install chromium" in message
    assert "apt-get install chromium" in message


def test_playwright_managed_chromium_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_managed: Path
) -> None:
    _fake_executable(tmp_path / "bin" / "chromium")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    # Where Playwright would install its Chromium: found only once something is there.
    assert find_chromium() == tmp_path / "bin" / "chromium"
    managed = browser._managed_chromium(str(no_managed))
    assert managed.is_relative_to(no_managed)
    _fake_executable(managed)
    assert find_chromium() == managed


@pytest.mark.parametrize(("euid", "sandboxed"), [(0, False), (1000, True)])
def test_launch_args(monkeypatch: pytest.MonkeyPatch, euid: int, sandboxed: bool) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    args = launch_args(["--lang=de"])
    assert args[:4] == [
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    assert args[-1] == "--lang=de"
    assert ("--no-sandbox" not in args) is sandboxed


def _target(url: str, **extra: Any) -> TargetSettings:
    return TargetSettings.model_validate(
        {"name": "t", "url": url, "schedule": "15m", "limits": {"page_timeout": "30s"}} | extra
    )


def _open(target: TargetSettings, settings: BrowserSettings) -> dict[str, Any]:
    """Open the target and report what the session saw."""

    async def go() -> dict[str, Any]:
        async with open_target(target, settings) as session:
            return {
                "origin": session.origin,
                "pages": len(session.context.pages),
                "state": await session.page.evaluate("window.state"),
            }

    return asyncio.run(go())


@pytest.mark.browser
def test_opens_page_and_waits_for_function(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add(
        "app.html",
        """<p id="here">app</p><script>
        // A dialog and a popup must neither block nor survive the page load.
        alert("hello");
        window.open("about:blank");
        window.state = "loading";
        setTimeout(() => { window.state = "ready"; }, 300);
        </script>""",
    )
    seen = _open(
        _target(url, ready={"selector": "#here", "function": "window.state === 'ready'"}), chromium
    )
    assert seen == {"origin": static_server.origin, "pages": 1, "state": "ready"}


@pytest.mark.browser
def test_http_error_status_is_a_page_error(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    with pytest.raises(PageError, match="404"):
        _open(_target(static_server.url("missing.html")), chromium)


@pytest.mark.browser
def test_unreachable_port_is_a_page_error(chromium: BrowserSettings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe socket is closed.
    with pytest.raises(PageError, match=f"net::ERR_CONNECTION_REFUSED at http://127.0.0.1:{port}/"):
        _open(_target(f"http://127.0.0.1:{port}/"), chromium)


@pytest.mark.browser
def test_readiness_timeout_names_the_condition(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add("slow.html", "<p>never ready</p>")
    target = _target(url, ready={"function": "window.never"}, limits={"page_timeout": "500ms"})
    with pytest.raises(PageError, match=r"ready.function 'window.never' did not hold within 0.5s"):
        _open(target, chromium)


class _Guarded(http.server.BaseHTTPRequestHandler):
    """Answers only requests with basic auth qa:s3cret and `X-Token: t0ken`."""

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"qa:s3cret").decode():
            self.send_response(401)  # Chromium, asked no credentials, gives up on the page
            self.send_header("WWW-Authenticate", 'Basic realm="staging"')
            self.end_headers()
            return
        body = b"<script>window.state = 'in';</script>"
        self.send_response(200 if self.headers.get("X-Token") == "t0ken" else 403)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[str]:
    server = StaticServer(tmp_path, handler=_Guarded)
    yield server.url()
    server.close()


@pytest.mark.browser
@pytest.mark.parametrize("profile", [False, True], ids=["context", "persistent-profile"])
def test_http_credentials_and_extra_headers_open_a_guarded_site(
    guarded: str, chromium: BrowserSettings, tmp_path: Path, profile: bool
) -> None:
    credentials = {"username": "qa", "password": "s3cret"}
    headers = {"X-Token": "t0ken"}
    both: dict[str, Any] = {"http_credentials": credentials, "extra_http_headers": headers}
    if profile:
        both["profile_dir"] = tmp_path / "profile"
    ready = {"function": "window.state === 'in'"}
    assert _open(_target(guarded, auth=both, ready=ready), chromium)["state"] == "in"
    with pytest.raises(PageError, match=r"ERR_INVALID_AUTH_CREDENTIALS .*auth\.http_credentials"):
        _open(_target(guarded, ready=ready), chromium)
    with pytest.raises(PageError, match="403"):
        _open(_target(guarded, auth={"http_credentials": credentials}, ready=ready), chromium)


@pytest.fixture
def self_signed(static_server: StaticServer) -> Iterator[str]:
    """The static server's folder over HTTPS, with a self-signed certificate for 127.0.0.1."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(PAGES / "selfsigned.crt", PAGES / "selfsigned.key")
    server = StaticServer(static_server.root, tls=tls)
    yield server.url()
    server.close()


@pytest.mark.browser
def test_ignore_https_errors_opens_a_self_signed_site(
    static_server: StaticServer, self_signed: str, chromium: BrowserSettings
) -> None:
    static_server.add("index.html", "<script>window.state = 'in';</script>")
    ready = {"function": "window.state === 'in'"}
    with pytest.raises(PageError, match="ERR_CERT_AUTHORITY_INVALID"):
        _open(_target(self_signed, ready=ready), chromium)
    target = _target(self_signed, ready=ready, ignore_https_errors=True)
    assert _open(target, chromium)["state"] == "in"


@pytest.mark.browser
def test_auth_steps_run_before_the_target(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    login = static_server.add(
        "login.html",
        """<input id="user"><button id="go"
        onclick="localStorage.user = document.getElementById('user').value">log in</button>""",
    )
    url = static_server.add("home.html", "<script>window.state = localStorage.user;</script>")
    steps = [
        {"action": "goto", "url": login},
        {"action": "fill", "selector": "#user", "value": "alice"},
        {"action": "click", "selector": "#go"},
    ]
    seen = _open(_target(url, auth={"steps": steps}), chromium)
    assert seen["state"] == "alice"


@pytest.mark.browser
def test_failing_auth_step_is_a_page_error_without_its_value(
    static_server: StaticServer, chromium: BrowserSettings
) -> None:
    url = static_server.add("plain.html", "<p>no form here</p>")
    steps = [{"action": "fill", "selector": "#password", "value": "s3cret"}]
    target = _target(url, auth={"steps": steps}, limits={"page_timeout": "300ms"})
    with pytest.raises(PageError, match=r"auth.steps\[0\] \(fill\)") as caught:
        _open(target, chromium)
    assert "s3cret" not in str(caught.value)


COUNTER_PAGE = """<script>
// Counts its loads in IndexedDB, so a test can see whether a profile kept the data.
const open = indexedDB.open("visits", 1);
open.onupgradeneeded = () => open.result.createObjectStore("loads", { autoIncrement: true });
open.onsuccess = () => {
  const tx = open.result.transaction("loads", "readwrite");
  const loads = tx.objectStore("loads");
  loads.add("load");
  const count = loads.count();
  tx.oncomplete = () => { window.state = count.result; };
};
</script>"""


@pytest.mark.browser
def test_persistent_profile_keeps_indexeddb(
    static_server: StaticServer, chromium: BrowserSettings, tmp_path: Path
) -> None:
    url = static_server.add("counter.html", COUNTER_PAGE)
    profile = tmp_path / "profiles" / "t"
    target = _target(url, auth={"profile_dir": profile}, ready={"function": "window.state > 0"})
    assert _open(target, chromium)["state"] == 1
    assert _open(target, chromium)["state"] == 2
    # A session without the profile starts from nothing.
    assert _open(_target(url, ready={"function": "window.state > 0"}), chromium)["state"] == 1
    assert profile.stat().st_mode & 0o777 == 0o700


def _browser_pid(profile: Path) -> int:
    """The browser process (not a renderer or helper) running on `profile`."""
    marker = f"--user-data-dir={profile}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in argv and not any(arg.startswith(b"--type=") for arg in argv):
            return int(entry.name)
    raise AssertionError(f"no browser process for {profile}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.browser
def test_browser_hung_on_close_is_killed(
    static_server: StaticServer,
    chromium: BrowserSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(browser, "CLOSE_TIMEOUT", timedelta(seconds=1))
    profile = tmp_path / "profile"
    target = _target(static_server.add("idle.html", "<p>idle</p>"), auth={"profile_dir": profile})

    async def go() -> int:
        async with open_target(target, chromium):
            pid = _browser_pid(profile)
            # A stopped browser never answers the close.
            os.kill(pid, signal.SIGSTOP)
        return pid

    started = time.monotonic()
    pid = asyncio.run(go())
    try:
        # Far below forever, which is what a close without the bound takes.
        assert time.monotonic() - started < 60
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
