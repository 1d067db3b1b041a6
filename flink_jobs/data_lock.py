"""One harvester per `state.data_dir`: an advisory lock on `<data_dir>/.harvester.lock`.

Flink's filesystem sinks stage their files in `.staging_*` folders under the default sinks'
folders, and after a failed batch job the worker removes every one there
(`pipeline.remove_staging`): a second harvester writing into the same data_dir would lose its
staged rows while its job still "succeeds". So whatever starts Flink workers into a data_dir
holds this lock for as long as they may write there. The file is a dot-file at the top of
data_dir, where no source globbing the sinks' folders sees it.
"""

from __future__ import annotations

import os
from pathlib import Path

from harvester.errors import FlinkError
from harvester.lock import FileLock

LOCK_NAME = ".harvester.lock"


class DataDirLock(FileLock):
    """Exclusive use of `data_dir` by the harvester of `state_dir`; `acquire` raises
    `FlinkError` naming the holder's pid and state.dir."""

    def __init__(self, data_dir: Path, state_dir: Path) -> None:
        super().__init__(data_dir / LOCK_NAME)
        self.data_dir = data_dir
        self.state_dir = state_dir

    def holder(self) -> str:
        return f"{os.getpid()}\n{self.state_dir}\n"

    def locked(self, holder: str) -> FlinkError:
        pid, _, state_dir = holder.partition("\n")
        state_dir = state_dir.removesuffix("\n")
        who = f" (pid {pid}, state.dir {state_dir})" if pid.isdigit() and state_dir else ""
        return FlinkError(
            f"state.data_dir {self.data_dir} is used by another harvester{who}: "
            "give each harvester its own data_dir"
        )

    def unusable(self, exc: OSError) -> FlinkError:
        return FlinkError(
            f"cannot lock state.data_dir {self.data_dir} ({self.path}): {exc.strerror}"
        )
