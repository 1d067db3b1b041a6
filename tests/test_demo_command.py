"""`harvester demo` end to end, twice on one profile: first a snapshot, then the app's changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harvester.cli import main
from harvester.state import StateDB
from tests.support.server import free_port

REPO = Path(__file__).resolve().parent.parent
EXPECTED = json.loads((REPO / "harvester" / "demo_site" / "expected.json").read_text("utf-8"))

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _counts(section: str) -> dict[tuple[str, str], object]:
    return {
        (db, store): value
        for db, stores in EXPECTED[section].items()
        for store, value in stores.items()
    }


def test_demo_twice_shows_a_snapshot_then_the_apps_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_env: None
) -> None:
    config = tmp_path / "demo.toml"
    shipped = (REPO / "config" / "demo.toml").read_text("utf-8")
    config.write_text(shipped.replace("../demo-state/", "demo-state/"), "utf-8")
    # The port stays the same across both runs: IndexedDB's origin includes it.
    args = ["demo", "--config", str(config), "--port", str(free_port()), "--sink", "jsonl"]

    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    second = capsys.readouterr().out

    with StateDB.open(tmp_path / "demo-state" / "state") as state:
        newest, oldest = state.list_runs(target="demo")
        assert oldest.status == newest.status == "committed"
        snapshot = {(s.db, s.store): s.inserted for s in state.run_stores(oldest.id)}
        changes = {
            (s.db, s.store): {"+I": s.inserted, "+U": s.updated, "-D": s.deleted}
            for s in state.run_stores(newest.id)
        }
    assert snapshot == _counts("generation_0")
    assert changes == _counts("each_generation")
    assert (oldest.updated, oldest.deleted) == (0, 0)

    for out in (first, second):
        assert "demo app: http://127.0.0.1:" in out
        # The commands it suggests are ones that work on what it wrote.
        suggested = [line.split() for line in out.splitlines() if "--config" in line]
        assert len(suggested) == 4
    for command in suggested:
        at = next(
            i for i, word in enumerate(command) if word in {"runs", "stores", "diff", "report"}
        )
        words = command[at:]
        if words[0] == "report":
            words = [*words[:1], "--out", str(tmp_path / "report.html"), *words[3:]]
        assert main(words) == 0, words
    assert (tmp_path / "report.html").stat().st_size > 0
