"""The live inspector and the REST API served by the daemon's HTTP server: `harvester run`'s `/`
and `/api/v1/`, `harvester serve` and `harvester inspect`. Neither (`harvester.inspect.web`,
`harvester.inspect.api`) imports the daemon's server (`harvester.daemon.http`); this module
adapts them to it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qs

from harvester.daemon.http import Handler, HttpServer, Request, Response, is_loopback
from harvester.errors import ConfigError, UsageError
from harvester.inspect.api import PREFIX, ApiApp
from harvester.inspect.queries import StateReader
from harvester.inspect.web import InspectorApp, Reply


def _response(reply: Reply) -> Response:
    headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-type"}
    return Response(reply.status, reply.body, reply.content_type, headers)


def inspector_handler(
    state_path: Path,
    *,
    bind: str = "127.0.0.1",
    token: str | None = None,
    cors_origins: Sequence[str] = (),
) -> Handler:
    """A route handler of the daemon's server answering with the inspector's pages, and with
    the API under `/api/v1/` (only with `token` when `bind` is not loopback)."""
    app = InspectorApp(state_path)
    exposed = not is_loopback(bind)
    api = ApiApp(state_path, token=token, exposed=exposed, cors_origins=cors_origins)

    def handle(request: Request) -> Response:
        if request.path.startswith(PREFIX):
            query = parse_qs(request.query_string, keep_blank_values=True)
            return _response(api(request.method, request.path, query, request.headers))
        return _response(app(request.method, request.path, request.query))

    return handle


def serve(
    path: Path,
    *,
    bind: str,
    port: int,
    token: str | None = None,
    cors_origins: Sequence[str] = (),
    stop: threading.Event | None = None,
) -> int:
    """Serve the inspector and the API on the state DB at `path` until Ctrl-C (or `stop`)."""
    StateReader(path).close()  # a missing or unusable state DB fails here, not per page
    server = HttpServer(bind, port)
    handler = inspector_handler(path, bind=bind, token=token, cors_origins=cors_origins)
    server.register_fallback(handler)
    try:
        server.start()
    except ConfigError as exc:
        raise UsageError(f"cannot serve the state DB: {'; '.join(exc.problems)}") from exc
    print(
        f"inspector on {server.url}/, REST API on {server.url}{PREFIX} (Ctrl-C stops it)",
        flush=True,
    )
    waiting = stop or threading.Event()
    try:
        while not waiting.wait(0.5):
            pass
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.stop()
    return 0
