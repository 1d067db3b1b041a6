"""Render the HTML report of the demo's state in headless Chromium and save `docs/report.png`.

Run `make demo` (twice, so there are changes to show) first; `make report-screenshot` calls this.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from harvester.browser import find_chromium, launch_args
from harvester.config import load_settings
from harvester.errors import HarvesterError
from harvester.inspect.report import render_report
from harvester.state import state_db_path

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1280, "height": 1400}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "demo.toml")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report.png")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        state_db = state_db_path(Path(settings.state.dir))
        if not state_db.is_file():
            print(f"no demo state at {state_db}: run `make demo` (twice) first", file=sys.stderr)
            return 2
        html = render_report(state_db)
        chromium = find_chromium(settings.browser.executable_path)
    except HarvesterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "report.html"
        page_path.write_text(html, encoding="utf-8")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=launch_args())
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(page_path.as_uri())
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
            finally:
                browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
