"""The live inspector: its dispatcher (fast, no browser), `harvester inspect`, and its pages in
a real Chromium over state DBs built through the real commit path (two harvests of the demo,
or runs committed through `StateDB`), served from 127.0.0.1."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from harvester.browser import launch_args
from harvester.cli import main
from harvester.codec import File
from harvester.inspect.pretty import pretty_text
from harvester.inspect.queries import StateReader
from harvester.inspect.web import InspectorApp
from harvester.state import StateDB
from tests.support.demo_state import harvest_demo_twice
from tests.support.inspect_data import FIRST, SECOND, TARGET, XSS, commit_records
from tests.support.inspector import commit_store, serving
from tests.support.server import free_port

# ---- state DBs -------------------------------------------------------------------------------

HOSTILE_TARGET = 'evil"><img src=x onerror=alert(1)>'
HOSTILE_DB = "<script>alert('db')</script>"
HOSTILE_STORE = "s\u202etxt.exe\x1b[31m"
HOSTILE_KEY = "javascript:alert(document.domain)"
PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "javascript:alert(3)",
    "\u202eevil\u202c and \x1b[2J\x07 controls",
    "</style><svg onload=alert(4)>",
    *XSS,
]


@pytest.fixture
def shop(tmp_path: Path) -> tuple[Path, list[str]]:
    """Two committed runs of `shop` (tests/support/inspect_data.py)."""
    folder = tmp_path / "state"
    with StateDB.open(folder) as state:
        runs = [commit_records(state, FIRST, {}), commit_records(state, SECOND, FIRST)]
    return folder, runs


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, list[str]]:
    """A target, database, store, keys and values made of XSS payloads, in two runs."""
    folder = tmp_path / "hostile"
    first = {
        HOSTILE_KEY: {"note": PAYLOADS[0]},
        **{p: {"note": p, "n": i} for i, p in enumerate(PAYLOADS)},
    }
    first["blob"] = {
        "file": File(
            type="text/html",
            size=29,
            data=b"<script>alert(5)</script>..",
            name='"><img src=x onerror=alert(6)>.html',
        )
    }
    second = {**first, HOSTILE_KEY: {"note": PAYLOADS[1], "url": PAYLOADS[2]}}
    with StateDB.open(folder) as state:
        runs = [
            commit_store(state, HOSTILE_TARGET, HOSTILE_DB, HOSTILE_STORE, first, {}),
            commit_store(state, HOSTILE_TARGET, HOSTILE_DB, HOSTILE_STORE, second, first),
        ]
        failed = state.start_run(HOSTILE_TARGET)
        state.fail_run(failed, PAYLOADS[1])
    return folder, runs


def _store_path(target: str, db: str, store: str, *tail: str) -> str:
    return "/" + "/".join(quote(s, safe="") for s in ("target", target, "store", db, store, *tail))


# ---- the dispatcher, without a browser -------------------------------------------------------


def test_pages_answer_and_bad_requests_are_clear_pages(shop: tuple[Path, list[str]]) -> None:
    folder, (first, second) = shop
    app = InspectorApp(folder)
    ok = [
        "/",
        f"/target/{TARGET}",
        f"/target/{TARGET}?page=1",
        f"/target/{TARGET}/run/{second}",
        f"/target/{TARGET}/diff?a={first}&b={second}",
        f"/target/{TARGET}/store/shopdb/users?q=user&order=key&desc=1",
        f"/target/{TARGET}/store/shopdb/users/record?key=3",
    ]
    for path in ok:
        reply = app.get(path)
        assert reply.status == 200, (path, reply.body[:300])
        assert reply.content_type == "text/html; charset=utf-8"
        csp = reply.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'none'" in csp
        html = reply.body.decode()
        assert html.count("<h1>") == 1 and "<title>" in html and 'href="#main"' in html
    errors = {
        "/nothing/here": 404,
        "/target/nope": 404,
        f"/target/{TARGET}/store/shopdb/nope": 404,
        f"/target/{TARGET}/store/nope/users": 404,
        f"/target/{TARGET}/run/nope": 404,
        f"/target/{TARGET}/store/shopdb/users/record?key=99": 404,
        f"/target/{TARGET}?page=99": 404,
        f"/target/{TARGET}?page=x": 400,
        f"/target/{TARGET}/store/shopdb/users?page=0": 400,
        f"/target/{TARGET}/store/shopdb/users?order=value": 400,
        f"/target/{TARGET}/store/shopdb/users?desc=yes": 400,
        f"/target/{TARGET}/store/shopdb/users?q=" + "x" * 501: 400,
        f"/target/{TARGET}/store/shopdb/users/record": 400,
        f"/target/{TARGET}/store/shopdb/users/record?key=%7Bnot-json": 400,
        f"/target/{TARGET}/diff?a={first}": 400,
        f"/target/{TARGET}/diff?a={second}&b={first}": 400,  # the newer first
        f"/target/{TARGET}/store/shopdb/users/blob?key=3": 404,  # no blob in it
        "/target/%FF": 400,
    }
    for path, status in errors.items():
        reply = app.get(path)
        assert reply.status == status, (path, reply.status, reply.body[-400:])
        html = reply.body.decode()
        assert "Traceback" not in html and "<h1>" in html
    assert b"unknown target &#x27;nope&#x27;" in app.get("/target/nope").body
    # The run picker's form goes to the run's own URL.
    reply = app.get(f"/target/{TARGET}/run?id={second}")
    assert reply.status == 303 and reply.headers["Location"] == f"/target/{TARGET}/run/{second}"
    for method in ("POST", "PUT", "DELETE"):
        reply = app(method, "/", {})
        assert reply.status == 405 and reply.headers["Allow"] == "GET, HEAD"
    assert InspectorApp(folder.parent / "missing").get("/").status == 503


def test_every_harvested_string_is_escaped(hostile: tuple[Path, list[str]]) -> None:
    folder, (first, second) = hostile
    app = InspectorApp(folder)
    store = _store_path(HOSTILE_TARGET, HOSTILE_DB, HOSTILE_STORE)
    target = "/target/" + quote(HOSTILE_TARGET, safe="")
    key = quote(json.dumps(HOSTILE_KEY), safe="")
    pages = [
        "/",
        target,
        f"{target}/run/{second}",
        f"{target}/diff?a={first}&b={second}",
        store,
        f"{store}?q=script",
        f"{store}/record?key={key}",
    ]
    for path in pages:
        reply = app.get(path)
        assert reply.status == 200, (path, reply.body[-300:])
        html = reply.body.decode()
        for raw in ("<img", "<svg onload", "<script", "</style><svg", "\u202e", "\x1b", "\x07"):
            assert raw not in html, (path, raw)
        assert 'href="javascript:' not in html and "href='javascript:" not in html
    # The Blob downloads as an attachment of a neutral type, never as HTML of our origin.
    reply = app.get(f"{store}/blob?n=0&key={quote(json.dumps('blob'), safe='')}")
    assert reply.status == 200 and reply.body == b"<script>alert(5)</script>.."
    assert reply.content_type == "application/octet-stream"
    disposition = reply.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    assert '"><' not in disposition.split("filename*=")[0]


def _ask(
    url: str, method: str = "GET", host: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest(method, parts.path or "/", skip_host=True)
        conn.putheader("Host", host or parts.netloc)
        conn.endheaders()
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def test_the_server_checks_host_and_serves_get_and_head_only(
    shop: tuple[Path, list[str]],
) -> None:
    folder, _runs = shop
    with serving(folder) as base:
        status, headers, body = _ask(base + "/")
        assert status == 200 and b"<h1>" in body
        assert "script-src 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        status, headers, body = _ask(base + "/", "HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        assert _ask(base + "/", "POST")[0] == 405
        assert _ask(base + f"/target/{TARGET}", host="evil.example:80")[0] == 421
        assert _ask(base + "/healthz")[0] == 404  # the inspector alone: no daemon endpoints


def test_harvester_inspect_serves_until_ctrl_c(shop: tuple[Path, list[str]]) -> None:
    folder, _runs = shop
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "harvester", "inspect", "--state", str(folder), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(f"inspector on http://127.0.0.1:{port}/"), line
        assert _ask(f"http://127.0.0.1:{port}/")[0] == 200
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_harvester_inspect_without_a_state_db_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "--state", str(tmp_path / "none"), "--port", "0"]) == 2
    assert "no state database" in capsys.readouterr().err


# ---- in Chromium -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=launch_args())
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    # Init scripts run whatever the page's policy; they only record what goes wrong.
    context.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state folder of the demo harvested twice (JSON-lines sink, no Flink)."""
    return harvest_demo_twice(tmp_path_factory.mktemp("demo")).parent / "state"


def _rows(page: Page) -> list[str]:
    return page.locator("table.records tbody tr td.key").all_inner_texts()


@pytest.mark.browser
@pytest.mark.slow
def test_demo_search_paging_sorting_diff_and_history(demo: Path, page: Page) -> None:
    with StateReader(demo) as reader:
        lines = reader.store("demo", "shop", "order_lines")
        in_order = [r.key for r in reader.records(lines)]
        run_a, run_b = reader.last_runs("demo", 2)
        diffs = {(d.db, d.store): d for d in reader.diff_runs(run_a, run_b)}
    assert len(in_order) >= 5000
    with serving(demo) as base:
        # Search reaches a record far beyond the first thousand.
        page.goto(base + _store_path("demo", "shop", "order_lines"))
        far = json.loads(in_order[4200])
        page.get_by_label("Search all records").fill(str(far[0]))
        page.get_by_role("button", name="Search").click()
        assert "q=" in page.url
        assert pretty_text(json.dumps(far)) in _rows(page)
        assert "match" in page.locator("#matches").inner_text()

        # Paging: the second page holds records 51–100 in first-seen order.
        page.goto(base + _store_path("demo", "shop", "order_lines"))
        assert _rows(page)[0] == pretty_text(in_order[0])
        page.get_by_role("link", name="next page →").click()
        assert "page=2" in page.url
        assert _rows(page)[0] == pretty_text(in_order[50])
        assert len(_rows(page)) == 50
        # Sorting: by key, then by key descending.
        page.locator("table.records thead").get_by_role("link", name="key").click()
        assert "order=key" in page.url and "page=" not in page.url
        page.locator("table.records thead").get_by_role("link", name="key ▲").click()
        assert "desc=1" in page.url
        assert page.locator('th[aria-sort="descending"]').count() == 1

        # The diff of the two runs, through the target page's form (its defaults).
        page.goto(base + "/target/demo")
        page.get_by_role("button", name="Compare").click()
        assert "/target/demo/diff?" in page.url
        orders = diffs[("shop", "orders")]
        changed = next(r for r in orders.changed if r.fields)
        section = page.locator('section.store-diff[data-db="shop"][data-store="orders"]')
        counts = orders.counts()
        assert f"{counts['changed']:,} changed" in section.locator("p.meta").inner_text()
        text = section.inner_text()
        for change in changed.fields or ():
            assert f"{change.old} → {change.new}" in text

        # Key history: the changed record's page shows both of its versions.
        section.get_by_role("link", name=pretty_text(changed.key), exact=True).click()
        assert "/record?key=" in page.url
        history = page.locator("table.history tbody tr")
        assert history.count() == 2
        assert history.nth(0).locator("td").nth(2).inner_text() == "+I"
        assert history.nth(1).locator("td").nth(2).inner_text() == "+U"
        assert f"{changed.fields[0].old} → {changed.fields[0].new}" in history.nth(1).inner_text()

        # The home page: two charts with one linked mark per run, and a run picker.
        page.goto(base + "/")
        charts = page.locator('div.charts[data-target="demo"]')
        assert charts.locator("circle.point").count() == 2
        assert charts.locator("rect.bar").count() == 2
        page.get_by_label("Run of demo", exact=True).select_option(run_a.id)
        page.get_by_role("button", name="Show run").click()
        assert page.url.endswith(f"/target/demo/run/{run_a.id}")
        assert page.evaluate("window.__violations") == []


@pytest.mark.browser
def test_schema_history_after_a_version_bump(tmp_path: Path, page: Page) -> None:
    folder = tmp_path / "state"
    index = {"name": "by_n", "key_path": "n", "unique": False, "multi_entry": False}
    with StateDB.open(folder) as state:
        commit_store(state, "app", "todo", "items", {1: {"n": 1}}, {})
        bumped = commit_store(
            state, "app", "todo", "items", {1: {"n": 2}}, {1: {"n": 1}}, version=2, indexes=[index]
        )
    with serving(folder) as base:
        page.goto(base + "/target/app")
        history = page.locator("table.schema-history").inner_text()
        assert "version 1 → 2" in history and "index by_n added to items" in history
        assert bumped in history
        assert "todo (2)" in page.locator("table.schema").inner_text()
        page.goto(base + _store_path("app", "todo", "items"))
        assert "version 1 → 2" in page.locator("table.schema-history").inner_text()


@pytest.mark.browser
def test_hostile_store_renders_as_inert_text(hostile: tuple[Path, list[str]], page: Page) -> None:
    folder, (first, second) = hostile
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    store = _store_path(HOSTILE_TARGET, HOSTILE_DB, HOSTILE_STORE)
    target = "/target/" + quote(HOSTILE_TARGET, safe="")
    key = quote(json.dumps(HOSTILE_KEY), safe="")
    with serving(folder) as base:
        found: dict[str, Any] = {}
        for path in (
            "/",
            target,
            f"{target}/run/{second}",
            f"{target}/diff?a={first}&b={second}",
            store,
            f"{store}/record?key={key}",
        ):
            response = page.goto(base + path)
            assert response is not None and response.status == 200, path
            page.wait_for_load_state("load")
            found[path] = page.evaluate(
                """() => ({
                    violations: window.__violations,
                    images: document.images.length,
                    scripts: document.scripts.length,
                    svgScripts: document.querySelectorAll('svg [onload], [onerror]').length,
                    jsLinks: [...document.links].filter((a) => a.protocol === 'javascript:').length,
                    text: document.body.innerText,
                })"""
            )
        # Following the links the page made from hostile names lands on the right pages.
        page.goto(base + target)
        page.get_by_role("link", name=f"{HOSTILE_DB} / ", exact=False).first.click()
        assert page.locator("h1").inner_text().startswith(f"Store {HOSTILE_DB} / ")
    assert dialogs == [] and errors == []
    for path, seen in found.items():
        assert seen["violations"] == [], path
        assert (seen["images"], seen["scripts"], seen["svgScripts"], seen["jsLinks"]) == (
            0,
            0,
            0,
            0,
        ), path
    assert PAYLOADS[1] in found[f"{store}/record?key={key}"]["text"]
    assert PAYLOADS[0] in found[store]["text"]
    assert "\\u202e" in found[store]["text"]  # the bidi override is shown, not obeyed


@pytest.mark.browser
def test_keyboard_reaches_the_search_field_and_headings_are_in_order(
    shop: tuple[Path, list[str]], page: Page
) -> None:
    folder, _runs = shop
    with serving(folder) as base:
        page.goto(base + f"/target/{TARGET}/store/shopdb/users")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "q":
                break
        assert page.evaluate("document.activeElement.id") == "q"
        assert page.get_by_label("Search all records").count() == 1
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
        for path in ("/", f"/target/{TARGET}", f"/target/{TARGET}/store/shopdb/users/record?key=3"):
            page.goto(base + path)
            levels = page.evaluate(
                "[...document.querySelectorAll('h1,h2,h3,h4')].map((h) => +h.tagName[1])"
            )
            assert levels[0] == 1 and levels.count(1) == 1, (path, levels)
            assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels
            assert page.title()
