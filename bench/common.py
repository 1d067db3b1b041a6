"""What the benchmarks share: a page server on 127.0.0.1, ports, and process sizes from /proc."""

from __future__ import annotations

import functools
import http.server
import math
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

MB = 1024 * 1024


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(root: Path, page: str) -> Iterator[str]:
    """Serve `page` as `root/index.html` from 127.0.0.1; yields its URL."""
    (root / "index.html").write_text(page, encoding="utf-8")
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    finally:
        httpd.shutdown()
        httpd.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def status_field(pid: int, field: str, name: str = "status") -> int:
    """The number of a field of /proc/<pid>/<name> (`VmRSS:` in kB, `Threads:`); 0 if the
    process is gone."""
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text(encoding="ascii").splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss(pid: int | None) -> int:
    """Resident size in bytes; 0 for no process."""
    return status_field(pid, "VmRSS:") * 1024 if pid else 0


def pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages split among their sharers: sums of it are
    honest where sums of RSS count each shared library once per process); 0 once gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def threads(pid: int) -> int:
    return status_field(pid, "Threads:")


def children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text(encoding="ascii")
            except OSError:
                continue  # it ended while /proc was read
            tree.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    return tree


def descendants(pid: int, tree: dict[int, list[int]] | None = None) -> list[int]:
    """Every process below `pid` (in `tree`, or /proc now)."""
    tree = children() if tree is None else tree
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class PeakSampler:
    """Peaks of the figures `probe` returns, sampled every `interval` s while the block runs."""

    def __init__(self, probe: Callable[[], dict[str, float]], *, interval: float = 0.05) -> None:
        self.peaks: dict[str, float] = {}
        self._probe = probe
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for name, value in self._probe().items():
            self.peaks[name] = max(self.peaks.get(name, 0), value)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> PeakSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class OwnPeak:
    """This process's peak resident size in MB (`mb`) while the block runs, from the kernel's
    high-water mark, reset on entry: nothing is sampled, so it costs the timed work nothing
    (a sampling thread contends for the GIL and a core with what it measures)."""

    mb: float = 0.0
    _cleared: float = 0.0  # the highest mark a reset cleared, for `whole_run`

    @staticmethod
    def _mark() -> float:
        return status_field(os.getpid(), "VmHWM:") / 1024

    def __enter__(self) -> OwnPeak:
        OwnPeak._cleared = max(OwnPeak._cleared, self._mark())
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.mb = self._mark()

    @staticmethod
    def whole_run() -> float:
        """The process's peak resident size in MB since it started, resets included."""
        return max(OwnPeak._cleared, OwnPeak._mark())


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: a measured value, not an interpolation."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]
