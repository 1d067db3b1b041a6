"""Helpers of the hostile-page tests: one harvest of a page into a real state DB, and the
Chromium processes a test started."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from harvester.config import Settings, load_settings
from harvester.harvest import PageReader, open_reader, read_target
from harvester.spool import RECORD_OPS, SpoolFile, read_rows
from harvester.state import Run, StateDB
from tests.support.configs import write_config


def _parents() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name) of every process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The name is in parentheses and may hold spaces: the fields after it are split safely.
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        table[int(entry.name)] = (int(stat[stat.rindex(")") + 2 :].split()[1]), name)
    return table


def chromium_processes() -> set[int]:
    """Chromium processes descending from this test process (other tests run beside us)."""
    table = _parents()
    mine: set[int] = set()
    for pid in table:
        at = pid
        while at in table and at not in (0, 1) and at != os.getpid():
            at = table[at][0]
        if at == os.getpid() and "chrom" in table[pid][1].lower():
            mine.add(pid)
    return mine


def alive(pid: int) -> bool:
    """True while the process runs; a zombie waiting for its reaper counts as ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@dataclass
class Harvest:
    """One read of a page through `read_target`: the run, its record rows or its error, and the
    Chromium processes seen while the page was open."""

    run: Run
    rows: list[dict[str, object]]
    error: BaseException | None
    processes: set[int]
    spool: SpoolFile | None


def page_settings(
    folder: Path, url: str, limits: str = "", ready_function: str = "window.ready === true"
) -> Settings:
    ready = f"[targets.ready]\nfunction = {json.dumps(ready_function)}\n"
    return load_settings(write_config(folder, url=url, extra=ready + "[targets.limits]\n" + limits))


def harvest(
    folder: Path, url: str, limits: str = "", ready_function: str = "window.ready === true"
) -> Harvest:
    """Read `url` once as target "app" with the given `[targets.limits]` lines."""
    settings = page_settings(folder, url, limits, ready_function)
    target = settings.target("app")
    processes: set[int] = set()

    @asynccontextmanager
    async def watched() -> AsyncIterator[tuple[str, PageReader]]:
        async with open_reader(settings, target) as (origin, reader):
            processes.update(chromium_processes())
            yield origin, reader

    with StateDB.open(settings.state.dir) as state:
        run_id = state.start_run(target.name)
        spool: SpoolFile | None = None
        error: BaseException | None = None
        try:
            spool = asyncio.run(
                read_target(
                    settings=settings, target=target, state=state, run_id=run_id, opener=watched
                )
            )
        except Exception as exc:  # the test looks at it
            error = exc
        run = state.get_run(run_id)
    assert run is not None
    # The record rows: what a page's data became (its schema rows are the schema tests' own).
    rows = [r for r in read_rows(spool.path) if r["op"] in RECORD_OPS] if spool is not None else []
    return Harvest(run, rows, error, processes, spool)
