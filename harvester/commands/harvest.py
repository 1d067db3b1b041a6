"""`harvester harvest`: harvest targets once now and forward their changes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flink_jobs.forwarder import FlinkForwarder
from harvester.errors import UsageError
from harvester.harvest import RunSummary, describe, harvest_target, recover
from harvester.lock import StateLock
from harvester.logs import setup_logging
from harvester.settings import Settings, TargetSettings, load_settings, secret_values
from harvester.sinks import ChangeSink, JsonLinesSink
from harvester.state import StateDB

DEFAULT_JSONL = "changes-jsonl"


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    help = "harvest targets once now and forward their changes"
    parser = subparsers.add_parser(
        "harvest",
        parents=[common],
        help=help,
        description=(
            f"{help}. Pending runs of earlier harvests are sent first. Exits 0 when every run "
            "was committed with every store read whole, 1 otherwise, 2 on bad arguments or "
            "when another process owns the state folder."
        ),
    )
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="target names from the config")
    parser.add_argument("--all", action="store_true", help="harvest every enabled target")
    parser.add_argument(
        "--full",
        action="store_true",
        help="send every record again as +I (a re-snapshot; -D still for records gone); "
        "the diff state stays exact",
    )
    parser.add_argument(
        "--sink",
        metavar="SINK",
        help=f"where the changes go: `flink` (the default: the pipeline of the config's "
        f"[flink] section), or `jsonl[:DIR]` (JSON lines appended to DIR/changes.jsonl; DIR "
        f"defaults to <state.data_dir>/{DEFAULT_JSONL}; no Java needed)",
    )
    parser.set_defaults(func=run)


def make_sink(spec: str | None, settings: Settings) -> tuple[ChangeSink, str]:
    """The sink named by `--sink` (default: Flink), and a description of where changes go.

    The caller closes a `FlinkForwarder` (it owns a worker process) when done. Broken
    `flink.statements` raise `ConfigError` here, before any harvest.
    """
    if spec is None or spec == "flink":
        forwarder = FlinkForwarder(settings)
        try:
            forwarder.runner.validate()
        except BaseException:
            forwarder.close()
            raise
        return forwarder, f"Flink ({settings.flink.mode})"
    if spec == "jsonl" or spec.startswith("jsonl:"):
        rest = spec.partition(":")[2]
        directory = Path(rest).resolve() if rest else settings.state.data_dir / DEFAULT_JSONL
        sink = JsonLinesSink(directory)
        return sink, f"JSON lines in {sink.path}"
    raise UsageError(f"--sink {spec!r}: expected `flink`, `jsonl` or `jsonl:DIR`")


def _targets(args: argparse.Namespace, settings: Settings) -> list[TargetSettings]:
    if args.all and args.targets:
        raise UsageError("give target names or --all, not both")
    if args.all:
        targets = [target for target in settings.targets if target.enabled]
        if not targets:
            raise UsageError("--all: the config has no enabled targets")
        return targets
    if not args.targets:
        raise UsageError("name at least one target, or give --all")
    return [settings.target(name) for name in dict.fromkeys(args.targets)]


async def _harvest_all(
    settings: Settings,
    targets: list[TargetSettings],
    state: StateDB,
    sink: ChangeSink,
    *,
    full: bool,
) -> tuple[list[RunSummary], dict[str, str]]:
    summaries: list[RunSummary] = []
    unsent: dict[str, str] = {}
    for target in targets:
        try:
            summaries.append(
                await harvest_target(
                    settings=settings, target=target, state=state, sink=sink, full=full
                )
            )
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


def harvest_once(
    settings: Settings, targets: list[TargetSettings], *, sink_spec: str | None, full: bool
) -> int:
    """Recover pending runs, harvest `targets` once, print the summary; the exit code."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    with (
        StateLock(settings.state.dir),
        StateDB.open(
            settings.state.dir,
            keep_runs=settings.state.keep_runs,
            secrets=secret_values(settings),
        ) as state,
        contextlib.ExitStack() as closing,
    ):
        sink, where = make_sink(sink_spec, settings)
        if isinstance(sink, FlinkForwarder):
            closing.enter_context(sink)
        err.print(f"changes go to {where}")
        recovery = recover(state, sink)
        for run_id in recovery.died:
            err.print(f"run {run_id}: its process died during the read; marked failed")
        for run_id in recovery.sent:
            err.print(f"run {run_id}: pending from an earlier harvest; sent and committed")
        for run_id in recovery.lost:
            err.print(f"run {run_id}: its spool file is gone; its changes come with the next run")
        for run_id, reason in recovery.unsent.items():
            err.print(f"run {run_id}: still pending, sending failed: {reason}")
        summaries, unsent = asyncio.run(_harvest_all(settings, targets, state, sink, full=full))
    Console(file=sys.stdout, width=160).print(_table(summaries))
    for name, reason in unsent.items():
        err.print(f"target {name}: not harvested, an earlier run could not be sent: {reason}")
    ok = not unsent and all(
        s.run.status == "committed" and s.run.incomplete_stores == 0 and not s.run.problems
        for s in summaries
    )
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config) if args.config else None)
    setup_logging(settings.log, secret_values(settings))
    return harvest_once(settings, _targets(args, settings), sink_spec=args.sink, full=args.full)
