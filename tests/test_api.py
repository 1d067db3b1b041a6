"""The REST API (`/api/v1/`) over a real state DB, served by the real HTTP server: the changes
feed (pages, JSON lines, cursors that skip and repeat nothing, 410 past retention, filters,
long-poll and its bound), records and schema, the token rules, and every operation checked
against `openapi.yaml` by schemathesis."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from harvester.codec import canonical
from harvester.commands._inspector import inspector_handler
from harvester.daemon.http import HttpServer
from harvester.inspect.api import app as api_app
from harvester.state import StateDB
from tests.support.inspect_data import FIRST, SECOND, TARGET, commit_records

SPEC = Path(__file__).parent.parent / "harvester" / "inspect" / "api" / "openapi.yaml"
TOKEN = "s3cret-token-0123456789"


def _serve(
    state: Path, bind: str = "127.0.0.1", token: str | None = None, cors: tuple[str, ...] = ()
) -> HttpServer:
    server = HttpServer(bind, 0)
    server.register_fallback(inspector_handler(state, bind=bind, token=token, cors_origins=cors))
    server.start()
    return server


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    with StateDB.open(tmp_path / "state") as state:
        commit_records(state, FIRST, {})
        commit_records(state, SECOND, FIRST)
    return tmp_path / "state"


@pytest.fixture
def server(state_dir: Path) -> Iterator[HttpServer]:
    server = _serve(state_dir)
    yield server
    server.stop()


def _get(
    server: HttpServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(server.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _json(server: HttpServer, path: str, **headers: str) -> tuple[int, Any]:
    status, _headers, body = _get(server, path, headers)
    return status, json.loads(body)


def _all_rows(server: HttpServer, query: str = "", limit: int = 1000) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    after = ""
    while True:
        status, page = _json(server, f"/api/v1/changes?limit={limit}{after}{query}")
        assert status == 200, page
        rows.extend(page["rows"])
        after = f"&after={page['next']}"
        if not page["more"]:
            return rows


def test_the_feed_pages_and_lines_agree_and_skip_nothing(server: HttpServer) -> None:
    rows = _all_rows(server)
    first_run = [(r["store"], r["key"], r["op"]) for r in rows if r["seq"] == rows[0]["seq"]]
    assert sorted(first_run) == sorted(
        (store, canonical(key), "+I") for store, records in FIRST.items() for key in records
    )
    update = next(r for r in rows if r["op"] == "+U" and r["key"] == "3")
    assert json.loads(update["value"])["name"] == "user three"
    assert json.loads(update["old_value"])["name"] == "user 3"
    deleted = next(r for r in rows if r["op"] == "-D")
    assert (deleted["key"], deleted["value"]) == ("4", None)
    assert deleted["old_value"] is not None
    # One row a page: the same rows, each once, in the same order.
    assert _all_rows(server, limit=1) == rows
    # JSON lines: the same rows, the next cursor in a header.
    status, headers, body = _get(
        server, "/api/v1/changes?limit=1000", {"Accept": "application/x-ndjson"}
    )
    assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
    assert [json.loads(line) for line in body.splitlines()] == rows
    assert headers["X-More"] == "false"
    # A row's own cursor reads on after it.
    status, page = _json(server, f"/api/v1/changes?after={rows[2]['cursor']}")
    assert page["rows"] == rows[3:]


def test_filters(server: HttpServer) -> None:
    orders = _all_rows(server, "&store=shopdb/orders")
    assert orders and all(r["store"] == "orders" for r in orders)
    assert _all_rows(server, "&db=shopdb&store=orders") == orders
    assert _all_rows(server, f"&target={TARGET}") == _all_rows(server)
    assert _json(server, "/api/v1/changes?target=nobody")[0] == 404
    assert _json(server, "/api/v1/changes?store=orders")[0] == 400


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("?after=bm90LWEtY3Vyc29y", 400),
        ("?after=!!", 400),
        ("?limit=0", 400),
        ("?limit=10001", 400),
        ("?wait=forever", 400),
        ("?wait=61s", 400),
    ],
)
def test_bad_parameters_are_400_with_a_reason(server: HttpServer, query: str, status: int) -> None:
    code, body = _json(server, "/api/v1/changes" + query)
    assert code == status and body["error"]


def test_a_cursor_past_retention_is_gone_with_the_oldest_one(state_dir: Path) -> None:
    server = _serve(state_dir)
    try:
        _code, page = _json(server, "/api/v1/changes?limit=1")
        old = page["next"]
        with StateDB.open(state_dir, keep_runs=1) as state:
            commit_records(state, FIRST, SECOND)  # prunes the first two runs
        code, body = _json(server, f"/api/v1/changes?after={old}")
        assert code == 410 and "retention" in body["error"]
        code, page = _json(server, f"/api/v1/changes?after={body['oldest']}")
        assert code == 200 and page["rows"]
        assert {r["seq"] for r in page["rows"]} == {3}
    finally:
        server.stop()


def test_long_poll_returns_the_rows_of_the_next_commit(state_dir: Path) -> None:
    server = _serve(state_dir)
    try:
        end = _all_rows(server)[-1]["cursor"]
        got: list[Any] = []
        poll = threading.Thread(
            target=lambda: got.append(_json(server, f"/api/v1/changes?after={end}&wait=50s"))
        )
        poll.start()
        with StateDB.open(state_dir) as state:
            run_id = commit_records(state, FIRST, SECOND)
        poll.join(timeout=60)
        assert not poll.is_alive()
        code, page = got[0]
        assert code == 200 and page["rows"] and {r["run_id"] for r in page["rows"]} == {run_id}
    finally:
        server.stop()


def test_long_polls_beyond_the_bound_answer_at_once_and_others_still_answer(
    state_dir: Path,
) -> None:
    server = _serve(state_dir)
    try:
        end = _all_rows(server)[-1]["cursor"]
        done: list[tuple[int, dict[str, str], bytes]] = []
        polls = [
            threading.Thread(
                target=lambda: done.append(_get(server, f"/api/v1/changes?after={end}&wait=50s"))
            )
            for _ in range(api_app.WAITERS + 1)
        ]
        for poll in polls:
            poll.start()
        # One answers at once, empty, with Retry-After: only once the others all wait.
        for _ in range(600):
            if done:
                break
            time.sleep(0.1)
        ((status, headers, body),) = done
        assert status == 200 and headers["Retry-After"] == "1" and json.loads(body)["rows"] == []
        assert _get(server, "/")[0] == 200  # the waiting ones leave threads for other requests
        with StateDB.open(state_dir) as state:
            commit_records(state, FIRST, SECOND)
        for poll in polls:
            poll.join(timeout=60)
        assert len(done) == len(polls)
        assert all(json.loads(body)["rows"] for _status, _headers, body in done[1:])
    finally:
        server.stop()


def test_records_and_schema(server: HttpServer) -> None:
    code, page = _json(server, f"/api/v1/records/{TARGET}/shopdb/users?limit=2")
    assert code == 200 and len(page["records"]) == 2 and page["total"] == 5
    assert page["next_offset"] == 2
    code, rest = _json(server, f"/api/v1/records/{TARGET}/shopdb/users?offset=2&limit=1000")
    assert len(rest["records"]) == 3 and rest["next_offset"] is None
    code, one = _json(server, f"/api/v1/records/{TARGET}/shopdb/users?key=3")
    assert code == 200 and json.loads(one["records"][0]["value"])["name"] == "user three"
    assert _json(server, f"/api/v1/records/{TARGET}/shopdb/users?key=99")[0] == 404
    assert _json(server, f"/api/v1/records/{TARGET}/shopdb/nope")[0] == 404
    code, schema = _json(server, f"/api/v1/schema/{TARGET}")
    assert code == 200 and {s["store"] for s in schema["stores"]} == {"users", "orders"}
    assert _json(server, "/api/v1/schema/nobody")[0] == 404
    assert _json(server, "/api/v1/nothing")[0] == 404
    code, spec = _json(server, "/api/v1/openapi.json")
    assert code == 200 and "/api/v1/changes" in spec["paths"]


def test_the_token_rules(state_dir: Path) -> None:
    # Beyond loopback without a token: refused (the inspector's pages still answer).
    server = _serve(state_dir, bind="0.0.0.0")
    try:
        assert _json(server, "/api/v1/changes")[0] == 403
    finally:
        server.stop()
    server = _serve(state_dir, bind="0.0.0.0", token=TOKEN)
    try:
        assert _json(server, "/api/v1/changes")[0] == 401
        assert _json(server, "/api/v1/changes", Authorization="Bearer wrong")[0] == 401
        assert _json(server, "/api/v1/changes", Authorization=f"Basic {TOKEN}")[0] == 401
        code, page = _json(server, "/api/v1/changes", Authorization=f"Bearer {TOKEN}")
        assert code == 200 and page["rows"]
    finally:
        server.stop()


def test_cors_only_for_the_configured_origins(state_dir: Path) -> None:
    server = _serve(state_dir, token=TOKEN, cors=("https://app.example",))
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        status, headers, _body = _get(
            server, "/api/v1/changes", {"Origin": "https://app.example", **auth}
        )
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "X-Next-Cursor" in headers["Access-Control-Expose-Headers"]
        _status, headers, _body = _get(
            server, "/api/v1/changes", {"Origin": "https://evil.example", **auth}
        )
        assert not [name for name in headers if name.lower().startswith("access-control-")]
        # The preflight needs no token; another origin's gets none of it.
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
        status, headers = _options(server, preflight)
        assert status == 204 and "GET" in headers["Access-Control-Allow-Methods"]
        assert "Authorization" in headers["Access-Control-Allow-Headers"]
        status, headers = _options(server, {**preflight, "Origin": "https://evil.example"})
        assert status == 405
        assert not [name for name in headers if name.lower().startswith("access-control-")]
    finally:
        server.stop()


def _options(server: HttpServer, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(
        server.url + "/api/v1/changes", headers=headers, method="OPTIONS"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


SCHEMA = schemathesis.openapi.from_path(SPEC)


@pytest.fixture(scope="module")
def spec_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    folder = tmp_path_factory.mktemp("api") / "state"
    with StateDB.open(folder) as state:
        commit_records(state, FIRST, {})
        commit_records(state, SECOND, FIRST)
    server = _serve(folder)
    yield server
    server.stop()


@SCHEMA.parametrize()
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_every_operation_answers_as_the_spec_says(case: Any, spec_server: HttpServer) -> None:
    # A text the schema allows may still not name a cursor, a store or a record (400, 404):
    # rules a JSON schema cannot state. Every other check holds.
    case.call_and_validate(base_url=spec_server.url, excluded_checks=[positive_data_acceptance])
