"""The live inspector served by the daemon's HTTP server: `harvester run`'s `/` and
`harvester inspect`. The inspector (`harvester.inspect.web`) and the daemon's server
(`harvester.daemon.http`) never import each other; this module adapts one to the other."""

from __future__ import annotations

from pathlib import Path

from harvester.daemon.http import Handler, Request, Response
from harvester.inspect.web import InspectorApp


def inspector_handler(state_path: Path) -> Handler:
    """A route handler of the daemon's server answering with the inspector's pages."""
    app = InspectorApp(state_path)

    def handle(request: Request) -> Response:
        reply = app(request.method, request.path, request.query)
        headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-type"}
        return Response(reply.status, reply.body, reply.content_type, headers)

    return handle
