"""The daemon's HTTP endpoint: routes, methods, Host checks, health status codes."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import pytest

from harvester.daemon.http import HttpServer, Request, Response
from harvester.daemon.metrics import CONTENT_TYPE_LATEST, DaemonMetrics


class _Health:
    def __init__(self) -> None:
        self.ok = True

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        return self.ok, {"status": "ok" if self.ok else "failing", "targets": {}}


@pytest.fixture
def health() -> _Health:
    return _Health()


@pytest.fixture
def server(health: _Health) -> Iterator[HttpServer]:
    metrics = DaemonMetrics()
    metrics.runs.labels(target="shop", status="committed").inc()
    server = HttpServer(
        "127.0.0.1",
        0,
        health=health,
        metrics=metrics.render,
        metrics_content_type=CONTENT_TYPE_LATEST,
    )
    server.start()
    yield server
    server.stop()


def _request(
    server: HttpServer, method: str, path: str, host: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    headers = {"Host": host if host is not None else f"127.0.0.1:{server.port}"}
    conn.putrequest(method, path, skip_host=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def test_healthz_follows_the_health_check(server: HttpServer, health: _Health) -> None:
    status, headers, body = _request(server, "GET", "/healthz")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert b'"status": "ok"' in body
    health.ok = False
    status, _, body = _request(server, "GET", "/healthz")
    assert status == 503
    assert b"failing" in body


def test_metrics_is_prometheus_text(server: HttpServer) -> None:
    status, headers, body = _request(server, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=")
    assert b'harvester_runs_total{status="committed",target="shop"} 1.0' in body


def test_head_has_headers_but_no_body(server: HttpServer) -> None:
    status, headers, body = _request(server, "HEAD", "/healthz")
    assert status == 200
    assert int(headers["content-length"]) > 0
    assert body == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_refused(server: HttpServer, method: str) -> None:
    status, headers, _ = _request(server, method, "/healthz")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert not any(name.startswith("access-control-") for name in headers)


@pytest.mark.parametrize(
    "host", ["evil.example:{port}", "127.0.0.1:1", "localhost", "[::1]:1", "10.0.0.1:{port}"]
)
def test_foreign_host_headers_are_refused(server: HttpServer, host: str) -> None:
    status, _, _ = _request(server, "GET", "/healthz", host.format(port=server.port))
    assert status == 421


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}"])
def test_local_names_are_accepted(server: HttpServer, host: str) -> None:
    status, _, _ = _request(server, "GET", "/healthz", host.format(port=server.port))
    assert status == 200


def test_wildcard_bind_accepts_address_literals_only() -> None:
    server = HttpServer(
        "0.0.0.0",
        8787,
        health=_Health(),
        metrics=lambda: b"",
        metrics_content_type="text/plain",
    )
    assert server.host_allowed("192.168.1.20:8787")
    assert server.host_allowed("localhost:8787")
    assert not server.host_allowed("rebind.attacker.example:8787")
    assert not server.host_allowed("192.168.1.20:8788")


def test_registered_route_serves_root(server: HttpServer) -> None:
    def report(request: Request) -> Response:
        return Response(200, f"report {request.query.get('run', [''])[0]}".encode(), "text/html")

    server.register_route("/", report)
    status, headers, body = _request(server, "GET", "/?run=7")
    assert (status, headers["content-type"], body) == (200, "text/html", b"report 7")
    assert _request(server, "GET", "/nothing")[0] == 404


def test_a_failing_handler_gives_500(server: HttpServer) -> None:
    def broken(_request: Request) -> Response:
        raise RuntimeError("boom")

    server.register_route("/broken", broken)
    assert _request(server, "GET", "/broken")[0] == 500


def test_a_taken_port_is_a_config_error(server: HttpServer) -> None:
    from harvester.errors import ConfigError

    other = HttpServer(
        "127.0.0.1",
        server.port,
        health=_Health(),
        metrics=lambda: b"",
        metrics_content_type="text/plain",
    )
    with pytest.raises(ConfigError, match="cannot listen"):
        other.start()


def test_requests_run_on_a_few_long_lived_threads(server: HttpServer) -> None:
    import threading

    from harvester.daemon.http import HANDLER_THREADS

    seen: set[int] = set()

    def whoami(_request: Request) -> Response:
        seen.add(threading.get_ident())
        return Response(200, b"ok")

    server.register_route("/who", whoami)
    for _ in range(3 * HANDLER_THREADS):
        assert _request(server, "GET", "/who")[0] == 200
    assert 1 <= len(seen) <= HANDLER_THREADS
