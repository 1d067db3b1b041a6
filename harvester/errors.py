"""The one exception tree of idb-harvester.

Every error the harvester raises on purpose derives from `HarvesterError`; its `exit_code` is what
the CLI exits with when it reaches the top.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class HarvesterError(Exception):
    """Base of every error raised on purpose by idb-harvester."""

    exit_code: int = 1


class UsageError(HarvesterError):
    """Bad command-line arguments or a command that cannot run as asked."""

    exit_code = 2


class ConfigError(HarvesterError):
    """The configuration is invalid; `problems` holds one line per problem."""

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class BrowserError(HarvesterError):
    """The browser could not be found, launched or driven."""


class BrowserNotFoundError(BrowserError):
    """No Chromium was found; the message names every place that was tried."""

    exit_code = 2


class PageError(BrowserError):
    """The target page could not be reached or never became ready."""

    exit_code = 2


class WatchError(HarvesterError):
    """Watching a page's IndexedDB for changes failed: Chromium refused to track its storage, or
    the watch ended (closed, the page gone)."""


class ReaderError(HarvesterError):
    """Reading IndexedDB failed as a whole (not one store or record)."""


class EvaluateTimeoutError(ReaderError):
    """A page evaluation did not finish in time (the page may be hung)."""


class StateError(HarvesterError):
    """The state database is missing, corrupt or cannot be written."""


class UnusableStateError(StateError):
    """The state DB or folder exists but cannot be used as it is (empty, damaged, not ours, of a
    newer schema, unreadable): an environment problem a person must resolve, never a new DB."""

    exit_code = 2


class StateLockedError(StateError):
    """Another process owns the state folder."""

    exit_code = 2


class FeedGoneError(HarvesterError):
    """A position in the changes feed that this state DB can no longer read on from: the rows
    after it were removed by retention, or it comes from another state DB."""


class FlinkError(HarvesterError):
    """A Flink job could not be built, submitted or finished."""


class FlinkJobError(FlinkError):
    """A Flink job failed; `root_cause` is the useful line of Flink's error."""

    def __init__(self, message: str, *, root_cause: str | None = None) -> None:
        self.root_cause = root_cause or message
        super().__init__(message)


class PipelineChangedError(FlinkError):
    """The continuous job's checkpoints were taken with other SQL: resuming them would be wrong."""

    exit_code = 2


def folder_problem(folder: Path, exc: OSError, file: Path | None = None) -> str:
    """Why `folder` could not be made or written, from `exc` (raised on `file`, when `exc` does
    not name it): the rest of a line that starts with the folder ("is on a read-only file
    system (…)")."""
    if (blocked := file_in_the_way(folder)) is not None:
        return blocked
    named = exc.filename or file
    at = f" ({named})" if named and Path(named) != folder else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"is on a full disk: {exc.strerror}{at}; free some space there"
    if exc.errno == errno.EROFS:
        return f"is on a read-only file system{at}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"is not writable: permission denied{at}; check its and its parents' owner and mode"
    return f"cannot be written: {exc.strerror or exc}{at}"


def file_in_the_way(folder: Path) -> str | None:
    """Why `folder` cannot be a folder, when the nearest of it and its parents that exists is a
    file (the rest of a line that starts with the folder); None otherwise."""
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            if path.is_dir():
                return None
            if path == folder:
                return "is a file, not a folder"
            return f"cannot be made: {path} is a file, not a folder"
    return None
