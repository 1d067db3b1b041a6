"""`harvester run` as a subprocess, with its HTTP endpoint: for the daemon's end-to-end tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


class DaemonProcess:
    """The `harvester run` subprocess and its HTTP endpoint."""

    def __init__(self, config: Path, port: int, sink: str | None = "jsonl") -> None:
        self.port = port
        self.log_path = config.parent / "daemon.log"
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-m", "harvester", "run", "--config", str(config)]
        self.proc = subprocess.Popen(
            command + (["--sink", sink] if sink else []),
            cwd=config.parent,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def health(self) -> dict[str, Any]:
        """The /healthz body, healthy (200) or not (503)."""
        status, body = self.get("/healthz")
        assert status in (200, 503), body
        return dict(json.loads(body))

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"daemon exited early:\n{self.log()}"
            try:
                if check():
                    return
            except (OSError, AssertionError, KeyError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, timeout: float = 120) -> None:
        """SIGTERM, and check that it exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=timeout) == 0, self.log()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
