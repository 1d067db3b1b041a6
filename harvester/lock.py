"""One process per state folder: an advisory lock on `<state.dir>/harvester.lock`.

`fcntl.flock` is released by the kernel when its owner dies, so a crashed harvester never blocks
the next one; the pid written into the file only serves the error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from harvester.errors import StateLockedError

LOCK_NAME = "harvester.lock"


class StateLock:
    """Exclusive ownership of a state folder for as long as it is held."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise `StateLockedError` naming the process that holds it."""
        if self._fd is not None:
            return
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f"process {owner}" if owner.isdigit() else "another process"
            raise StateLockedError(
                f"state folder {self.state_dir} is owned by {who} (lock file {self.path}); "
                "stop it first or use another state.dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up; the file stays (removing it would race with a new owner)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
