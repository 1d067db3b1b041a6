"""What a failed Flink job or worker start tells the user, from Flink's exception and log.

Flink reports a full disk or an unwritable folder as whatever it was doing at the time ("Could
not instantiate the executor", "Failed to execute sql"); the cause is deeper in the exception
chain, or only in Flink's log. This module finds it there and names the folder it hit and the
room the worker needs there, and names the `flink.statements[i]` a failure belongs to when the
failure says so. Pure Python: both the harvester's side and the worker import it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from flink_jobs.protocol import JobSpec

MB = 1 << 20
# Measured (docs/flink.md): a worker's temp folder holds 68 MB once its JVM is up (the table
# planner and the RPC system, unpacked from their jars) whatever the source, runtime or job
# size; with the collection source a job's rows pass through it too (pickled, then in the job
# Flink uploads), 3-4.5 times the size of their spools at the peak.
WORKER_TEMP_NEEDS = 70 * MB
COLLECTION_FACTOR = 5
# log4j keeps 3 rolled files of 10 MB besides the current one, worker.out one (worker_process).
LOG_NEEDS = 60 * MB

# The errno texts Java and Python print: ENOSPC, EDQUOT, EROFS, EACCES.
_KINDS = (
    ("no space left on device", ("No space left on device",)),
    ("disk quota exceeded", ("Disk quota exceeded",)),
    ("read-only file system", ("Read-only file system",)),
    ("permission denied", ("Permission denied", "AccessDeniedException")),
)
_MKDIRS = "Mkdirs failed to create"
_PATH = re.compile(r"(?:file:)?(/[^\s'\"(),;:\[\]{}<>`]+)")
# A stack frame, the end of a trace's frames, or a suppressed exception: the message is over.
_FRAMES = re.compile(r"^\s+(at \S|\.\.\. \d+ more|Suppressed: )")


@dataclass(frozen=True)
class UserSink:
    """The table a `flink.statements[index]` INSERT writes, and its folder if it has one."""

    index: int
    sql: str
    table: str  # catalog.database.table, "" for CREATE TABLE … AS
    quoted: str  # `catalog`.`database`.`table`, as SQL names it
    path: Path | None  # a filesystem sink's local folder

    @property
    def label(self) -> str:
        return statement_label(self.index, self.sql)


@dataclass(frozen=True)
class Place:
    """A folder the worker writes, what it is for, and the room it needs there."""

    path: Path
    what: str  # e.g. "the Flink worker's temp folder, under state.dir"
    needs: int  # bytes
    room: str  # e.g. "the Flink worker needs about 70 MB there"
    sink: UserSink | None = None  # the user's sink this is the folder of


class Problem(NamedTuple):
    """A full disk or an unwritable folder: the sentence for the user, and where."""

    text: str
    place: Place | None


def places(
    tmp_dir: Path, log_dir: Path | None, spec: JobSpec | None, sinks: Sequence[UserSink] = ()
) -> list[Place]:
    """The folders a job (without `spec`: the worker's start) writes, likeliest first."""
    rows = spool_bytes(spec) if spec is not None else 0
    extra = COLLECTION_FACTOR * rows if spec is not None and spec.source == "collection" else 0
    room = f"the Flink worker needs about {megabytes(WORKER_TEMP_NEEDS)} there"
    if extra:
        room += f" and this job's rows about {megabytes(extra)} more"
    room += " (twice that while a worker replaces another)"
    found = [
        Place(
            tmp_dir,
            "the Flink worker's temp folder, under state.dir",
            WORKER_TEMP_NEEDS + extra,
            room,
        )
    ]
    if spec is not None:
        need = f"this job's rows need about {megabytes(rows)} there"
        found.append(Place(spec.data_dir, "state.data_dir, the default sinks", rows, need))
        # The user's sink may write less than the rows (an aggregate), never more.
        need = f"this job's rows need up to {megabytes(rows)} there"
        found += [
            Place(sink.path, "its sink's folder", rows, need, sink)
            for sink in sinks
            if sink.path is not None
        ]
    if log_dir is not None:
        found.append(log_place(log_dir))
    return found


def stream_places(
    tmp_dir: Path, log_dir: Path, checkpoint_dir: Path, data_dir: Path, sinks: Sequence[UserSink]
) -> list[Place]:
    """The folders the continuous job writes while it runs, likeliest first. Below a megabyte
    free, a folder the job writes into by the checkpoint is taken for the one that filled up."""
    some = 1 << 20
    found = places(tmp_dir, log_dir, None)
    found.insert(
        1, Place(checkpoint_dir, "flink.checkpoint_dir", some, "each checkpoint needs room there")
    )
    found.insert(
        2, Place(data_dir, "state.data_dir, the default sinks", some, "the rows need room there")
    )
    found += [
        Place(sink.path, "its sink's folder", some, "its rows need room there", sink)
        for sink in sinks
        if sink.path is not None
    ]
    return found


def state_place(state_dir: Path) -> Place:
    """`state.dir`, before the worker's folders in it exist."""
    needs = WORKER_TEMP_NEEDS + LOG_NEEDS
    room = f"the Flink worker needs about {megabytes(needs)} there"
    return Place(state_dir, "state.dir", needs, room)


def log_place(log_dir: Path) -> Place:
    limit = megabytes(LOG_NEEDS)
    return Place(
        log_dir, "the Flink logs, under state.dir", LOG_NEEDS, f"the logs take up to {limit} there"
    )


def spool_bytes(spec: JobSpec) -> int:
    """The size of a job's spools: about what its rows take in the default sinks."""
    total = 0
    for path in {part.path for part in spec.slices}:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


def megabytes(size: int) -> str:
    return f"{size / MB:.1f} MB" if size < 10 * MB else f"{size / MB:.0f} MB"


def statement_label(index: int, sql: str) -> str:
    """`flink.statements[3] (INSERT INTO counts SELECT …)`: the index and the first line."""
    first = next((line.strip() for line in sql.splitlines() if line.strip()), "")
    if len(first) > 80:
        first = first[:79] + "…"
    return f"flink.statements[{index}] ({first})"


def message(
    what: str, root: str, *, problem: str | None = None, culprits: Sequence[str] = ()
) -> str:
    """One line: `Flink job failed in flink.statements[1] (…): <problem> (<root>)`."""
    where = f" in {' or '.join(culprits)}" if culprits else ""
    return f"{what}{where}: {problem} ({root})" if problem else f"{what}{where}: {root}"


# ---- the exception chain -----------------------------------------------------------------------


def chain(trace: str) -> list[tuple[str, str]]:
    """A Java stack trace's exception chain, outermost first, as (class name, message).

    Java prints each cause as a `Caused by: <class>: <message>` line; a message runs on until
    the first stack frame. Suppressed exceptions are left out.
    """
    links: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for index, line in enumerate(trace.splitlines()):
        if index == 0 or line.startswith("Caused by: "):
            name, _, first = line.removeprefix("Caused by: ").partition(": ")
            current = [first]
            links.append((name.strip(), current))
        elif _FRAMES.match(line):
            current = None
        elif current is not None:
            current.append(line)
    return [(name, "\n".join(lines).strip()) for name, lines in links if name]


def root_line(links: Sequence[tuple[str, str]]) -> str:
    """The line of a failure worth showing, `<SimpleName>: <message>`.

    That is the root cause (the deepest exception with a message), except when Flink's table
    API wrapped it with context for users (`SQL parse failed. …`): then that wrapper.
    """
    described = [(name, summary(text)) for name, text in links]
    described = [(name, text) for name, text in described if text]
    if not described:
        return _simple(links[0][0]) if links else ""
    root, root_text = described[-1]
    for name, text in described:
        if name.startswith("org.apache.flink.table.api.") and root_text in text:
            root, root_text = name, text
            break
    return f"{_simple(root)}: {root_text}"


def summary(text: str) -> str:
    """The first line of a Flink message, plus its `Cause:` line when it has one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    cause = next((line for line in lines[1:] if line.startswith("Cause:")), None)
    return f"{lines[0]} {cause}" if cause else lines[0]


def _simple(name: str) -> str:
    return name.rpartition(".")[2]


# ---- full disks and unwritable folders ---------------------------------------------------------


def disk_problem(texts: Iterable[str], places: Sequence[Place]) -> Problem | None:
    """What the failure says about a full disk or an unwritable folder, naming the folder.

    The folder is the place a path in the texts lies in (or above); when no path is given (Java
    often says only `IOException: No space left on device`), the first place where the
    condition holds now; failing that, every place with its free space.
    """
    text = "\n".join(texts)
    kind = next((kind for kind, marks in _KINDS if any(mark in text for mark in marks)), None)
    if kind is None:
        # Flink's local file system says only "Mkdirs failed to create <path>": the folder's
        # file system tells whether it is read-only or not ours to write.
        place = _named_place(text, places) if _MKDIRS in text else None
        unwritable = ("read-only file system", "permission denied")
        kind = next((kind for kind in unwritable if place and _holds(kind, place)), None)
        return _problem(kind, place) if kind and place else None
    place = _named_place(text, places) or next(
        (place for place in places if _holds(kind, place)), None
    )
    if place is None:
        listing = ", ".join(
            f"{place.path} ({place.what}, {megabytes(_free(place.path))} free)" for place in places
        )
        return Problem(f"{kind} in one of the Flink worker's folders: {listing}", None)
    return _problem(kind, place)


def _problem(kind: str, place: Place) -> Problem:
    where = f"{place.path} ({place.what})"
    if kind == "no space left on device":
        free = megabytes(_free(place.path))
        return Problem(f"no space left on device in {where}: {free} free; {place.room}", place)
    if kind == "disk quota exceeded":
        return Problem(f"disk quota exceeded in {where}; {place.room}", place)
    if kind == "read-only file system":
        return Problem(f"{where} is on a read-only file system", place)
    return Problem(f"{where} is not writable: permission denied", place)


def paths_in(text: str) -> list[Path]:
    return [Path(found) for found in _PATH.findall(text) if found.strip("/")]


def related(mentioned: Path, folder: Path) -> int:
    """How closely a path a message mentions bears on `folder`: 0 not at all; more for a
    path inside the folder than for one of its parents (a parent that cannot be written)."""
    if mentioned == folder or folder in mentioned.parents:
        return 1000 + len(folder.parts)
    if mentioned in folder.parents and len(mentioned.parts) > 2:
        return len(mentioned.parts)
    return 0


def _named_place(text: str, places: Sequence[Place]) -> Place | None:
    scored = [
        (related(path, place.path), -index, place)
        for path in paths_in(text)
        for index, place in enumerate(places)
    ]
    best = max(scored, key=lambda item: item[:2], default=None)
    return best[2] if best is not None and best[0] else None


def _existing(path: Path) -> Path:
    """`path`, or its nearest parent that exists (a folder the worker had yet to create)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free(path: Path) -> int:
    try:
        stats = os.statvfs(_existing(path))
    except OSError:
        return 0
    return stats.f_bavail * stats.f_frsize


def _holds(kind: str, place: Place) -> bool:
    """Whether the condition a message reported holds at `place` now."""
    existing = _existing(place.path)
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        return False
    if kind == "read-only file system":
        return read_only
    if kind == "permission denied":
        return not os.access(existing, os.W_OK | os.X_OK)
    return _free(place.path) < place.needs


# ---- which statement ---------------------------------------------------------------------------


def named_sinks(texts: Iterable[str], sinks: Sequence[UserSink]) -> list[UserSink]:
    """The user sinks a failure names: by table (`a.b.c` or `` `a`.`b`.`c` ``) or by a path
    in or above the sink's folder."""
    text = "\n".join(texts)
    paths = paths_in(text)
    found = []
    for sink in sinks:
        by_name = bool(sink.table) and any(
            re.search(rf"(?<![\w.`]){re.escape(name)}(?![\w`])", text)
            for name in (sink.table, sink.quoted)
        )
        by_path = sink.path is not None and any(related(path, sink.path) for path in paths)
        if by_name or by_path:
            found.append(sink)
    return found
