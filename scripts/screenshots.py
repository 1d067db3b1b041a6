"""Screenshots of the live inspector's pages (`docs/screenshots/*.png`) and of the HTML report
(`docs/report.png`), from a state folder built on the spot; `make screenshots` calls this.

The state: the bundled demo app harvested twice in headless Chromium (JSON-lines sink, no
Flink), as the tests build it (`tests/support/demo_state.py`), in a temporary folder, so neither
`demo-state/` nor a config is needed. The demo's databases stay at version 1, so a third run is
committed through `StateDB` to give the schema history a change to show: what a harvest would
record after an upgrade of the app to version 2 of `shop` (a new index `by_total` on `orders`)
that changed no record. The inspector is then served on 127.0.0.1 (a free port), as the tests
serve it (`tests/support/inspector.py`, what `harvester inspect` serves), and each page is
captured 1280 pixels wide.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
# tests/support builds the demo state and serves the inspector as the tests do.
sys.path.insert(0, str(ROOT))

from harvester.browser import find_chromium, launch_args  # noqa: E402
from harvester.errors import HarvesterError  # noqa: E402
from harvester.inspect.report import render_report  # noqa: E402
from harvester.state import ReadScope, StateDB, state_db_path  # noqa: E402
from tests.support.demo_state import harvest_demo_twice  # noqa: E402
from tests.support.inspector import serving  # noqa: E402

TARGET = "demo"
WIDTH = 1280
VIEWPORT = {"width": WIDTH, "height": 800}
REPORT_VIEWPORT = {"width": WIDTH, "height": 1400}
# A capture stops at this height (unless told otherwise), so that a long table does not make a
# huge file.
MAX_HEIGHT = 1400
# A record the second harvest updated (app.js: order ids 1000..1002 in generation 1), and the
# tag it added to them.
RECORD_KEY = "1000"
SEARCH = "rev-1"
NEW_INDEX = {"name": "by_total", "key_path": "total", "unique": False, "multi_entry": False}


@dataclasses.dataclass(frozen=True)
class Shot:
    """One capture: `name`.png of the inspector's `path`, from the element `#start` (else the
    top) down to the element `#stop` (else the bottom), at most `max_height` pixels."""

    name: str
    path: str
    start: str | None = None
    stop: str | None = None
    max_height: int = MAX_HEIGHT


def inspector_path(*segments: str, **query: str) -> str:
    """An inspector path: segments percent-encoded, then the query."""
    text = "/" + "/".join(quote(s, safe="") for s in segments)
    return text + ("?" + urlencode(query) if query else "")


def commit_upgrade(state_dir: Path) -> None:
    """Commit a run of the demo that read every store as the last run did, no record changed,
    but `shop` at version 2 with NEW_INDEX on `orders`."""
    state = StateDB.open(state_dir)
    try:
        last = state.list_runs(target=TARGET, limit=1)[0]
        assert last.origin is not None
        stores = []
        for read in state.run_stores(last.id):
            upgraded = read.db == "shop"
            indexes = [*read.indexes, NEW_INDEX] if read.store == "orders" else read.indexes
            stores.append(
                dataclasses.replace(
                    read,
                    db_version=2 if upgraded else read.db_version,
                    indexes=indexes if upgraded else read.indexes,
                    rows=0,
                    inserted=0,
                    updated=0,
                    deleted=0,
                    unchanged=read.records,
                    seconds=0.0,
                )
            )
        databases = {db.db: db.version for db in state.schema_dbs(TARGET)} | {"shop": 2}
        run_id = state.start_run(TARGET)
        scope = ReadScope(databases=databases)
        state.mark_read(run_id, origin=last.origin, stores=stores, rows=0, scope=scope)
        assert state.commit_run(run_id, [])
    finally:
        state.close()


def committed_runs(state_dir: Path) -> list[str]:
    """The demo's committed run ids, oldest first."""
    state = StateDB.open(state_dir, readonly=True)
    try:
        runs = state.list_runs(target=TARGET, status="committed")
    finally:
        state.close()
    return [run.id for run in reversed(runs)]


def save(png: bytes, out: Path) -> None:
    out.write_bytes(png)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


def capture(page: Page, base: str, shot: Shot) -> bytes:
    """The PNG of `shot` (a page that is not a 200 stops the script)."""
    response = page.goto(base + shot.path)
    if response is None or response.status != 200:
        status = response.status if response is not None else "no response"
        raise SystemExit(f"{shot.path}: HTTP {status}, not a page to show")
    bottom = float(page.evaluate("document.documentElement.scrollHeight"))
    top = 0.0
    if shot.start is not None:
        box = page.locator(f"#{shot.start}").bounding_box()
        assert box is not None, shot.start
        top = max(0.0, box["y"] - 16)
    if shot.stop is not None:
        box = page.locator(f"#{shot.stop}").bounding_box()
        assert box is not None, shot.stop
        bottom = box["y"] - 8
    height = min(bottom - top, shot.max_height)
    return page.screenshot(
        full_page=True, clip={"x": 0, "y": top, "width": WIDTH, "height": height}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "report.png")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        chromium = find_chromium(None)
    except HarvesterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    with tempfile.TemporaryDirectory(prefix="demo-") as tmp:
        folder = Path(tmp)
        harvest_demo_twice(folder)
        state_dir = folder / "state"
        commit_upgrade(state_dir)
        runs = committed_runs(state_dir)
        report = folder / "report.html"
        report.write_text(render_report(state_db_path(state_dir)), encoding="utf-8")
        target = ("target", TARGET)
        orders = (*target, "store", "shop", "orders")
        shots = [
            Shot("targets", inspector_path()),
            Shot("runs", inspector_path(*target), stop="compare"),
            Shot("run", inspector_path(*target, "run", runs[1])),
            Shot("diff", inspector_path(*target, "diff", a=runs[0], b=runs[-1])),
            Shot("store", inspector_path(*orders)),
            Shot("search", inspector_path(*orders, q=SEARCH)),
            Shot("record", inspector_path(*orders, "record", key=RECORD_KEY)),
            Shot("schema", inspector_path(*target), start="schema", max_height=1800),
        ]
        args.out.mkdir(parents=True, exist_ok=True)
        args.report.parent.mkdir(parents=True, exist_ok=True)
        with serving(state_dir) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=launch_args())
            try:
                page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
                for shot in shots:
                    save(capture(page, base, shot), args.out / f"{shot.name}.png")
                page.set_viewport_size(REPORT_VIEWPORT)  # type: ignore[arg-type]
                page.goto(report.as_uri())
                save(page.screenshot(), args.report)
            finally:
                browser.close()
    print(f"done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
