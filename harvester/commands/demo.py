"""`harvester demo`: serve the bundled demo site and harvest it end to end through Flink."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
from pathlib import Path

from flink_jobs.debezium import upsert_table
from harvester.commands._once import harvest_once
from harvester.config import Settings, load_settings, secret_values
from harvester.demo import DEFAULT_PORT, serve_demo
from harvester.errors import UsageError
from harvester.logs import setup_logging
from harvester.state import state_db_path

DEMO_CONFIG = Path("config/demo.toml")
DEMO_TARGET = "demo"
# The debezium-json sink of the aggregate in config/demo.toml, under state.data_dir.
ORDERS_BY_STATUS = "orders_by_status"


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    summary = "serve the bundled demo app and harvest it end to end"
    parser = subparsers.add_parser(
        "demo",
        parents=[common],
        help=summary,
        description=f"{summary} (config: --config, default {DEMO_CONFIG}, target "
        f"`{DEMO_TARGET}`). Run it twice: the second harvest shows what the app changed.",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="only serve the demo app on 127.0.0.1 until Ctrl-C",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"port to serve on (default {DEFAULT_PORT}; keep it stable, as IndexedDB's origin "
        "includes the port; 0 picks a free one)",
    )
    parser.add_argument(
        "--sink",
        metavar="SINK",
        help="where the changes go: `flink` (default) or `jsonl[:DIR]`, as for `harvest`",
    )
    parser.set_defaults(func=run)


def _demo_settings(config: str | None, url: str) -> Settings:
    path = Path(config) if config else DEMO_CONFIG
    if not path.is_file():
        raise UsageError(
            f"no demo config at {path}: run from the repository root or give --config "
            "(the demo target must be named `demo`)"
        )
    settings = load_settings(path)
    target = settings.target(DEMO_TARGET)
    # The served port wins over the config's URL, so `--port` keeps working.
    target.url = url
    return settings


def _program() -> str:
    """How to call this harvester again: `harvester` if that is the one on PATH."""
    here = Path(sys.argv[0]).resolve()
    found = shutil.which("harvester")
    if found and Path(found).resolve() == here:
        return "harvester"
    if here.name == "harvester":
        return os.path.relpath(here) if here.is_relative_to(Path.cwd()) else str(here)
    return f"{os.path.relpath(sys.executable)} -m harvester"


def _print_next_steps(settings: Settings, config: str) -> None:
    data = settings.state.data_dir
    program = _program()
    print(
        f"\noutputs:\n"
        f"  changes (JSON lines, by target and date): {data / 'changes'}\n"
        f"  counts per run and store:                 {data / 'run_stats'}\n"
        f"  state DB (runs, snapshot, history):       {state_db_path(settings.state.dir)}\n"
        f"inspect them:\n"
        f"  {program} runs --config {config}\n"
        f"  {program} stores --config {config}\n"
        f"  {program} diff --target {DEMO_TARGET} --last 2 --config {config}\n"
        f"  {program} report --out report.html --config {config}\n"
        f"run `make demo` again to see what the app changed since this harvest.",
        flush=True,
    )


def _print_aggregate(settings: Settings) -> None:
    """The demo config's Flink SQL aggregate, as its debezium-json sink holds it now."""
    folder = settings.state.data_dir / ORDERS_BY_STATUS
    if not folder.is_dir():
        return
    table = upsert_table(folder, ("status",))
    print(
        "\norders per status: Flink SQL over `changes` (config/demo.toml), its state kept across "
        "harvests by the continuous job",
        flush=True,
    )
    for (status,), row in sorted(table.items(), key=lambda item: str(item[0][0])):
        print(f"  {status!s:<12} {row['orders']:>6}", flush=True)


def run(args: argparse.Namespace) -> int:
    with serve_demo(args.port) as server:
        print(f"demo app: {server.url}", flush=True)
        if args.serve:
            print("serving until Ctrl-C", flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                # Ctrl-C is how a served demo ends, not an error.
                print("stopped", flush=True)
            return 0
        settings = _demo_settings(args.config, server.url)
        setup_logging(settings.log, secret_values(settings))
        code = harvest_once(
            settings, [settings.target(DEMO_TARGET)], sink_spec=args.sink, full=False
        )
    if args.sink in (None, "flink"):
        _print_aggregate(settings)
    _print_next_steps(settings, args.config or str(DEMO_CONFIG))
    return code
