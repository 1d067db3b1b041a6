"""`harvester flink reset` through the real CLI entry point (no Flink runs)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harvester.cli import main
from harvester.lock import StateLock

pytestmark = pytest.mark.usefixtures("clean_env")

CONFIG = """
[state]
dir = "state"
data_dir = "data"
"""


class _Terminal(io.StringIO):
    """Standard input that is a terminal, with the user's answer in it."""

    def isatty(self) -> bool:
        return True


def _config(folder: Path, text: str = CONFIG) -> Path:
    path = folder / "harvester.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _checkpoint(folder: Path) -> Path:
    """A retained checkpoint as Flink leaves it: `<dir>/<job id>/chk-<n>/_metadata`."""
    metadata = folder / "state" / "flink-checkpoints" / "0123456789abcdef" / "chk-3" / "_metadata"
    metadata.parent.mkdir(parents=True)
    metadata.write_bytes(b"\0checkpoint")
    (folder / "state" / "flink-checkpoints" / "PIPELINE").write_text("feedface\n")
    return metadata


def _log_file(folder: Path) -> Path:
    log = folder / "state" / "flink-log"
    log.mkdir(parents=True)
    path = log / "000000000001-shop-20261201T000000Z-ab12.jsonl"
    path.write_text("{}\n")
    return path


def test_reset_removes_the_checkpoints_and_says_what_it_means(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    metadata = _checkpoint(tmp_path)
    log_file = _log_file(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO())

    assert main(["flink", "reset", "--yes", "--config", str(config)]) == 0

    checkpoints = tmp_path / "state" / "flink-checkpoints"
    assert not checkpoints.exists()
    assert log_file.exists(), "the log is what the next start replays: it stays"
    out = " ".join(capsys.readouterr().out.split())
    assert f"removed the continuous job's checkpoints in {checkpoints}" in out
    assert str(metadata.parent) in out
    assert f"every file still in the log {tmp_path / 'state' / 'flink-log'}" in out
    assert "1 run file(s)" in out
    assert "flink.log_retention = 168h" in out
    assert "duplicate part files" in out and "upsert sinks" in out


def test_reset_without_checkpoints_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO())

    assert main(["flink", "reset", "--yes", "--config", str(config)]) == 0

    out = " ".join(capsys.readouterr().out.split())
    assert "no checkpoint in" in out
    assert "no run file now" in out


def test_without_yes_and_no_terminal_it_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    metadata = _checkpoint(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))

    assert main(["flink", "reset", "--config", str(config)]) == 2

    assert metadata.exists()
    captured = capsys.readouterr()
    assert "give --yes" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(("answer", "code"), [("y\n", 0), ("n\n", 1), ("", 1)])
def test_on_a_terminal_it_asks(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    code: int,
) -> None:
    config = _config(tmp_path)
    metadata = _checkpoint(tmp_path)
    monkeypatch.setattr("sys.stdin", _Terminal(answer))

    assert main(["flink", "reset", "--config", str(config)]) == code

    assert metadata.exists() == (code != 0)
    out = capsys.readouterr().out
    assert "Reset the continuous pipeline? [y/N]" in out
    if code:
        assert "nothing reset" in out


def test_a_running_harvester_keeps_its_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    metadata = _checkpoint(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO())

    with StateLock(tmp_path / "state"):
        assert main(["flink", "reset", "--yes", "--config", str(config)]) == 2

    assert metadata.exists()
    assert "is owned by" in capsys.readouterr().err


def test_an_unreachable_remote_cluster_resets_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 9 on 127.0.0.1 (discard) has no Flink: the job may still run somewhere, unseen.
    config = _config(tmp_path, CONFIG + '[flink]\nmode = "remote"\naddress = "127.0.0.1:9"\n')
    metadata = _checkpoint(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO())

    assert main(["flink", "reset", "--yes", "--config", str(config)]) == 1

    assert metadata.exists()
    err = capsys.readouterr().err
    assert "127.0.0.1:9" in err and "nothing was reset" in err


class _Cluster(ThreadingHTTPServer):
    """Flink's REST API as far as the reset uses it: the jobs, a job's state, cancelling."""

    def __init__(self, jobs: dict[str, tuple[str, str]]) -> None:
        super().__init__(("127.0.0.1", 0), _ClusterHandler)
        self.jobs = jobs  # id → (name, state)
        self.cancelled: list[str] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _ClusterHandler(BaseHTTPRequestHandler):
    server: _Cluster

    def _answer(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        jobs = self.server.jobs
        if self.path == "/jobs/overview":
            listed = [
                {"jid": jid, "name": name, "state": state} for jid, (name, state) in jobs.items()
            ]
            self._answer({"jobs": listed})
        else:
            self._answer({"state": jobs[self.path.removeprefix("/jobs/")][1]})

    def do_PATCH(self) -> None:
        job_id = self.path.removeprefix("/jobs/").partition("?")[0]
        self.server.cancelled.append(job_id)
        self.server.jobs[job_id] = (self.server.jobs[job_id][0], "CANCELED")
        self._answer({})

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[_Cluster]:
    log = tmp_path / "state" / "flink-log"
    server = _Cluster(
        {
            "a" * 32: (f"idb-harvester continuous {log} [0011223344556677]", "RUNNING"),
            "b" * 32: (f"idb-harvester continuous {log} [8899aabbccddeeff]", "FINISHED"),
            "c" * 32: (f"idb-harvester continuous {tmp_path / 'other-log'} [00]", "RUNNING"),
            "d" * 32: ("someone else's job", "RUNNING"),
        }
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_job_a_remote_cluster_runs_for_this_log_is_cancelled_first(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cluster: _Cluster,
) -> None:
    flink = f'[flink]\nmode = "remote"\naddress = "{cluster.address}"\n'
    config = _config(tmp_path, CONFIG + flink)
    _checkpoint(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO())

    assert main(["flink", "reset", "--yes", "--config", str(config)]) == 0

    assert cluster.cancelled == ["a" * 32]
    assert not (tmp_path / "state" / "flink-checkpoints").exists()
    out = " ".join(capsys.readouterr().out.split())
    assert (
        f"cancelled the continuous job {'a' * 32} on the Flink cluster at {cluster.address}" in out
    )
