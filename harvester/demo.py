"""The static server for the bundled demo site (`harvester/demo_site/`)."""

from __future__ import annotations

import errno
import http.server
import threading
from http import HTTPStatus
from importlib.resources import files
from types import TracebackType
from typing import ClassVar

from harvester.errors import UsageError

# Stable on purpose: IndexedDB's origin includes the port, so a persistent profile sees its data
# again only when the demo comes back on the same port.
DEFAULT_PORT = 8799

CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def demo_files() -> dict[str, tuple[bytes, str]]:
    """The demo site as URL path → (body, content type), read from the installed package."""
    site = files("harvester").joinpath("demo_site")
    served: dict[str, tuple[bytes, str]] = {}
    # Read through importlib.resources, so that it works however the package was installed.
    for entry in site.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in CONTENT_TYPES:
            served["/" + entry.name] = (entry.read_bytes(), CONTENT_TYPES[suffix])
    served["/"] = served["/index.html"]
    return served


class _Handler(http.server.BaseHTTPRequestHandler):
    # Set per server class in serve_demo; only these paths exist, so nothing else can be reached.
    site: ClassVar[dict[str, tuple[bytes, str]]] = {}

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        found = self.site.get(self.path.split("?", 1)[0])
        body, content_type = found or (b"not found\n", "text/plain; charset=utf-8")
        self.send_response(HTTPStatus.OK if found else HTTPStatus.NOT_FOUND)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # The app must always run its newest script: a cached one would change data differently.
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the demo prints its URL and nothing per request."""


class DemoServer:
    """The demo site served from a background thread; close() (or `with`) stops it."""

    def __init__(self, httpd: http.server.ThreadingHTTPServer) -> None:
        self._httpd = httpd
        host, self.port = httpd.server_address[:2]
        self.host = host.decode() if isinstance(host, bytes) else host
        self._thread = threading.Thread(
            target=httpd.serve_forever, name=f"demo-server-{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> DemoServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def serve_demo(port: int = DEFAULT_PORT, bind: str = "127.0.0.1") -> DemoServer:
    """Start serving the demo site on `bind:port` (0: a free port); raises UsageError if taken."""
    handler = type("DemoHandler", (_Handler,), {"site": demo_files()})
    try:
        httpd = http.server.ThreadingHTTPServer((bind, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {bind} is already in use; serve the demo on another one with "
                "--port PORT (--port 0 picks a free one; a browser profile sees its demo data "
                "again only on the same port)"
            ) from exc
        raise UsageError(f"cannot serve the demo on {bind}:{port}: {exc.strerror}") from exc
    return DemoServer(httpd)
