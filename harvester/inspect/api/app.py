"""The REST API's dispatcher: `/api/v1/…` in, a JSON `Reply` out (docs/api.md, the spec in
`openapi.yaml`), framework-free like the live inspector, so the daemon's HTTP server and
`harvester serve` serve it alike.

Each request opens the state DB read-only and closes it. A long-poll holds its thread while it
waits, so only `WAITERS` may wait at once (the server has a few threads, and `/healthz` must
keep answering): a request beyond them gets its (empty) answer at once, with `Retry-After`.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from functools import cache
from importlib.resources import files
from pathlib import Path

import orjson
from ruamel.yaml import YAML

from harvester.errors import FeedGoneError, HarvesterError, UsageError
from harvester.inspect.api import cursor
from harvester.inspect.queries import StateReader
from harvester.inspect.web.app import split_path
from harvester.inspect.web.request import BadRequest, NotFound, Params, Reply, usage_status
from harvester.state import SnapshotRecord
from harvester.state.feed import FeedPage, FeedRow, Position, after_row

PREFIX = "/api/v1/"
METHODS = ("GET", "HEAD")
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_RECORDS = 1000
# A page stops once its values pass this (at least one row): every response is bounded.
MAX_PAGE_BYTES = 16 * 1024 * 1024
MAX_WAIT = 60.0  # seconds
POLL = 0.02  # seconds between looks at the newest commit while a long-poll waits
WAITERS = 4
JSON = "application/json"
JSON_LINES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
_WAIT = re.compile(r"(\d+(?:\.\d+)?)(ms|s)?")


def _reply(status: int, payload: object, headers: Mapping[str, str] | None = None) -> Reply:
    body = orjson.dumps(payload) + b"\n"
    return Reply(status, body, {"Content-Type": JSON, **(headers or {})})


def _error(
    status: int, message: str, headers: Mapping[str, str] | None = None, **extra: object
) -> Reply:
    return _reply(status, {"error": message, **extra}, headers)


def _with_cursor(row: FeedRow) -> FeedRow:
    row["cursor"] = cursor.encode(after_row(row))
    return row


def _wait_seconds(params: Params) -> float:
    raw = params.text("wait")
    if not raw:
        return 0.0
    match = _WAIT.fullmatch(raw.strip())
    if match is None:
        raise BadRequest(f"parameter 'wait' must be a duration such as 30s or 500ms, not {raw!r}")
    seconds = float(match[1]) / (1000 if match[2] == "ms" else 1)
    if seconds > MAX_WAIT:
        raise BadRequest(f"parameter 'wait' must be at most {MAX_WAIT:g}s")
    return seconds


def _store_filter(params: Params) -> tuple[str, str] | None:
    """`store=DB/STORE` (split at the first `/`), or `db=DB&store=STORE` for a database whose
    name holds a `/`."""
    store, db = params.text("store"), params.text("db")
    if db:
        if not store:
            raise BadRequest("parameter 'db' needs 'store' (the store's name)")
        return db, store
    if not store:
        return None
    found, slash, name = store.partition("/")
    if not slash or not found or not name:
        raise BadRequest(f"parameter 'store' must be DB/STORE, not {store!r}")
    return found, name


@cache
def openapi() -> bytes:
    """The API's OpenAPI document (`openapi.yaml`) as JSON."""
    text = files("harvester.inspect.api").joinpath("openapi.yaml").read_text("utf-8")
    return orjson.dumps(YAML(typ="safe").load(text))


class ApiApp:
    """The REST API over the state DB at `state_path` (the file or its folder).

    `token`: the secret every request must send as `Authorization: Bearer …`; without one the
    API answers only when the server listens on loopback (`exposed` False). `cors_origins`: the
    web origins (`https://app.example.com`, or `*`) whose pages may read it from a browser."""

    def __init__(
        self,
        state_path: Path | str,
        *,
        token: str | None = None,
        exposed: bool = False,
        cors_origins: Sequence[str] = (),
    ) -> None:
        self.state_path = Path(state_path)
        self._cors_origins = frozenset(cors_origins)
        self._token = token.encode() if token else None
        self._exposed = exposed
        self._waiters = threading.BoundedSemaphore(WAITERS)

    def __call__(
        self,
        method: str,
        path: str,
        query: Mapping[str, Sequence[str]],
        headers: Mapping[str, str],
    ) -> Reply:
        cors = self._cors(headers.get("origin"))
        if method == "OPTIONS" and cors:
            # A preflight carries no credentials: it is answered before the token is asked for.
            preflight = {
                "Access-Control-Allow-Methods": ", ".join(METHODS),
                "Access-Control-Allow-Headers": "Authorization, Accept",
                "Access-Control-Max-Age": "600",
            }
            return Reply(204, b"", {"Content-Type": JSON, **cors, **preflight})
        reply = self._answer(method, path, query, headers)
        return Reply(reply.status, reply.body, {**reply.headers, **cors}) if cors else reply

    def _cors(self, origin: str | None) -> dict[str, str]:
        """The CORS headers for a request from `origin`: none unless `cors_origins` allows it."""
        if origin is None or not (origin in self._cors_origins or "*" in self._cors_origins):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": "X-Next-Cursor, X-More, Retry-After",
            "Vary": "Origin",
        }

    def _answer(
        self,
        method: str,
        path: str,
        query: Mapping[str, Sequence[str]],
        headers: Mapping[str, str],
    ) -> Reply:
        if method not in METHODS:
            return _error(
                405, "the API is read-only: GET and HEAD only", {"Allow": ", ".join(METHODS)}
            )
        refused = self._refused(headers)
        if refused is not None:
            return refused
        try:
            parts = split_path(path.removeprefix(PREFIX))
        except UnicodeDecodeError:
            return _error(400, "the path is not valid UTF-8")
        if parts == ["openapi.json"]:
            return Reply(200, openapi(), {"Content-Type": JSON})
        empty = sorted(name for name, values in query.items() if any(not v for v in values))
        if empty:
            return _error(400, f"parameter {empty[0]!r} is empty: give a value or leave it out")
        params = Params(query)
        try:
            reader = StateReader(self.state_path)
        except HarvesterError as exc:
            return _error(503, str(exc))
        try:
            with reader:
                return self._route(reader, parts, params, headers)
        except NotFound as exc:
            return _error(404, str(exc))
        except (BadRequest, cursor.BadCursor) as exc:
            return _error(400, str(exc))
        except UsageError as exc:
            return _error(usage_status(exc), str(exc))
        except HarvesterError as exc:
            return _error(503, str(exc))

    def _refused(self, headers: Mapping[str, str]) -> Reply | None:
        if self._token is None:
            if not self._exposed:
                return None
            return _error(
                403,
                "the API answers beyond loopback only with http.token set "
                "(clients send it as Authorization: Bearer …)",
            )
        scheme, _, given = headers.get("authorization", "").partition(" ")
        # Constant time: how much of a guess matched must not show in how long it took.
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token):
            return None
        return _error(
            401,
            "a valid 'Authorization: Bearer <http.token>' is required",
            {"WWW-Authenticate": 'Bearer realm="idb-harvester"'},
        )

    def _route(
        self,
        reader: StateReader,
        parts: list[str],
        params: Params,
        headers: Mapping[str, str],
    ) -> Reply:
        match parts:
            case ["changes"]:
                return self._changes(reader, params, headers)
            case ["records", target, db, store]:
                return _records(reader, target, db, store, params)
            case ["schema", target]:
                dbs, stores = reader.schema(target)
                return _reply(
                    200,
                    {
                        "target": target,
                        "databases": [asdict(db) for db in dbs],
                        "stores": [asdict(store) for store in stores],
                    },
                )
        raise NotFound(f"no such API path: {PREFIX}{'/'.join(parts)}")

    def _changes(self, reader: StateReader, params: Params, headers: Mapping[str, str]) -> Reply:
        after_text = params.text("after")
        after = cursor.decode(after_text) if after_text else None
        limit = params.number("limit", DEFAULT_LIMIT, high=MAX_LIMIT)
        wait = _wait_seconds(params)
        target = params.text("target") or None
        store = _store_filter(params)

        def read(position: Position | None) -> FeedPage:
            return reader.feed_page(
                position, limit=limit, max_bytes=MAX_PAGE_BYTES, target=target, store=store
            )

        extra: dict[str, str] = {}
        try:
            seen = reader.feed_last_seq()
            page = read(after)
            if not page.rows and wait > 0:
                if self._waiters.acquire(blocking=False):
                    try:
                        page = _long_poll(reader, page, seen, time.monotonic() + wait, read)
                    finally:
                        self._waiters.release()
                else:
                    extra["Retry-After"] = "1"
        except FeedGoneError as exc:
            return _error(
                410, f"{exc}; read on from 'oldest'", oldest=cursor.encode(reader.feed_start())
            )
        extra |= {"X-Next-Cursor": cursor.encode(page.next), "X-More": str(page.more).lower()}
        rows = [_with_cursor(row) for row in page.rows]
        if any(kind in headers.get("accept", "") for kind in JSON_LINES):
            body = b"".join(orjson.dumps(row) + b"\n" for row in rows)
            return Reply(200, body, {"Content-Type": JSON_LINES[0], **extra})
        return _reply(200, {"rows": rows, "next": extra["X-Next-Cursor"], "more": page.more}, extra)


def _long_poll(
    reader: StateReader,
    page: FeedPage,
    seen: int,
    deadline: float,
    read: Callable[[Position | None], FeedPage],
) -> FeedPage:
    """Wait until a commit brings rows after `page` (the feed's end, read when the newest
    commit was `seen`), or until `deadline`; the page then."""
    while not page.rows and time.monotonic() < deadline:
        newest = reader.feed_last_seq()
        if newest == seen:
            time.sleep(POLL)
            continue
        seen = newest
        page = read(page.next)
    return page


def _records(reader: StateReader, target: str, db: str, store_name: str, params: Params) -> Reply:
    store = reader.store(target, db, store_name)
    key = params.text("key")
    if key:
        found = list(reader.records(store, keys=[key]))
        if not found:
            raise NotFound(f"no record with key {key} in {db}/{store_name} of {target!r}")
        records, total, offset = found, 1, 0
    else:
        offset = params.number("offset", 0, low=0)
        limit = params.number("limit", 100, high=MAX_RECORDS)
        page = reader.search_records(store, order="key", offset=offset, limit=limit)
        records, total = _bounded(page.records), store.records
    next_offset = offset + len(records) if offset + len(records) < total else None
    return _reply(
        200,
        {
            "target": target,
            "origin": store.origin,
            "db_name": db,
            "store": store_name,
            "records": [asdict(record) for record in records],
            "total": total,
            "next_offset": next_offset,
        },
    )


def _bounded(records: list[SnapshotRecord]) -> list[SnapshotRecord]:
    """The first records whose values stay within `MAX_PAGE_BYTES` (at least one)."""
    size = 0
    for n, record in enumerate(records):
        size += len(record.value or "")
        if n and size > MAX_PAGE_BYTES:
            return records[:n]
    return records
