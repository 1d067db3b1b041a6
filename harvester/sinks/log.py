"""The changelog log: the folder of immutable run files that the continuous Flink job consumes.

The layout is a contract between the harvester, which appends, and the job, which reads
(`flink_jobs.streaming`):

- `<seq>-<run_id>.jsonl`: one committed run's spool, whole (written under a dot-name, fsynced,
  then renamed or hard-linked into place), never changed afterwards. `seq` (12 digits) is the
  run's `log_seq` from the state DB, which orders the runs of one target; the job reads it
  from the file name.
- `_acks/part-…`: what the job has consumed, written by its own file sink at checkpoints: per
  run, the rows it counted so far, as Debezium-JSON updates. Flink's file source skips names
  that start with `_` or `.`, so the job never reads its own acknowledgements.
- `_consumed/`: run files the job has consumed, moved out of its sight, kept for
  `flink.log_retention` so that `harvester flink reset` can replay them. The job lists its
  folder every half second: holding only what waits keeps that cheap however long it runs.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from harvester.spool import SpoolFile, fsync_dir

log = logging.getLogger(__name__)

ACKS_DIR = "_acks"
CONSUMED_DIR = "_consumed"
SEQ_DIGITS = 12
LOG_SUFFIX = ".jsonl"
# What the job's SQL extracts from `file.name` (flink_jobs.streaming): the leading digits.
SEQ_PATTERN = "^([0-9]+)-"
_RUN_FILE = re.compile(r"^(\d+)-(.+)\.jsonl$")


def log_name(seq: int, run_id: str) -> str:
    """The log file name of run `run_id`, handed off as number `seq`."""
    return f"{seq:0{SEQ_DIGITS}d}-{run_id}{LOG_SUFFIX}"


@dataclass(frozen=True)
class Acks:
    """What the job acknowledged: rows consumed per run, and the ack files read."""

    rows: dict[str, int] = field(default_factory=dict)
    files: tuple[tuple[Path, frozenset[str]], ...] = ()  # each file and the runs it names


@dataclass(frozen=True)
class LogFile:
    """One run's file in the log."""

    path: Path
    seq: int
    run_id: str


class ChangeLog:
    """The log folder: append run files, read the job's acknowledgements, retire files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.acks_dir = folder / ACKS_DIR
        self.consumed_dir = folder / CONSUMED_DIR
        self._top: int | None = None

    def top_seq(self) -> int:
        """The highest number of a run file in the log (0 for none); listed once, then kept up
        to date by `append`. New numbers go above it, so a reset state DB or the retention of
        its newest run can never give a number the log already orders."""
        if self._top is None:
            self._top = max((item.seq for item in self.files()), default=0)
        return self._top

    def prepare(self) -> None:
        """Create the folder and its ack folder (0700: harvested data is private)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.acks_dir.mkdir(mode=0o700, exist_ok=True)
        self.consumed_dir.mkdir(mode=0o700, exist_ok=True)

    def append(self, spool: SpoolFile, seq: int) -> Path:
        """Put the run's spool into the log as file `seq`; a no-op when it is there already.

        Idempotent, so a run handed off before a crash and sent again by recovery is never
        written twice (the job would consume it twice). A hard link when the spool lies on the
        same file system (no copy; the spool's name goes at commit), a copy otherwise.
        """
        self.prepare()
        self._top = max(self.top_seq(), seq)
        path = self.folder / log_name(seq, spool.run_id)
        if path.exists() or (self.consumed_dir / path.name).exists():
            return path
        try:
            os.link(spool.path, path)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            self._copy(spool.path, path)
        fsync_dir(self.folder)
        return path

    def _copy(self, source: Path, path: Path) -> None:
        # A dot-name: Flink's file source never lists a file while it is being written.
        part = path.with_name(f".{path.name}.part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as rows:
                while chunk := rows.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            part.rename(path)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    def files(self, *, consumed: bool = False) -> Iterator[LogFile]:
        """The run files waiting in the log (or those moved aside as consumed), in no order."""
        folder = self.consumed_dir if consumed else self.folder
        if not folder.is_dir():
            return
        for entry in os.scandir(folder):
            found = _RUN_FILE.match(entry.name)
            if found and entry.is_file():
                yield LogFile(Path(entry.path), int(found[1]), found[2])

    def set_aside(self, run_ids: Iterable[str]) -> None:
        """Move the files of these consumed runs out of the job's sight."""
        wanted = set(run_ids)
        if not wanted:
            return
        self.prepare()
        for item in self.files():
            if item.run_id in wanted:
                with contextlib.suppress(FileNotFoundError):
                    item.path.rename(self.consumed_dir / item.path.name)

    def replay(self) -> int:
        """Put every file set aside back in the job's sight (for a pipeline started anew); how
        many."""
        moved = 0
        for item in self.files(consumed=True):
            item.path.rename(self.folder / item.path.name)
            moved += 1
        return moved

    def read_acks(self) -> Acks:
        """Rows acknowledged per run in the committed ack files (the highest count wins)."""
        rows: dict[str, int] = {}
        files = []
        if not self.acks_dir.is_dir():
            return Acks()
        for entry in os.scandir(self.acks_dir):
            # In-progress part files are dot-files until the job's checkpoint commits them.
            if entry.name.startswith((".", "_")) or not entry.is_file():
                continue
            path = Path(entry.path)
            try:
                lines = path.read_bytes().splitlines()
            except FileNotFoundError:
                continue
            runs = set()
            for line in lines:
                after = _after(line)
                if after is None:
                    continue
                run_id, count = after
                rows[run_id] = max(rows.get(run_id, 0), count)
                runs.add(run_id)
            files.append((path, frozenset(runs)))
        return Acks(rows, tuple(files))

    def remove_acks(self, files: Iterable[Path]) -> None:
        """Delete ack files whose counts the state DB holds now."""
        for path in files:
            path.unlink(missing_ok=True)

    def retire(self, *, older_than: float) -> int:
        """Remove consumed files last changed before `older_than` (epoch seconds); how many.
        Kept that long, a `flink reset` can replay them."""
        removed = 0
        for item in self.files(consumed=True):
            with contextlib.suppress(FileNotFoundError):
                if item.path.stat().st_mtime < older_than:
                    item.path.unlink()
                    removed += 1
        return removed

    def prune_acks(self, max_age: float) -> None:
        """Drop ack files older than `max_age` seconds that nobody claimed (another
        harvester's runs in a shared log, or runs this state DB no longer has)."""
        if not self.acks_dir.is_dir():
            return
        cutoff = time.time() - max_age
        for entry in os.scandir(self.acks_dir):
            if entry.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    Path(entry.path).unlink()


def _after(line: bytes) -> tuple[str, int] | None:
    """(run_id, rows) from one Debezium-JSON ack line's `after` image, None for a retraction."""
    if not line.strip():
        return None
    try:
        after = orjson.loads(line).get("after")
    except (orjson.JSONDecodeError, AttributeError):
        log.warning("unreadable line in the job's acknowledgements: %r", line[:200])
        return None
    if not isinstance(after, dict):
        return None
    run_id, count = after.get("run_id"), after.get("rows")
    if not isinstance(run_id, str) or not isinstance(count, int):
        return None
    return run_id, count
