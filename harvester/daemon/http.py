"""The daemon's HTTP endpoint: `/healthz`, `/metrics`, and routes other modules register.

`harvester inspect` serves the live inspector through the same server (no health or metrics).

A stdlib `ThreadingHTTPServer` in a background thread: the endpoint must keep answering while the
event loop is busy, and it needs nothing a framework would add. It answers GET and HEAD only
(and, through the fallback, the API's CORS preflight where `http.cors_origins` allows it), and
refuses requests whose Host header does not name the bound address (a DNS-rebinding page in a
local browser would otherwise read the daemon's status).
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlsplit

from harvester.errors import ConfigError
from harvester.redaction import Redactor

log = logging.getLogger(__name__)

_WILDCARDS = {"0.0.0.0", "::", ""}
# Threads answering requests; each request holds one for at most the handler's 10 s timeout, or
# a long-poll of the API for its wait (the API lets at most half of them wait).
HANDLER_THREADS = 8


@dataclass(frozen=True)
class Request:
    """What a route handler sees of a request."""

    method: str
    path: str
    query: Mapping[str, list[str]]  # blank values left out, as an HTML form's empty fields
    headers: Mapping[str, str]
    query_string: str = ""  # as sent, for a handler that tells `a=` from no `a`


@dataclass(frozen=True)
class Response:
    """What a route handler returns; HEAD requests get the headers without the body."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]
HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


def json_response(status: int, payload: object) -> Response:
    """A JSON response (UTF-8, indented so that `curl` output is readable)."""
    body = json.dumps(payload, indent=2, sort_keys=True, default=str).encode() + b"\n"
    return Response(status, body, "application/json")


class HttpServer:
    """Serves `/healthz`, `/metrics` and registered routes on `bind:port` from a thread."""

    def __init__(
        self,
        bind: str,
        port: int,
        *,
        health: HealthCheck | None = None,
        metrics: Callable[[], bytes] | None = None,
        metrics_content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        self.bind = bind
        self._requested_port = port
        self._routes: dict[str, Handler] = {}
        self._fallback: Handler | None = None
        self._server: http.server.HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._names = _host_names(bind)

        if health is not None:
            check = health

            def healthz(_request: Request) -> Response:
                ok, body = check()
                return json_response(200 if ok else 503, body)

            self.register_route("/healthz", healthz)
        if metrics is not None:
            render = metrics

            def metrics_route(_request: Request) -> Response:
                return Response(200, render(), metrics_content_type)

            self.register_route("/metrics", metrics_route)

    def register_route(self, path: str, handler: Handler) -> None:
        """Serve `handler` for GET/HEAD on exactly `path` (e.g. the HTML report on `/`)."""
        if not path.startswith("/"):
            raise ValueError(f"route path must start with '/': {path!r}")
        self._routes[path] = handler

    def register_fallback(self, handler: Handler) -> None:
        """Serve `handler` for GET/HEAD on every path no route names (e.g. the inspector's
        pages under `/`); it answers 404 itself for a path it does not know."""
        self._fallback = handler

    @property
    def port(self) -> int:
        """The port listened on (the real one when 0 was asked for)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Where a local client reaches the endpoint."""
        host = "127.0.0.1" if self.bind in _WILDCARDS else self.bind
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Listen and serve in a daemon thread; a taken port is a config error."""
        server_class = _server_class(self.bind)
        try:
            self._server = server_class((self.bind, self._requested_port), self._handler_class())
        except OSError as exc:
            raise ConfigError(
                f"http: cannot listen on {self.bind}:{self._requested_port}: {exc.strerror or exc}"
            ) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="harvester-http", daemon=True
        )
        self._thread.start()
        log.info("http endpoint listening on %s", self.url)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def host_allowed(self, host_header: str | None) -> bool:
        """True when the Host header names this server (address or local name, and our port).

        Browsers always send Host, so a request without one cannot come from a rebound page.
        """
        if host_header is None:
            return True
        host, port = _split_host(host_header)
        if port != str(self.port):
            return False
        if host in self._names:
            return True
        if self.bind in _WILDCARDS:
            # Bound everywhere: any address literal is fine; a rebinding attack needs a name.
            try:
                ipaddress.ip_address(host)
            except ValueError:
                return False
            return True
        return False

    def _dispatch(self, method: str, raw_path: str, headers: Mapping[str, str]) -> Response:
        if not self.host_allowed(headers.get("host")):
            return Response(421, b"misdirected request: unknown Host\n")
        parts = urlsplit(raw_path)
        handler = self._routes.get(parts.path, self._fallback)
        if handler is None:
            return Response(404, b"not found\n")
        # OPTIONS reaches the fallback only: the API answers a CORS preflight when configured to.
        preflight = method == "OPTIONS" and handler is self._fallback
        if method not in ("GET", "HEAD") and not preflight:
            return Response(405, b"method not allowed\n", headers={"Allow": "GET, HEAD"})
        request = Request(method, parts.path, parse_qs(parts.query), headers, parts.query)
        try:
            return handler(request)
        except Exception:
            log.exception("http handler for %s failed", parts.path)
            return Response(500, b"internal error\n")

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            server_version = "idb-harvester"
            sys_version = ""
            # A client that opens a connection and sends nothing must not hold a thread forever.
            timeout = 10

            def _respond(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                response = server._dispatch(self.command, self.path, headers)
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            def __getattr__(self, name: str) -> Any:
                # Every method, TRACE or one made up, gets the dispatcher's answer (405 but for
                # GET and HEAD), never the stdlib's 501 page.
                if name.startswith("do_"):
                    return self._respond
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http %s " + format, self.address_string(), *args)

        return _Handler


def _server_class(bind: str) -> type[http.server.HTTPServer]:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET

    class _Server(http.server.ThreadingHTTPServer):
        """Requests run on a few long-lived threads, not one new thread each.

        Handlers may keep per-thread state (the state DB keeps a reader connection per thread);
        a thread per request would leave one behind for every scrape.
        """

        address_family = family

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # Before binding: a failed bind calls server_close(), which shuts the pool down.
            self._pool = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="harvester-http")
            super().__init__(*args, **kwargs)

        def process_request(self, request: Any, client_address: Any) -> None:
            self._pool.submit(self.process_request_thread, request, client_address)

        def server_close(self) -> None:
            super().server_close()
            self._pool.shutdown(wait=False, cancel_futures=True)

    return _Server


def _split_host(value: str) -> tuple[str, str]:
    """(host, port) of a Host header; a missing port is HTTP's default 80."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else "80"
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, port
    return value, "80"


def is_loopback(bind: str) -> bool:
    """True when `bind` listens on this machine only (`localhost` or a loopback address)."""
    if bind.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def _host_names(bind: str) -> frozenset[str]:
    """Host header names accepted for `bind`, besides address literals on a wildcard bind."""
    names = {bind.lower()}
    loopback = bind in _WILDCARDS or bind.lower() == "localhost"
    with contextlib.suppress(ValueError):
        loopback = loopback or ipaddress.ip_address(bind).is_loopback
    if loopback:
        names |= {"localhost", "127.0.0.1", "::1"}
    if bind in _WILDCARDS:
        names.add(socket.gethostname().lower())
    return frozenset(names)


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret masked, raw and as HTML escapes it."""
    known = list(secrets)
    return Redactor([*known, *(escape(s, quote=True) for s in known)]).redact(text)


def html_response(html: str, secrets: Iterable[str]) -> Response:
    """An HTML page with every secret masked, raw and as HTML escapes it."""
    return Response(200, mask_secrets(html, secrets).encode(), "text/html; charset=utf-8")
