"""One harvest of some targets now, with its summary table (shared by `harvest` and `demo`)."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from harvester.commands._progress import Phases
from harvester.commands._sinks import make_sink
from harvester.config import secret_values
from harvester.delivery import Tracker
from harvester.errors import ConfigError
from harvester.harvest import RunSummary, describe, harvest_target, recover
from harvester.interrupts import Interrupts
from harvester.lock import StateLock
from harvester.state import StateDB

if TYPE_CHECKING:
    from harvester.config import Settings, TargetSettings
    from harvester.sinks import ChangeSink


async def _harvest_all(
    settings: Settings,
    targets: list[TargetSettings],
    state: StateDB,
    sink: ChangeSink,
    *,
    full: bool,
    phases: Phases,
) -> tuple[list[RunSummary], dict[str, str]]:
    summaries: list[RunSummary] = []
    unsent: dict[str, str] = {}
    with phases.interrupts.watching():
        for target in targets:
            if phases.interrupts.stop_requested:
                break
            try:
                summaries.append(
                    await harvest_target(
                        settings=settings,
                        target=target,
                        state=state,
                        sink=sink,
                        full=full,
                        progress=phases,
                    )
                )
            except ConfigError:
                raise
            except Exception as exc:
                # Only an earlier run that still cannot be sent lands here; no new run was read.
                unsent[target.name] = describe(exc)
    return summaries, unsent


def _table(summaries: list[RunSummary]) -> Table:
    table = Table(title="harvest", title_justify="left")
    for column in ("target", "store", "+I", "+U", "-D", "unchanged", "time", "status"):
        numeric = column in {"+I", "+U", "-D", "unchanged", "time"}
        table.add_column(column, justify="right" if numeric else "left")
    for summary in summaries:
        run = summary.run
        for store in summary.stores:
            note = "read whole" if store.complete else "INCOMPLETE: no -D"
            if store.problems:
                note += f" ({store.problems[0]['message']})"
            table.add_row(
                run.target,
                f"{store.db}/{store.store}",
                str(store.inserted),
                str(store.updated),
                str(store.deleted),
                str(store.unchanged),
                f"{store.seconds:.1f}s",
                note,
            )
        took = (run.finished_at or run.read_at or run.started_at) - run.started_at
        status = run.status if run.error is None else f"{run.status}: {run.error}"
        for problem in run.problems:
            status += f"; {problem['db']}: {problem['message']}"
        table.add_row(
            run.target,
            f"[bold]run {run.id}[/bold]",
            str(run.inserted),
            str(run.updated),
            str(run.deleted),
            str(run.unchanged),
            f"{took.total_seconds():.1f}s",
            status,
            end_section=True,
        )
    return table


def _wait_delivered(settings: Settings, state: StateDB, sink: ChangeSink, phases: Phases) -> bool:
    """For a sink with a log: wait until its consumer has taken every handed-off run (at most
    `flink.max_lag`), so that the command ends with its rows processed; False if it did not."""
    if sink.changelog is None:
        return True
    tracker = Tracker(state, sink, retention=settings.flink.log_retention)
    if not state.undelivered():
        return True
    phases.say("waiting for the Flink job (started with the command) to consume the runs …")
    try:
        waited = tracker.wait(sink, settings.flink.max_lag.total_seconds())
        if not waited.waiting:
            sink.flush(settings.flink.max_lag.total_seconds())
            phases.say("Flink consumed every run; its sinks committed them")
            return True
    except KeyboardInterrupt:
        phases.say(
            "interrupted: the runs are committed and stay in the log; "
            "the pipeline takes them when it next runs"
        )
        raise
    phases.say(
        f"{len(waited.waiting)} run(s) are in the log ({sink.changelog.folder}) but Flink has "
        f"not consumed them within flink.max_lag: {waited.problem or 'no error reported'}. "
        "They are committed and stay in the log: the pipeline takes them when it next runs."
    )
    return False


def harvest_once(
    settings: Settings, targets: list[TargetSettings], *, sink_spec: str | None, full: bool
) -> int:
    """Recover pending runs, harvest `targets` once, print the summary; the exit code."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    interrupts = Interrupts(lambda text: err.print(text, markup=False))
    with (
        interrupts,
        Phases(err, interrupts) as phases,
        StateLock(settings.state.dir),
        StateDB.open(
            settings.state.dir,
            keep_runs=settings.state.keep_runs,
            keep_failed_runs=settings.state.keep_failed_runs,
            secrets=secret_values(settings),
        ) as state,
        make_sink(sink_spec, settings) as sink,
    ):
        # Flink's worker (a JVM) warms up while the pending runs are sent and the pages read.
        sink.start()
        phases.say(f"changes go to {sink.description}")
        recovery = recover(state, sink)
        for run_id in recovery.died:
            err.print(f"run {run_id}: its process died during the read; marked failed")
        for run_id in recovery.sent:
            err.print(f"run {run_id}: pending from an earlier harvest; sent and committed")
        for run_id in recovery.lost:
            err.print(f"run {run_id}: its spool file is gone; its changes come with the next run")
        for run_id, reason in recovery.unsent.items():
            err.print(f"run {run_id}: still pending, sending failed: {reason}")
        for run_id, reason in recovery.quarantined.items():
            err.print(f"run {run_id}: not sent, {reason}")
        try:
            summaries, unsent = asyncio.run(
                _harvest_all(settings, targets, state, sink, full=full, phases=phases)
            )
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None
        # A broken flink.statements found while the reads ran: exit 2, nothing was sent.
        sink.checked()
        stopped = interrupts.stop_requested
        delivered = stopped or _wait_delivered(settings, state, sink, phases)
        phases.say(f"done in {phases.elapsed():.1f}s")
    Console(file=sys.stdout, width=160).print(_table(summaries))
    for name, reason in unsent.items():
        err.print(f"target {name}: not harvested, an earlier run could not be sent: {reason}")
    if stopped:
        err.print("interrupted: stopped after committing the run that was being sent")
        return 130
    ok = (
        delivered
        and not unsent
        and all(
            s.run.status == "committed" and s.run.incomplete_stores == 0 and not s.run.problems
            for s in summaries
        )
    )
    return 0 if ok else 1
