"""Shared fixtures: a static HTTP server on 127.0.0.1, a real Chromium, a free port."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class StaticServer:
    """Serves a folder on 127.0.0.1 (or answers with `handler`), over TLS when given `tls`;
    `url(path)` gives an absolute URL."""

    def __init__(
        self,
        root: Path,
        *,
        handler: type[http.server.BaseHTTPRequestHandler] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.root = root
        serving = handler or functools.partial(_QuietHandler, directory=str(root))
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), serving)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.scheme = "http" if tls is None else "https"
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + "/" + path.lstrip("/")

    def add(self, name: str, content: str) -> str:
        """Write a page into the served folder and return its URL."""
        (self.root / name).write_text(content, encoding="utf-8")
        return self.url(name)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[StaticServer]:
    root = tmp_path / "www"
    root.mkdir()
    server = StaticServer(root)
    yield server
    server.close()


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """The Chromium the tests drive: a missing browser fails the tests, never skips them."""
    from harvester.browser import find_chromium

    return find_chromium(None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own HARVESTER_* variables must not change the config a test loads."""
    for name in list(os.environ):
        if name.startswith("HARVESTER_"):
            monkeypatch.delenv(name)
