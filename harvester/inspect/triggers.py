"""What started a run, as `harvester runs` and the HTML report both show it: `event ×3:
app/items` for an event-driven run (its events, the stores it read), nothing for a scheduled one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harvester.state import Run, StateDB


def stores_read(path: Path, runs: Sequence[Run]) -> dict[str, list[str]]:
    """The stores ("db/store") each event-driven run of `runs` read: what its events named.
    `path`: the state DB file, opened read-only."""
    event_runs = [r for r in runs if r.trigger == "event"]
    if not event_runs:
        # No second connection for the common case of a target that is not watched.
        return {}
    state = StateDB.open_file(path)
    try:
        return {r.id: [f"{s.db}/{s.store}" for s in state.run_stores(r.id)] for r in event_runs}
    finally:
        state.close()


def trigger_text(run: Run, stores: list[str] | None) -> str:
    """What started the run: `event ×3: app/items` (its events, the stores it read); empty for
    a scheduled or one-shot run."""
    if run.trigger != "event":
        return run.trigger or ""
    return f"event ×{run.trigger_events or 0}: {', '.join(stores or []) or 'no store'}"
