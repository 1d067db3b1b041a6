"""A state folder or data_dir that cannot be made or written: one line naming it, exit 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harvester.cli import main
from harvester.errors import StateError
from harvester.spool import SpoolWriter
from tests.support.flink import tmpfs

pytestmark = pytest.mark.usefixtures("clean_env")


def _config(tmp_path: Path, state: Path, data: Path) -> Path:
    config = tmp_path / "harvester.toml"
    config.write_text(
        f'[state]\ndir = "{state}"\ndata_dir = "{data}"\n'
        '[[targets]]\nname = "t"\nurl = "http://127.0.0.1:9/"\nschedule = "1m"\n',
        encoding="utf-8",
    )
    return config


def _blocked(tmp_path: Path, case: str) -> tuple[Path, str]:
    if case == "file":
        (tmp_path / "state").write_text("x", encoding="utf-8")
        return tmp_path / "state", "is a file, not a folder"
    (tmp_path / "f").write_text("x", encoding="utf-8")
    return tmp_path / "f" / "state", f"cannot be made: {tmp_path / 'f'} is a file, not a folder"


@pytest.mark.parametrize("case", ["file", "parent-file"])
@pytest.mark.parametrize(
    "command",
    [["harvest", "--all", "--sink", "jsonl"], ["flink", "reset"], ["runs"], ["stores"]],
)
def test_a_state_dir_that_cannot_be_made_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, command: list[str]
) -> None:
    state, problem = _blocked(tmp_path, case)
    config = _config(tmp_path, state, tmp_path / "data")
    argv = [*command[:2], "--config", str(config)] if command[0] == "flink" else command
    if command[0] != "flink":
        argv = [command[0], "--config", str(config), *command[1:]]
    else:
        argv += ["--yes"]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"error: state.dir {state} {problem}\n"


@pytest.mark.parametrize("case", ["file", "parent-file"])
def test_check_config_names_the_key_of_a_folder_it_cannot_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    state, problem = _blocked(tmp_path, case)
    config = _config(tmp_path, state, tmp_path / "data")
    assert main(["check-config", "--config", str(config), "--no-flink"]) == 2
    assert capsys.readouterr().err == (
        f"config error: {config}: state.dir: {state} {problem}; "
        "expected a folder this user can make and write\n"
    )


def test_check_config_leaves_no_folder_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, tmp_path / "a" / "state", tmp_path / "b" / "data")
    assert main(["check-config", "--config", str(config), "--no-flink"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["harvester.toml"]


def test_a_read_only_state_dir_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As root, a mode does not stop writes: a read-only tmpfs does.
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount)])
    if done.returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        config = _config(tmp_path, mount / "state", tmp_path / "data")
        assert main(["harvest", "--config", str(config), "--all", "--sink", "jsonl"]) == 2
        err = capsys.readouterr().err
        assert err == f"error: state.dir {mount / 'state'} is on a read-only file system\n"
        assert main(["check-config", "--config", str(config), "--no-flink"]) == 2
        assert "state.dir: " in capsys.readouterr().err
    finally:
        subprocess.run(["umount", str(mount)])


def test_a_spool_on_a_full_disk_names_its_folder(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "state", "64k") as state:
        writer = SpoolWriter(state / "spool", run_id="r", target="t", origin="o")
        writer.begin_store(db="db", db_version=1, store="s")
        with pytest.raises(StateError) as failure:
            for n in range(10_000):
                writer.write(f'"{n}"', "+I", '"' + "x" * 100 + '"', None, "0" * 64, "now")
            writer.finish()
        writer.discard()
    assert str(failure.value).startswith(f"the spool folder {state / 'spool'} is on a full disk: ")
