"""The live inspector's dispatcher: a path and its query in, a `Reply` (status, headers, body)
out, with no web framework, so the daemon's HTTP server and `harvester inspect` serve it alike.

Each request opens the state DB read-only, runs its queries and closes it. Read-only: GET and
HEAD only (others are 405). An unknown target, store, run or key is a 404 page, a parameter that
cannot be used a 400 page, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from harvester.errors import HarvesterError, UsageError
from harvester.inspect.queries import StateReader
from harvester.inspect.web.html import e, frame, link, url
from harvester.inspect.web.pages import diff_page, home, run_page, target_page
from harvester.inspect.web.request import (
    BadRequest,
    NotFound,
    Params,
    Reply,
    html_reply,
    usage_status,
)
from harvester.inspect.web.store_pages import blob_download, record_page, store_page

log = logging.getLogger(__name__)

METHODS = ("GET", "HEAD")
Page = Callable[[StateReader, list[str], Params], "str | Reply"]


def _error_page(status: int, title: str, message: str) -> Reply:
    body = f'<p class="error">{e(message)}</p><p>{link(url(), "Back to the inspector")}</p>'
    return html_reply(status, frame(title, body))


def _redirect(location: str) -> Reply:
    return Reply(303, b"", {"Location": location, "Content-Type": "text/plain; charset=utf-8"})


def _run_redirect(reader: StateReader, target: str, params: Params) -> Reply:
    """`/target/T/run?id=RUN` (what the run picker's form sends) → `/target/T/run/RUN`."""
    reader.check_target(target)
    return _redirect(url("target", target, "run", params.required("id")))


def _route(reader: StateReader, parts: list[str], params: Params) -> str | Reply:
    match parts:
        case []:
            return home(reader)
        case ["target", target]:
            reader.check_target(target)
            return target_page(reader, target, params)
        case ["target", target, "diff"]:
            return diff_page(reader, target, params)
        case ["target", target, "run"]:
            return _run_redirect(reader, target, params)
        case ["target", target, "run", run_id]:
            return run_page(reader, target, run_id)
        case ["target", target, "store", db, store]:
            return store_page(reader, target, db, store, params)
        case ["target", target, "store", db, store, "record"]:
            return record_page(reader, target, db, store, params)
        case ["target", target, "store", db, store, "blob"]:
            return blob_download(reader, target, db, store, params)
    raise NotFound("no such page")


def split_path(path: str) -> list[str]:
    """The decoded segments of a path (`/target/a%2Fb/` → `["target", "a/b"]`)."""
    raw = [segment for segment in path.split("/") if segment]
    return [unquote(segment, errors="strict") for segment in raw]


class InspectorApp:
    """The live inspector over the state DB at `state_path` (the file or its folder)."""

    def __init__(self, state_path: Path | str) -> None:
        self.state_path = Path(state_path)

    def __call__(self, method: str, path: str, query: Mapping[str, Sequence[str]]) -> Reply:
        if method not in METHODS:
            reply = _error_page(405, "Method not allowed", "The inspector is read-only.")
            return Reply(reply.status, reply.body, {**reply.headers, "Allow": ", ".join(METHODS)})
        try:
            parts = split_path(path)
        except UnicodeDecodeError:
            return _error_page(400, "Bad request", "The path is not valid UTF-8.")
        params = Params(query)
        try:
            reader = StateReader(self.state_path)
        except HarvesterError as exc:
            return _error_page(503, "No state database", str(exc))
        try:
            with reader:
                result = _route(reader, parts, params)
        except NotFound as exc:
            return _error_page(404, "Not found", str(exc))
        except BadRequest as exc:
            return _error_page(400, "Bad request", str(exc))
        except UsageError as exc:
            status = usage_status(exc)
            return _error_page(status, "Not found" if status == 404 else "Bad request", str(exc))
        except HarvesterError as exc:
            return _error_page(503, "State database unavailable", str(exc))
        if isinstance(result, Reply):
            return result
        return html_reply(200, result)

    def get(self, target: str, method: str = "GET") -> Reply:
        """Answer a request for `target` (a path with its query), as a server would."""
        parts = urlsplit(target)
        return self(method, parts.path, parse_qs(parts.query, keep_blank_values=True))
