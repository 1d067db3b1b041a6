"""`harvester dump`: read a page's IndexedDB and write it as JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from harvester.browser import open_target
from harvester.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    Settings,
    TargetSettings,
    load_settings,
)
from harvester.errors import UsageError
from harvester.reader import DatabaseSchema, OriginReader, Problem, StoreSchema

HELP = "read a page's IndexedDB and write it as JSON lines"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not above 0")
    return value


def _not_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "dump",
        parents=[common],
        help=HELP,
        description=(
            f"{HELP}: one line per record, "
            '{"origin", "db", "db_version", "store", "key", "value"}, key and value as typed JSON '
            "(docs/typed-json.md), in key order; a summary goes to stderr. Exits 0 when "
            "everything was read, 1 when some database, store or value could not be (the rest "
            "is still written), 2 on bad arguments or a page that cannot be reached."
        ),
    )
    parser.add_argument("url", nargs="?", metavar="URL", help="the page to open")
    parser.add_argument("--target", metavar="NAME", help="open this target of the config instead")
    parser.add_argument(
        "--db",
        action="append",
        metavar="GLOB",
        help="database names to read (a glob; repeat for more; default: all)",
    )
    parser.add_argument(
        "--store",
        action="append",
        metavar="DB/STORE",
        help='stores to read, as "db/store" globs, e.g. "shop/order*" (repeat for more; '
        "default: all)",
    )
    parser.add_argument("--wait-for-selector", metavar="CSS", help="wait until this appears")
    parser.add_argument(
        "--wait-for-function", metavar="JS", help="wait until this JavaScript is truthy"
    )
    parser.add_argument(
        "--settle-ms", type=_not_negative, metavar="MS", help="then wait this much longer"
    )
    parser.add_argument("--out", type=Path, metavar="FILE", help="write here (default: stdout)")
    parser.add_argument(
        "--schema",
        action="store_true",
        help="print only the databases, stores, key paths, indexes and counts (JSON)",
    )
    parser.add_argument(
        "--batch-size", type=_positive, metavar="N", help="records per page call (default 10000)"
    )
    parser.add_argument(
        "--consistency",
        choices=["batched", "snapshot"],
        help="batched: a read transaction per batch (default); snapshot: one per store",
    )
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> Settings:
    explicit = args.config is not None or bool(os.environ.get(CONFIG_ENV))
    if args.target is not None or explicit or DEFAULT_CONFIG.exists():
        return load_settings(Path(args.config) if args.config else None)
    # `dump URL` needs no config: without one, the defaults.
    return Settings.model_validate({}, context={"base_dir": Path.cwd()})


def _target(args: argparse.Namespace, settings: Settings) -> TargetSettings:
    if (args.url is None) == (args.target is None):
        raise UsageError("give a URL or --target NAME (one of the two)")
    if args.target is not None:
        base = settings.target(args.target)
    else:
        try:
            base = TargetSettings.model_validate(
                {"name": "dump", "url": args.url, "schedule": "1h"},
                context={"base_dir": Path.cwd()},
            )
        except ValidationError as exc:
            raise UsageError(f"URL {args.url!r}: {exc.errors()[0]['msg']}") from None
    ready: dict[str, Any] = {}
    if args.wait_for_selector is not None:
        ready["selector"] = args.wait_for_selector
    if args.wait_for_function is not None:
        ready["function"] = args.wait_for_function
    if args.settle_ms is not None:
        ready["settle"] = timedelta(milliseconds=args.settle_ms)
    limits: dict[str, Any] = {}
    if args.batch_size is not None:
        limits["batch_size"] = args.batch_size
    if args.consistency is not None:
        limits["consistency"] = args.consistency
    update: dict[str, Any] = {
        "ready": base.ready.model_copy(update=ready),
        "limits": base.limits.model_copy(update=limits),
    }
    if args.db:
        update["databases"] = args.db
    if args.store:
        update["stores"] = args.store
    return base.model_copy(update=update)


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    target = _target(args, settings)
    with _output(args.out) as out:
        try:
            return asyncio.run(_dump(target, settings, out, schema_only=args.schema))
        except BrokenPipeError:
            # The reader of stdout went away (`| head`): not an error of ours.
            _silence_stdout()
            return 0


@contextmanager
def _output(path: Path | None) -> Iterator[BinaryIO]:
    if path is None:
        yield sys.stdout.buffer
        return
    try:
        file = path.open("wb")
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write: {exc.strerror}") from None
    with file:
        yield file


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@dataclass
class _StoreSummary:
    store: StoreSchema
    records: int = 0
    bytes: int = 0
    seconds: float = 0.0
    complete: bool = False
    problems: list[Problem] = field(default_factory=list)


async def _dump(
    target: TargetSettings, settings: Settings, out: BinaryIO, *, schema_only: bool
) -> int:
    console = Console(stderr=True)
    started = time.perf_counter()
    async with open_target(target, settings.browser) as session:
        reader = OriginReader(
            session.page,
            limits=target.limits,
            databases=target.databases,
            stores=target.stores,
            compress=session.remote,
        )
        try:
            databases = await reader.schema()
            problems = list(reader.problems)
            if schema_only:
                _write_schema(databases, out)
                summaries: list[_StoreSummary] = []
            else:
                summaries = await _write_records(reader, databases, session.origin, out, console)
                for summary in summaries:
                    problems.extend(summary.problems)
        finally:
            await reader.close()
    out.flush()
    _summarize(console, session.origin, summaries, problems, time.perf_counter() - started)
    failed = bool(problems) or any(not s.complete for s in summaries)
    return 1 if failed else 0


def _write_schema(databases: list[DatabaseSchema], out: BinaryIO) -> None:
    listed = [
        {
            "name": db.name,
            "version": db.version,
            "stores": [
                {
                    "name": s.name,
                    "key_path": s.key_path,
                    "auto_increment": s.auto_increment,
                    "count": s.count,
                    "indexes": [asdict(index) for index in s.indexes],
                }
                for s in db.stores
            ],
        }
        for db in databases
    ]
    out.write(json.dumps(listed, indent=2).encode() + b"\n")


def _progress(console: Console) -> Progress | nullcontext[None]:
    if not console.is_terminal:
        return nullcontext()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    )


async def _write_records(
    reader: OriginReader,
    databases: list[DatabaseSchema],
    origin: str,
    out: BinaryIO,
    console: Console,
) -> list[_StoreSummary]:
    summaries: list[_StoreSummary] = []
    with _progress(console) as progress:
        for db in databases:
            for store in db.stores:
                summary = _StoreSummary(store)
                task = (
                    progress.add_task(escape(f"{db.name}/{store.name}"), total=store.count, rate="")
                    if progress is not None
                    else None
                )
                # The key and value texts go out as they came: typed JSON, never decoded here.
                prefix = (
                    f'{{"origin":{json.dumps(origin)},"db":{json.dumps(db.name)},'
                    f'"db_version":{db.version},"store":{json.dumps(store.name)},"key":'
                )
                start = time.perf_counter()
                read = reader.read_store(store)
                async for batch in read:
                    if batch:
                        lines = [f'{prefix}{r.key},"value":{r.value}}}\n' for r in batch]
                        out.write("".join(lines).encode())
                    if progress is not None and task is not None:
                        rate = read.records / max(time.perf_counter() - start, 1e-9)
                        progress.update(task, completed=read.records, rate=f"{rate:,.0f}/s")
                summary.seconds = time.perf_counter() - start
                summary.records, summary.bytes = read.records, read.bytes
                summary.complete, summary.problems = read.complete, read.problems
                summaries.append(summary)
    return summaries


def _summarize(
    console: Console,
    origin: str,
    summaries: list[_StoreSummary],
    problems: list[Problem],
    seconds: float,
) -> None:
    if summaries:
        table = Table(title=Text(f"dump of {origin}"), title_justify="left")
        for column in ("store", "records", "bytes", "time", "read"):
            table.add_column(column, justify="left" if column in ("store", "read") else "right")
        for s in summaries:
            table.add_row(
                Text(f"{s.store.db}/{s.store.name}"),
                f"{s.records:,}",
                f"{s.bytes:,}",
                f"{s.seconds:.2f}s",
                "whole" if s.complete else "INCOMPLETE",
            )
        console.print(table)
        total = sum(s.records for s in summaries)
        console.print(f"{total:,} records from {len(summaries)} stores in {seconds:.1f}s")
    for p in problems:
        where = "/".join(part for part in (p.db, p.store) if part is not None)
        key = f" key {p.key}" if p.key is not None else ""
        console.print(f"problem: {where}{key}: {p.message}", markup=False, highlight=False)
