"""Checking what a per-harvest job wrote: a run is delivered only when the default sinks hold its
rows, whatever Flink reported.

Flink stages a batch job's files in `.staging_*` folders and moves them into place when the job
ends; a staging folder removed meanwhile (another process cleaning up, a full disk) still gives
a successful job with rows missing. Only our worker writes under `state.data_dir` (the data
folder's lock) and its jobs run one at a time, so the files a job wrote are those last changed
after it started.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson

from harvester.errors import FlinkJobError


def _recent(folder: Path, since: float) -> Iterator[Path]:
    """Part files under `folder` (partition folders included) changed at or after `since`.

    A folder's own time changes when a file is added to it, not to a folder below: every folder
    is listed, but only the files of folders changed since then are looked at.
    """
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            changed = current.stat().st_mtime >= since
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith((".", "_")):
                continue
            if entry.is_dir():
                stack.append(Path(entry.path))
            elif changed and entry.name.startswith("part-") and entry.stat().st_mtime >= since:
                yield Path(entry.path)


def written_rows(data_dir: Path, since: float) -> tuple[dict[str, int], int]:
    """(rows per run, rows in all) that the default sinks' part files written since `since`
    hold: a run's record rows are counted in `run_stats` (all of them in `changes`), its schema
    rows in `schema_log`, which holds few."""
    per_run: dict[str, int] = {}
    for path in _recent(data_dir / "run_stats", since):
        for line in path.read_bytes().splitlines():
            if line.strip():
                stats = orjson.loads(line)
                rows = stats["inserts"] + stats["updates"] + stats["deletes"]
                per_run[stats["run_id"]] = per_run.get(stats["run_id"], 0) + rows
    total = 0
    for path in _recent(data_dir / "changes", since):
        with path.open("rb") as lines:
            total += sum(1 for line in lines if line.strip())
    for path in _recent(data_dir / "schema_log", since):
        for line in path.read_bytes().splitlines():
            if line.strip():
                run_id = orjson.loads(line)["run_id"]
                per_run[run_id] = per_run.get(run_id, 0) + 1
                total += 1
    return per_run, total


def check_written(data_dir: Path, since: float, expected: Mapping[str, int]) -> None:
    """Raise `FlinkJobError` unless the job that started at `since` wrote `expected` rows per
    run into both default sinks."""
    per_run, written = written_rows(data_dir, since)
    total = sum(expected.values())
    short = {run: rows for run, rows in expected.items() if per_run.get(run, 0) != rows}
    if not short and written == total:
        return
    detail = ", ".join(f"{run}: {per_run.get(run, 0)} of {rows}" for run, rows in short.items())
    raise FlinkJobError(
        f"Flink reported success, but its default sinks in {data_dir} hold {written} of the "
        f"job's {total} rows{f' (run_stats: {detail})' if detail else ''}; were their "
        "`.staging_*` folders removed during the job? The runs stay pending and are sent again",
        root_cause="rows missing from the default sinks after the job",
    )
