"""Inspection over a state DB filled by two real harvests of the demo site (JSON-lines sink).

The second harvest reloads the demo app in the same browser profile, which makes generation 1
of its changes (harvester/demo_site/app.js, expected.json): `diff` must show exactly those.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from harvester.browser import launch_args
from harvester.cli import main
from tests.support.demo_state import harvest_demo_twice

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXPECTED = json.loads(files("harvester").joinpath("demo_site", "expected.json").read_text())


@pytest.fixture(scope="module")
def harvested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The config of a demo target harvested twice; the state DB is the config's state folder."""
    yield harvest_demo_twice(tmp_path_factory.mktemp("demo"))


def cli_json(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> Any:
    capsys.readouterr()
    assert main([*argv, "--config", str(config), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _changes() -> dict[tuple[str, str], dict[str, int]]:
    return {
        (db, store): counts
        for db, stores in EXPECTED["each_generation"].items()
        for store, counts in stores.items()
    }


def test_runs_and_stores(harvested: Path, capsys: pytest.CaptureFixture[str]) -> None:
    second, first = cli_json(capsys, harvested, "runs", "--target", "demo")
    total = sum(n for stores in EXPECTED["generation_0"].values() for n in stores.values())
    changes = _changes()
    added = sum(c["+I"] for c in changes.values())
    updated = sum(c["+U"] for c in changes.values())
    deleted = sum(c["-D"] for c in changes.values())
    assert (first["status"], first["inserted"], first["updated"], first["deleted"]) == (
        "committed",
        total,
        0,
        0,
    )
    assert (second["status"], second["inserted"], second["updated"], second["deleted"]) == (
        "committed",
        added,
        updated,
        deleted,
    )
    assert second["unchanged"] == total - updated - deleted
    assert second["error"] is None and second["duration_s"] > 0

    stores = cli_json(capsys, harvested, "stores", "--target", "demo")
    seen = {(s["db"], s["store"]): s for s in stores}
    expected = {
        (db, store): count + changes[(db, store)]["+I"] - changes[(db, store)]["-D"]
        for db, counts in EXPECTED["generation_0"].items()
        for store, count in counts.items()
    }
    assert {k: s["records"] for k, s in seen.items()} == expected
    orders = seen[("shop", "orders")]
    assert (orders["db_version"], orders["key_path"], orders["auto_increment"]) == (1, "id", False)
    assert {ix["name"] for ix in orders["indexes"]} == {
        "by_number",
        "by_customer",
        "by_status",
        "by_tags",
        "by_created",
    }
    assert orders["last_changed_run"] == second["id"] and orders["first_run"] == first["id"]
    fields = {f["field"]: f for f in orders["schema"]["fields"]}
    assert fields["id"]["types"] == {"number": orders["schema"]["sampled"]}
    assert fields["id"]["frequency"] == 1.0
    assert seen[("shop", "order_lines")]["key_path"] == ["orderId", "line"]
    assert seen[("shop", "drafts")]["records"] == 0


def test_show(harvested: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (runs_second, runs_first) = cli_json(capsys, harvested, "runs")
    base = ["show", "demo", "shop", "orders"]
    (one,) = cli_json(capsys, harvested, *base, "--key", "1000")
    assert one["key"] == 1000 and one["value"]["id"] == 1000
    assert one["value"]["revision"] == 1 and "rev-1" in one["value"]["tags"]
    assert one["last_changed_run"] == runs_second["id"]
    assert cli_json(capsys, harvested, *base, "--key", "1") == []  # deleted by generation 1
    (gone,) = cli_json(capsys, harvested, *base, "--key", "1", "--run", runs_first["id"])
    # The history keeps the value a delete replaced, so the past record is shown whole.
    assert gone["key"] == 1 and gone["value"]["id"] == 1
    customer = cli_json(
        capsys, harvested, "show", "demo", "shop", "customers", "--key", "cust-0001"
    )
    assert customer[0]["value"]["visits"] == 1
    limited = cli_json(capsys, harvested, *base, "--where", "revision=1", "--limit", "10")
    assert sorted(r["key"] for r in limited) == [1000, 1001, 1002]


def test_diff_shows_exactly_the_demos_changes(
    harvested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli_json(capsys, harvested, "diff", "--target", "demo", "--last", "2")
    got = {(s["db"], s["store"]): s for s in result["stores"]}
    want = {k: c for k, c in _changes().items() if any(c.values())}
    assert {
        k: {"+I": s["counts"]["added"], "+U": s["counts"]["changed"], "-D": s["counts"]["removed"]}
        for k, s in got.items()
    } == want
    orders = got[("shop", "orders")]
    assert [r["key"] for r in orders["added"]] == [2501, 2502, 2503, 2504, 2505]
    assert [r["key"] for r in orders["changed"]] == [1000, 1001, 1002]
    assert sorted(r["key"] for r in orders["removed"]) == [1, 2]
    lines = got[("shop", "order_lines")]
    assert sorted(r["key"] for r in lines["removed"]) == [[1, 1], [1, 2], [2, 1], [2, 2]]
    assert sorted(r["key"] for r in lines["changed"]) == [[1000, 1], [1001, 1], [1002, 1]]
    (customer,) = got[("shop", "customers")]["changed"]
    assert customer["key"] == "cust-0001" and customer["new_value"]["visits"] == 1


def test_report_of_the_demo(harvested: Path, chromium_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", "--config", str(harvested), "--out", str(out)]) == 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=launch_args())
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(out.as_uri())
            assert errors == []
            points = page.locator('figure.chart[data-target="demo"] .series-changes circle.point')
            assert points.count() == 2
            orders = page.locator('section.store[data-db="shop"][data-store="orders"]')
            assert "Showing the first 1,000 of 2,503 records" in orders.inner_text()
            orders.locator("input.filter").fill('"cust-0001"')
            customers = page.locator('section.store[data-db="shop"][data-store="customers"]')
            customers.locator("input.filter").fill('"cust-0042"')
            visible = customers.locator("table.records tbody tr:visible")
            assert visible.count() == 1
            assert visible.locator("td").first.inner_text() == '"cust-0042"'
        finally:
            browser.close()
