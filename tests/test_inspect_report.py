"""The HTML report in a real headless Chromium: renders cleanly, charts, filtering, no XSS."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from harvester.browser import launch_args
from harvester.cli import main
from harvester.codec import canonical
from harvester.inspect.queries import db_file
from harvester.inspect.report import render_report
from harvester.inspect.triggers import stores_read, trigger_text
from harvester.state import RunStore, StateDB
from tests.support.inspect_data import (
    FIRST,
    ORIGIN,
    SECOND,
    TARGET,
    XSS,
    commit_records,
    spool_row,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def state_folder(tmp_path: Path) -> tuple[Path, list[str]]:
    """Two committed runs with changes between them, then a failed one."""
    folder = tmp_path / "state"
    with StateDB.open(folder) as state:
        runs = [commit_records(state, FIRST, {}), commit_records(state, SECOND, FIRST)]
        failed = state.start_run(TARGET)
        state.fail_run(failed, "page error: <b>HTTP 500</b>")
    return folder, [*runs, failed]


@pytest.fixture
def page(chromium_path: Path) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=launch_args())
        try:
            yield browser.new_page()
        finally:
            browser.close()


def _digest(folder: Path) -> str:
    # Only the database file: SQLite's reader of a WAL database creates the -shm/-wal files.
    return hashlib.sha256((folder / "state.db").read_bytes()).hexdigest()


def test_report_renders_charts_filters_and_runs_no_harvested_script(
    state_folder: tuple[Path, list[str]], page: Page, tmp_path: Path
) -> None:
    folder, runs = state_folder
    before = _digest(folder)
    out = tmp_path / "report.html"
    assert main(["report", "--state", str(folder), "--out", str(out)]) == 0
    assert _digest(folder) == before  # the report only reads the state DB

    problems: list[str] = []
    requests: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(out.as_uri())
    page.wait_for_load_state("load")

    assert problems == []
    assert requests == [out.as_uri()]  # self-contained: nothing fetched at view time

    # One point per run (the failed run included), oldest first, in both series.
    chart = page.locator(f'figure.chart[data-target="{TARGET}"]')
    for series in ("records", "changes"):
        points = chart.locator(f".series-{series} circle.point")
        assert points.count() == 3
        assert [points.nth(i).get_attribute("data-run") for i in range(3)] == runs
    assert chart.locator(".series-records circle.point.failed").count() == 1

    # Filtering the orders table by a key leaves exactly that record.
    orders = page.locator('section.store[data-store="orders"]')
    orders.locator("input.filter").fill('"o-1"')
    visible = orders.locator("table.records tbody tr:visible")
    assert visible.count() == 1
    assert visible.locator("td").first.inner_text() == '"o-1"'
    assert "1 of 2 shown" in orders.locator("span.meta").inner_text()
    orders.locator("input.filter").fill("")
    assert orders.locator("table.records tbody tr:visible").count() == 2

    # Harvested markup is text: no element was made of it, and nothing it holds ran.
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.images.length") == 0
    assert page.evaluate("document.scripts.length") == 1
    text = orders.locator("table.records").inner_text()
    assert XSS[0] in text and XSS[1] in text
    assert "<b>HTTP 500</b>" in page.locator("table.runs").inner_text()


def test_report_without_csp_still_runs_no_harvested_script(
    state_folder: tuple[Path, list[str]], page: Page, tmp_path: Path
) -> None:
    """Escaping alone holds: the same page with its Content-Security-Policy removed."""
    folder, _runs = state_folder
    html = render_report(folder)
    start = html.index('<meta http-equiv="Content-Security-Policy"')
    html = html[:start] + html[html.index(">", start) + 1 :]
    out = tmp_path / "no-csp.html"
    out.write_text(html, encoding="utf-8")
    page.goto(out.as_uri())
    page.wait_for_load_state("load")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.images.length") == 0


def _commit_event_run(state: StateDB, store: str, key: str, value: object, events: int) -> str:
    """An event-driven run of TARGET that read only `store` and inserted or updated `key`."""
    run_id = state.start_run(TARGET, trigger="event", events=events)
    text = canonical(value)
    row = spool_row(run_id, store, key, "+U", text)
    read = RunStore(
        db="shopdb",
        db_version=3,
        store=store,
        key_path="id",
        auto_increment=False,
        indexes=[],
        records=1,
        bytes=len(text),
        rows=1,
        inserted=0,
        updated=1,
        deleted=0,
        unchanged=0,
        complete=True,
    )
    state.mark_read(run_id, origin=ORIGIN, stores=[read], rows=1)
    assert state.commit_run(run_id, [row])
    return run_id


def test_report_runs_table_shows_what_triggered_event_driven_runs(
    state_folder: tuple[Path, list[str]], page: Page, tmp_path: Path
) -> None:
    folder, _runs = state_folder
    # Only scheduled runs: no trigger column, as in `harvester runs`.
    assert "<th>trigger</th>" not in render_report(folder)

    with StateDB.open(folder) as state:
        orders = _commit_event_run(state, "orders", "o-1", {"id": "o-1", "note": "x"}, events=2)
        hostile = _commit_event_run(state, XSS[0], "k", {"id": "k"}, events=1)
        with_runs = state.list_runs(target=TARGET)
        read = stores_read(db_file(folder), with_runs)
        expected = {r.id: trigger_text(r, read.get(r.id)) for r in with_runs}
    assert expected[orders] == "event ×2: shopdb/orders"
    assert expected[hostile] == f"event ×1: shopdb/{XSS[0]}"

    out = tmp_path / "report.html"
    assert main(["report", "--state", str(folder), "--out", str(out)]) == 0
    page.goto(out.as_uri())
    page.wait_for_load_state("load")
    table = page.locator(f'section.target[data-target="{TARGET}"] table.runs')
    headers = table.locator("thead th").all_inner_texts()
    assert headers[:3] == ["run", "status", "trigger"]
    cells = {
        row.locator("td").nth(0).inner_text(): row.locator("td").nth(2).inner_text()
        for row in table.locator("tbody tr").all()
    }
    # The same text as `harvester runs` (one helper), empty for the scheduled and failed runs;
    # the store name that tries XSS is text.
    assert cells == expected
    assert sum(1 for text in cells.values() if text) == 2
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.images.length") == 0
