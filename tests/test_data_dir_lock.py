"""One harvester per `state.data_dir`: `DataDirLock`, and `FlinkRunner` taking it before it
starts anything (a second harvester's failed batch job would remove the first one's staged
files)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flink_jobs.data_lock import DataDirLock
from flink_jobs.runner import FlinkRunner
from harvester.config import Settings
from harvester.errors import FlinkError
from tests.support.flink import flink_settings

HOLDER = (
    "import sys, time; from pathlib import Path; from flink_jobs.data_lock import DataDirLock\n"
    "DataDirLock(Path(sys.argv[1]), Path(sys.argv[2])).acquire(); print('locked', flush=True)\n"
    "time.sleep(60)"
)


def _used_by(data_dir: Path, pid: int, state_dir: Path) -> str:
    return (
        f"state.data_dir {data_dir} is used by another harvester (pid {pid}, state.dir "
        f"{state_dir}): give each harvester its own data_dir"
    )


@pytest.fixture
def other_harvester() -> Iterator[Callable[[Path, Path], subprocess.Popen[str]]]:
    """Starts a process that holds the lock of a data_dir for a state dir until it is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(data_dir: Path, state_dir: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(data_dir), str(state_dir)],
            cwd=Path(__file__).resolve().parents[1],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None and process.stdout.readline() == "locked\n"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_a_second_holder_is_told_who_holds_the_data_dir_until_it_is_released(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    first = DataDirLock(data_dir, tmp_path / "state-a")
    first.acquire()
    lock_file = data_dir / ".harvester.lock"
    assert lock_file.read_text() == f"{os.getpid()}\n{tmp_path / 'state-a'}\n"
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600

    with pytest.raises(FlinkError) as failure:
        DataDirLock(data_dir, tmp_path / "state-b").acquire()
    assert str(failure.value) == _used_by(data_dir, os.getpid(), tmp_path / "state-a")

    first.release()
    with DataDirLock(data_dir, tmp_path / "state-b") as second:
        assert lock_file.read_text() == f"{os.getpid()}\n{tmp_path / 'state-b'}\n"
    assert second.path == lock_file
    # The file stays, emptied: a new holder rewrites it.
    assert lock_file.read_text() == ""
    DataDirLock(data_dir, tmp_path / "state-a").acquire()


def test_a_lock_file_left_by_a_dead_harvester_does_not_block(
    tmp_path: Path, other_harvester: Callable[[Path, Path], subprocess.Popen[str]]
) -> None:
    data_dir = tmp_path / "data"
    holder = other_harvester(data_dir, tmp_path / "state-a")
    with pytest.raises(FlinkError) as failure:
        DataDirLock(data_dir, tmp_path / "state-b").acquire()
    assert str(failure.value) == _used_by(data_dir, holder.pid, tmp_path / "state-a")

    holder.kill()
    holder.wait()

    # Its pid and state dir are still in the file; the kernel dropped its lock.
    assert (data_dir / ".harvester.lock").read_text().startswith(f"{holder.pid}\n")
    with DataDirLock(data_dir, tmp_path / "state-b"):
        pass


def test_an_unwritable_data_dir_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    data_dir = tmp_path / "file" / "data"
    with pytest.raises(FlinkError, match=f"^cannot lock state.data_dir {data_dir} "):
        DataDirLock(data_dir, tmp_path / "state").acquire()


def test_a_runner_fails_to_start_on_a_data_dir_in_use_before_starting_a_worker(
    tmp_path: Path, other_harvester: Callable[[Path, Path], subprocess.Popen[str]]
) -> None:
    settings = flink_settings(tmp_path)
    holder = other_harvester(settings.state.data_dir, tmp_path / "other-state")

    with FlinkRunner(settings) as runner, pytest.raises(FlinkError) as failure:
        runner.start()

    assert str(failure.value) == _used_by(
        settings.state.data_dir, holder.pid, tmp_path / "other-state"
    )
    assert runner._worker is None
    assert not (settings.state.dir / "flink-logs").exists()  # no worker was ever started


@pytest.mark.flink
@pytest.mark.slow
def test_two_runners_with_their_own_state_dir_cannot_share_a_data_dir(tmp_path: Path) -> None:
    first, second = (
        Settings.model_validate(
            {"state": {"dir": str(tmp_path / name / "state"), "data_dir": str(tmp_path / "data")}}
        )
        for name in ("a", "b")
    )

    with FlinkRunner(first) as running:
        running.start()
        with FlinkRunner(second) as runner, pytest.raises(FlinkError) as failure:
            runner.start()
        assert str(failure.value) == _used_by(first.state.data_dir, os.getpid(), first.state.dir)
        assert runner._worker is None
        assert running.worker_stats() is not None  # the first one's worker is unharmed

    # Closed: the data_dir is free again.
    with DataDirLock(second.state.data_dir, second.state.dir):
        pass
