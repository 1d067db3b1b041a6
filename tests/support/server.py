"""A static HTTP(S) server on 127.0.0.1 and free ports, for pages the tests serve themselves."""

from __future__ import annotations

import functools
import http.server
import socket
import ssl
import threading
from pathlib import Path


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
