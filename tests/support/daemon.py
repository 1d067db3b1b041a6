"""`harvester run` as a subprocess, with its HTTP endpoint: for the daemon's end-to-end tests."""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harvester.state import Run, StateDB


def daemon_runs(root: Path) -> list[Run]:
    """Every run of the daemon whose `state.dir` is `root/state`, oldest first (none before it
    made its state DB)."""
    if not (root / "state" / "state.db").exists():
        return []
    with StateDB.open(root / "state", readonly=True) as state:
        return state.list_runs()[::-1]


def run_stores(root: Path) -> dict[str, list[str]]:
    """Run id → the `db/store` names it read, for the same daemon."""
    with StateDB.open(root / "state", readonly=True) as state:
        return {
            run.id: [f"{s.db}/{s.store}" for s in state.run_stores(run.id)]
            for run in state.list_runs()
        }


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


# A page for watch mode: IndexedDB `app` with stores `items` (seeded k0..k2), `other` and
# `ignored`; it writes what the test pushes over Server-Sent Events, so that it does nothing (no
# timer, no polling) while the test pushes nothing.
WATCH_PAGE = """<!doctype html><meta charset="utf-8"><title>watched</title><script>
const open = indexedDB.open("app", 1);
open.onupgradeneeded = () => {
  const db = open.result;
  const items = db.createObjectStore("items");
  db.createObjectStore("other");
  db.createObjectStore("ignored");
  for (const k of ["k0", "k1", "k2"]) items.put({v: 0}, k);
};
open.onsuccess = () => {
  const db = open.result;
  const events = new EventSource("/events");
  events.onmessage = (message) => {
    const c = JSON.parse(message.data);
    const tx = db.transaction(c.store, "readwrite");
    if (c.op === "delete") tx.objectStore(c.store).delete(c.key);
    else tx.objectStore(c.store).put(c.value, c.key);
  };
  events.onopen = () => { window.watchReady = true; };
};
</script>"""


class WatchPageServer:
    """Serves `page` (WATCH_PAGE) on 127.0.0.1 and pushes commands to the pages connected now.

    `connections` counts the event streams opened so far: a reopened page opens a new one, and a
    command pushed before it connects would reach no page. What the pages POST to `/wrote` (the
    writes they made, as JSON) is kept in `reported`.
    """

    def __init__(self, page: str = WATCH_PAGE) -> None:
        self._commands: list[str] = []
        self._changed = threading.Condition()
        self.connections = 0
        self.reported: list[Any] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server._changed:
                    server.reported.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/events":
                    body = page.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                with server._changed:
                    sent = len(server._commands)  # only what is pushed from now on
                    server.connections += 1
                    server._changed.notify_all()
                try:
                    self.wfile.write(b": hello\n\n")
                    self.wfile.flush()
                    while not server.closed:
                        with server._changed:
                            server._changed.wait_for(
                                lambda sent=sent: server.closed or len(server._commands) > sent,
                                1.0,
                            )
                            fresh = server._commands[sent:]
                        for command in fresh:
                            self.wfile.write(f"data: {command}\n\n".encode())
                        self.wfile.flush()
                        sent += len(fresh)
                except OSError:
                    pass

        self.closed = False
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def put(self, store: str, key: str, value: Any) -> None:
        """Have the connected pages put `value` under `key` in `store`."""
        self.send({"op": "put", "store": store, "key": key, "value": value})

    def send(self, command: dict[str, Any]) -> None:
        """Push `command` to the connected pages (what it means is the page's)."""
        with self._changed:
            self._commands.append(json.dumps(command))
            self._changed.notify_all()

    def wrote(self) -> list[Any]:
        """What the pages reported writing so far."""
        with self._changed:
            return list(self.reported)

    def close(self) -> None:
        self.closed = True
        with self._changed:
            self._changed.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()


def children(pid: int) -> Iterator[int]:
    """Every descendant of `pid` (from /proc)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, found):
            yield child
            yield from children(child)


def renderers(pid: int) -> list[int]:
    """The Chromium renderer processes under `pid`."""
    found = []
    for child in children(pid):
        try:
            # Chromium rewrites its command line as one string: look for the flag in it.
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"--type=renderer" in command:
            found.append(child)
    return found
