"""Advisory locks on files: one process per state folder (`<state.dir>/harvester.lock`).

`fcntl.flock` is released by the kernel when its owner dies, so a crashed holder never blocks
the next one; what the holder writes into the file (its pid, …) only serves the error message.
`FileLock` is the mechanism; `StateLock` and `flink_jobs.data_lock.DataDirLock` say what the
file holds and the error a second holder gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from harvester.errors import HarvesterError, StateLockedError, UnusableStateError, folder_problem

LOCK_NAME = "harvester.lock"


class FileLock:
    """An exclusive `flock` on `path` for as long as it is held; subclasses name the error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def holder(self) -> str:
        """What this holder writes into the file, for the error another one gets."""
        return f"{os.getpid()}\n"

    def locked(self, holder: str) -> HarvesterError:
        """The error for a lock another holder has, given what it wrote (may be empty)."""
        raise NotImplementedError

    def unusable(self, exc: OSError) -> HarvesterError:
        """The error for a lock file that cannot be made or written (`exc` says why)."""
        raise NotImplementedError

    def acquire(self) -> None:
        """Take the lock or raise `locked(…)`; its folder is made (0700) if missing. The first
        write of a command to its folder: one that cannot be made or written (a file in the
        way, read-only, full) raises `unusable(…)`."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self.unusable(exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            raise self.locked(holder) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, self.holder().encode(errors="surrogateescape"), 0)
        except OSError as exc:
            os.close(fd)
            raise self.unusable(exc) from exc
        self._fd = fd

    def release(self) -> None:
        """Give the lock up; the file stays (removing it would race with a new holder)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class StateLock(FileLock):
    """Exclusive ownership of a state folder for as long as it is held."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir / LOCK_NAME)
        self.state_dir = state_dir

    def locked(self, holder: str) -> StateLockedError:
        owner = holder.strip()
        who = f"process {owner}" if owner.isdigit() else "another process"
        return StateLockedError(
            f"state folder {self.state_dir} is owned by {who} (lock file {self.path}); "
            "stop it first or use another state.dir"
        )

    def unusable(self, exc: OSError) -> UnusableStateError:
        problem = folder_problem(self.state_dir, exc, self.path)
        return UnusableStateError(f"state.dir {self.state_dir} {problem}")
