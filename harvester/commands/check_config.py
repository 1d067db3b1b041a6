"""`harvester check-config`: validate the config and print it with secrets masked."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from flink_jobs.statements import validate_statements
from harvester.browser import ready_expression
from harvester.config import Settings, load_settings, secret_values, to_toml
from harvester.config.problems import format_problem
from harvester.errors import ConfigError, folder_problem
from harvester.redaction import Redactor

# Compiles (never runs) each text of a JSON list read from stdin as a script, the way Chromium's
# `Runtime.evaluate` takes it, and writes a JSON list: null, or the SyntaxError's message.
_COMPILE_JS = """
const vm = require("vm");
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const results = JSON.parse(input).map((code) => {
    try {
      new vm.Script(code, { filename: "ready.function" });
      return null;
    } catch (error) {
      return String((error && error.message) || error);
    }
  });
  process.stdout.write(JSON.stringify(results));
});
"""
_COMPILE_TIMEOUT_S = 30
_QUOTED = re.compile(r"\s*'[^']*'")


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    help = "validate the config and print it with secrets masked"
    parser = subparsers.add_parser("check-config", parents=[common], help=help, description=help)
    parser.add_argument(
        "--format",
        choices=("toml", "json"),
        default="toml",
        help="how to print the effective config (default: toml)",
    )
    parser.add_argument(
        "--no-flink",
        action="store_true",
        help="skip having Flink parse and plan `flink.statements` (which starts a JVM)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the effective config; a bad one, a `ready.function` that does not compile, or a
    `flink.statements` entry that Flink cannot parse or plan, raises ConfigError (exit 2, one
    line per problem), and so does a folder the harvester writes that it cannot make or write.
    Notes that do not fail the check go to stderr."""
    settings = load_settings(Path(args.config) if args.config else None)
    problems = folder_problems(settings) + ready_function_problems(settings)
    if not args.no_flink:
        try:
            validate_statements(settings)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    for note in notes(settings):
        print(f"note: {note}", file=sys.stderr)
    data = settings.masked_dump()
    if args.format == "json":
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        # A comment keeps the output valid TOML, so it can be saved and edited.
        print(f"# effective config of {settings.config_path}, secrets masked")
        print(to_toml(data), end="")
    return 0


def notes(settings: Settings) -> list[str]:
    """What a valid config may still surprise its user with, one line each."""
    return [
        f"targets[{i}] ({target.name}): no auth.profile_dir or auth.storage_state, so every "
        "harvest starts from an empty IndexedDB (what the page stores on a first visit)"
        for i, target in enumerate(settings.targets)
        if target.auth.profile_dir is None and target.auth.storage_state is None
    ]


def folder_problems(settings: Settings) -> list[str]:
    """A problem line per folder the harvester writes (the Flink log and checkpoints too, with
    continuous delivery) that cannot be made or written."""
    folders: list[tuple[tuple[str, str], Path | None]] = [
        (("state", "dir"), settings.state.dir),
        (("state", "data_dir"), settings.state.data_dir),
    ]
    if settings.flink.delivery == "continuous":
        folders += [
            (("flink", "log_dir"), settings.flink.log_dir),
            (("flink", "checkpoint_dir"), settings.flink.checkpoint_dir),
        ]
    source = str(settings.config_path or "config")
    problems: list[str] = []
    failed: list[Path] = []
    for loc, folder in folders:
        # The Flink folders default to inside state.dir: its problem is theirs, said once.
        if folder is None or any(folder.is_relative_to(bad) for bad in failed):
            continue
        problem = _unwritable(folder)
        if problem is not None:
            failed.append(folder)
            expected = "a folder this user can make and write"
            problems.append(format_problem(source, loc, f"{folder} {problem}", expected))
    return problems


def _unwritable(folder: Path) -> str | None:
    """Why `folder` cannot be made or written (a probe file in it is written, synced and
    removed), or None.

    The folders made for the probe are removed again: a check run as another user (root, in a
    deploy script) would otherwise leave folders the harvester's own user cannot write.
    """
    made = [path for path in (folder, *folder.parents) if not os.path.lexists(path)]
    probe = folder / f".check-config-{os.getpid()}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with probe.open("xb") as file:
            # A byte, synced: a full disk may take an empty file but no block.
            file.write(b"\n")
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        return folder_problem(folder, exc, probe)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
        for path in made:
            with contextlib.suppress(OSError):
                path.rmdir()
    return None


def ready_function_problems(settings: Settings) -> list[str]:
    """A problem line per `targets[i].ready.function` that is no valid JavaScript.

    Compiled by Node.js: the one Playwright runs its driver with (so it is there wherever the
    harvester can start Chromium), else `node` on PATH. Starting Chromium to compile instead
    would cost about a second. Without Node.js, a note says the functions were not checked.
    """
    found = [(i, t.ready.function) for i, t in enumerate(settings.targets) if t.ready.function]
    if not found:
        return []
    messages = _compile([ready_expression(function) for _i, function in found])
    if messages is None:
        return []
    source = str(settings.config_path or "config")
    secrets = secret_values(settings)
    redactor = Redactor(secrets)
    problems = []
    for (i, function), message in zip(found, messages, strict=True):
        if message is None:
            continue
        if any(secret in function for secret in secrets):
            # V8 quotes the token it stopped at, which may be a piece of a `${secret:…}`.
            message = _QUOTED.sub("", message)
        problems.append(
            format_problem(
                source,
                ("targets", i, "ready", "function"),
                f"JavaScript syntax error: {redactor.redact(message)}",
                "a JavaScript expression or function",
            )
        )
    return problems


def _compile(scripts: list[str]) -> list[str | None] | None:
    """The SyntaxError message of each script (None: it compiles); None when Node.js is not
    at hand or fails, after a note on stderr."""
    node = _node()
    if node is None:
        print("note: ready.function not checked: Node.js not found", file=sys.stderr)
        return None
    try:
        done = subprocess.run(
            [node, "-e", _COMPILE_JS],
            input=json.dumps(scripts),
            capture_output=True,
            text=True,
            timeout=_COMPILE_TIMEOUT_S,
            check=True,
        )
        results = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        print(f"note: ready.function not checked: {node} failed: {exc}", file=sys.stderr)
        return None
    if not isinstance(results, list) or len(results) != len(scripts):
        print(f"note: ready.function not checked: {node} answered {done.stdout!r}", file=sys.stderr)
        return None
    return [None if r is None else str(r) for r in results]


def _node() -> str | None:
    # Playwright's own Node.js (bundled, or $PLAYWRIGHT_NODEJS_PATH) is the one certain to be
    # there; it is found through an API that is not public, so any failure means: look on PATH.
    try:
        from playwright._impl._driver import compute_driver_executable

        node = str(compute_driver_executable()[0])
    except Exception:
        node = ""
    return node if node and Path(node).is_file() else shutil.which("node")
