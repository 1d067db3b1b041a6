"""`examples/consume_changes.py` follows the changes feed of a live daemon harvesting the demo
app, through a restart of the daemon, then finishes against `harvester serve` on the state
folder: every row of the state DB's history arrives once, in commit order, with the value each
change wrote (its hash checks) and the value it replaced."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester.codec import value_hash
from harvester.demo import DemoServer, serve_demo
from harvester.state import StateDB
from tests.support.daemon import DaemonProcess, daemon_runs
from tests.support.server import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXAMPLE = Path(__file__).parent.parent / "examples" / "consume_changes.py"
TIMEOUT = 180


def _config(http_port: int, url: str) -> str:
    return f"""
[state]
dir = "state"
data_dir = "data"

[http]
port = {http_port}

[daemon]
run_on_start = true

[[targets]]
name = "demo"
url = "{url}"
schedule = "2s"

[targets.ready]
function = "window.demoReady === true"

[targets.auth]
profile_dir = "profile"
"""


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    with serve_demo(0) as server:
        yield server


class Consumer:
    """The example consumer as a subprocess, its rows in a file."""

    def __init__(self, folder: Path, url: str, name: str, *extra: str) -> None:
        self.out = folder / f"{name}.jsonl"
        self.err = folder / f"{name}.err"
        command = [sys.executable, str(EXAMPLE), "--url", url, "--wait", "5"]
        command += ["--cursor-file", str(folder / "feed.cursor"), "--limit", "200", *extra]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(command, stdout=out, stderr=err)

    def rows(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def retrying(self) -> bool:
        return "retrying" in self.err.read_text()


def _committed(root: Path) -> int:
    return sum(1 for run in daemon_runs(root) if run.status == "committed")


def _history(root: Path) -> list[tuple[str, str, str, str]]:
    with StateDB.open(root / "state", readonly=True) as state:
        runs = sorted(
            (run for run in state.list_runs() if run.seq is not None), key=lambda r: r.seq or 0
        )
        return [
            (change.run_id, change.store, change.key, change.op)
            for run in runs
            for change in state.run_changes(run.id)
        ]


def test_the_example_consumer_gets_every_row_once_in_order_across_a_restart(
    tmp_path: Path, demo: DemoServer
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "harvester.toml"
    config.write_text(_config(port, demo.url))
    daemon = DaemonProcess(config, port)
    consumer = Consumer(tmp_path, url, "following")
    serve: subprocess.Popen[bytes] | None = None
    try:
        daemon.wait_for("two committed runs", lambda: _committed(tmp_path) >= 2, timeout=180)
        wait_until("the consumer's first rows", lambda: len(consumer.rows()) > 0, TIMEOUT)
        daemon.stop()
        daemon.close()
        wait_until("the consumer retrying", consumer.retrying, TIMEOUT)
        before = _committed(tmp_path)

        daemon = DaemonProcess(config, port)
        daemon.wait_for(
            "two more committed runs", lambda: _committed(tmp_path) >= before + 2, timeout=180
        )
        daemon.stop()
        # Stopped while it waits for the daemon, not between printing a page and saving it.
        consumer.err.write_text("")
        wait_until("the consumer retrying", consumer.retrying, TIMEOUT)
        consumer.proc.send_signal(signal.SIGTERM)
        consumer.proc.wait(timeout=30)

        # The rest from `harvester serve` on the state folder, from the saved cursor.
        serve_port = free_port()
        state, port_text = str(tmp_path / "state"), str(serve_port)
        serve = subprocess.Popen(
            [sys.executable, "-m", "harvester", "serve", "--state", state, "--port", port_text],
            stdout=subprocess.DEVNULL,
        )
        # It retries until `serve` listens.
        rest = Consumer(tmp_path, f"http://127.0.0.1:{serve_port}", "rest", "--until-idle")
        assert rest.proc.wait(timeout=120) == 0, rest.err.read_text()
        assert serve.poll() is None
    finally:
        daemon.close()
        if consumer.proc.poll() is None:
            consumer.proc.kill()
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=30)

    rows = consumer.rows() + rest.rows()
    history = _history(tmp_path)
    assert len(history) > 0 and len({row["run_id"] for row in rows}) >= 4
    assert [(r["run_id"], r["store"], r["key"], r["op"]) for r in rows] == history
    for row in rows:
        if row["op"] == "-D":
            assert row["value"] is None and row["old_value"] is not None
        else:
            assert isinstance(row["value"], str)
            assert value_hash(row["value"]) == row["value_hash"]
        if row["op"] == "+U":
            assert row["old_value"] is not None
