"""`harvester watch URL`: open a page and print each IndexedDB change as the app makes it.

For QA ("what did that click store?"): no config, no Flink. The page's stores are read once as
the baseline into a state DB of its own (a temporary folder unless `--state`); then every burst
of Chromium's change events (`harvester.watch`) reads only the stores it named, on the same open
page, through the harvest's own read and commit, and the run's rows are printed. A read that
names only some stores narrows the target's `stores` globs to exactly those, so `-D` is only
ever emitted for a store that was read. `--click SELECTOR` clicks, in order, once the baseline is
read, through the same step runner as `targets.auth.steps`: a scripted "what does this button
store?".
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harvester.browser import TargetSession, open_target, run_steps
from harvester.commands._watch_output import ChangePrinter
from harvester.config import AuthStep, LogSettings, Settings, TargetSettings, parse_duration
from harvester.errors import HarvesterError, UsageError
from harvester.harvest import commit, narrowed, read_target, reader_on
from harvester.lock import StateLock
from harvester.logs import setup_logging
from harvester.reader import chosen, selected
from harvester.state import StateDB
from harvester.watch import Batch, Watcher

TARGET = "watch"
Say = Callable[[str], None]


def _duration(text: str) -> timedelta:
    value = parse_duration(text)
    if value is None or value < timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 250ms, 2s or 1m")
    return value


# The timing options: (option, default, what it is).
_TIMINGS = (
    ("--debounce", "250ms", "quiet time after the last change event before reading"),
    ("--max-delay", "2s", "read at the latest this long after the first event of a burst"),
    ("--timeout", "30s", "how long loading the page, its becoming ready and each --click may take"),
)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    help = "open a page and print each IndexedDB change as it happens (no config, no Flink)"
    parser = subparsers.add_parser(
        "watch",
        help=help,
        description=f"{help}. The stores are read once as the baseline; then each change the "
        "page, its workers or its other tabs make is printed: `+I/+U/-D  db/store  key  "
        "field: old → new`. --click clicks selectors once the baseline is read. Ctrl-C ends it "
        "(exit 0). Exits 2 on a bad URL, a missing Chromium, a page that never became ready or "
        "a --click selector that matched nothing clickable within --timeout.",
    )
    parser.add_argument("url", metavar="URL", help="the page to open (http or https)")
    parser.add_argument(
        "--headed", action="store_true", help="show the browser window, to click through the app"
    )
    parser.add_argument(
        "--ready",
        metavar="JS",
        help="a JavaScript expression (or function) that must become truthy before the "
        "baseline is read, as targets.ready.function",
    )
    parser.add_argument(
        "--stores",
        metavar="GLOB",
        action="append",
        help='a glob of "db/store" names to watch (repeatable; default: every store)',
    )
    parser.add_argument(
        "--click",
        metavar="SELECTOR",
        action="append",
        default=[],
        help="once the baseline is read, click the element this CSS selector matches "
        "(repeatable: clicked in order; each waits up to --timeout to be clickable)",
    )
    parser.add_argument(
        "--out", metavar="FILE", type=Path, help="also write each change to FILE as a JSON line"
    )
    parser.add_argument(
        "--state",
        metavar="DIR",
        type=Path,
        help="keep the state DB in DIR (default: a temporary folder, removed at exit)",
    )
    for option, default, help_text in _TIMINGS:
        parser.add_argument(
            option,
            metavar="TIME",
            type=_duration,
            default=parse_duration(default),
            help=f"{help_text} (default {default})",
        )
    parser.set_defaults(func=run)


def _target(args: argparse.Namespace) -> TargetSettings:
    try:
        return TargetSettings.model_validate(
            {
                "name": TARGET,
                "url": args.url,
                # Never scheduled: watch reads on events only.
                "schedule": "1h",
                "stores": args.stores or ["*"],
                "ready": {"function": args.ready},
                "limits": {"page_timeout": args.timeout},
            }
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise UsageError(problems) from None


class _Session:
    """The watch of one open page: its reads, what they printed, what is still owed."""

    def __init__(
        self,
        settings: Settings,
        state: StateDB,
        page: TargetSession,
        printer: ChangePrinter,
        say: Say,
    ) -> None:
        self.settings = settings
        self.target = settings.targets[0]
        self.state = state
        self.page = page
        self.printer = printer
        self.say = say
        # Stores of a read that failed, read again with the next batch (None: every store).
        self.owed: set[tuple[str, str]] | None = set()

    def _chooses(self, db: str) -> bool:
        return selected(db, self.target.databases)

    async def read(self, batch: Batch | None) -> int:
        """One run: every store (the baseline, a failed schema read owed), or the batch's stores
        and databases (`Batch.databases`: came, went or changed version); the changes it
        printed."""
        everything = batch is None or self.owed is None
        stores = frozenset() if batch is None else batch.stores | (self.owed or set())
        databases = [] if batch is None else [d for d in batch.databases if self._chooses(d)]
        target = self.target if everything else narrowed(self.target, stores, databases)
        run_id = await asyncio.to_thread(
            functools.partial(
                self.state.start_run,
                self.target.name,
                trigger=None if batch is None else "event",
                events=None if batch is None else batch.events,
            )
        )
        try:
            spool = await read_target(
                settings=self.settings,
                target=target,
                state=self.state,
                run_id=run_id,
                opener=lambda: reader_on(self.page, target),
            )
            printed = 0 if batch is None else await asyncio.to_thread(self.printer.spool, spool)
            await asyncio.to_thread(functools.partial(commit, self.state, spool, delivered=True))
        except HarvesterError as exc:
            if batch is None:
                raise
            self.owed = None if everything or databases else set(stores)
            self.say(f"reading the changed stores failed: {exc}; the next change reads them again")
            return 0
        self.owed = set()
        return printed


def _quiet_once_stopping(main: asyncio.Task[Any] | None) -> None:
    """Drop what asyncio reports as unhandled once `main` is cancelled (Ctrl-C) or done."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Ctrl-C's cancel can land between a to_thread result's check and its set_result
        # (CPython's InvalidStateError), and the calls the dying Playwright driver left unanswered
        # fail unread: reported as errors, though the watch is only stopping.
        if main is not None and (main.cancelling() or main.done()):
            return
        loop.default_exception_handler(context)

    asyncio.get_running_loop().set_exception_handler(handle)


async def _watch(
    settings: Settings,
    state: StateDB,
    printer: ChangePrinter,
    say: Say,
    *,
    debounce: timedelta,
    max_delay: timedelta,
    clicks: Sequence[str] = (),
) -> None:
    target = settings.targets[0]
    timeout_ms = target.limits.page_timeout.total_seconds() * 1000
    _quiet_once_stopping(asyncio.current_task())
    async with open_target(target, settings.browser) as page:
        session = _Session(settings, state, page, printer, say)
        watcher = Watcher(
            debounce=debounce.total_seconds(),
            max_delay=max_delay.total_seconds(),
            accept=chosen(session.target.databases, session.target.stores),
        )
        # Attached before the baseline: a write while it is read comes as the first batch.
        await watcher.attach(page.page)
        try:
            await session.read(None)
            say(f"watching {page.origin} (Ctrl-C to stop)")
            # Before the first batch is taken: the watcher queues the clicks' events meanwhile.
            for selector in clicks:
                step = AuthStep.model_validate({"action": "click", "selector": selector})
                await run_steps(page.page, [(f"--click {selector!r}", step)], timeout_ms)
                say(f"clicked {selector}")
            while True:
                await session.read(await watcher.next_batch())
        except asyncio.CancelledError:
            # Ctrl-C: in a terminal it reaches Playwright's driver too, which dies at once, so
            # closing the browser through it fails, with nothing left for the user to do.
            logging.getLogger("harvester.browser").setLevel(logging.ERROR)
            raise
        finally:
            await watcher.close()


def run(args: argparse.Namespace) -> int:
    # Only problems are logged: the changes themselves are the output.
    setup_logging(LogSettings.model_validate({"level": "warning"}))
    target = _target(args)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    temporary = args.state is None
    state_dir = Path(tempfile.mkdtemp(prefix="harvester-watch-")) if temporary else args.state
    try:
        settings = Settings.model_validate(
            {
                "state": {"dir": state_dir.resolve(), "data_dir": state_dir.resolve() / "data"},
                "browser": {"headless": not args.headed},
                "targets": [target],
            }
        )
        state_dir.mkdir(parents=True, exist_ok=True)
        with (
            StateLock(state_dir),
            StateDB.open(state_dir) as state,
            ChangePrinter(sys.stdout, args.out) as printer,
        ):
            try:
                asyncio.run(
                    _watch(
                        settings,
                        state,
                        printer,
                        say,
                        debounce=args.debounce,
                        max_delay=args.max_delay,
                        clicks=args.click,
                    )
                )
            except KeyboardInterrupt:
                # Ctrl-C is how a watch ends: the page and the browser are closed by now.
                say("stopped")
    finally:
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0
