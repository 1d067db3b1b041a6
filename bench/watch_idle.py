"""The idle cost of watch mode: CPU seconds of the daemon and of Chromium over a quiet minute.

Two daemons in turn (`harvester run --sink jsonl`), each with one target on the page of
`tests/support/daemon.py` (IndexedDB written only when told, so idle here), scheduled once a
day: one with `watch.enabled`, whose page then stays open, and one without, whose browser
closes after the start-up run. After the start-up run (and, watched, the page attached), the
CPU time (utime + stime from /proc) of the daemon process, of the renderers and of the rest of
Chromium (browser, GPU, utility processes, Playwright's driver) is taken over `--seconds`.

    .venv/bin/python bench/watch_idle.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import children, free_port  # noqa: E402

from harvester.state import StateDB  # noqa: E402
from tests.support.daemon import DaemonProcess, WatchPageServer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of `pid`; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _descendants(pid: int) -> list[int]:
    tree, found, todo = children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _sample(daemon_pid: int) -> dict[str, float]:
    """CPU seconds so far: the daemon, the renderers, and every other descendant."""
    figures = {"daemon": _cpu(daemon_pid), "renderers": 0.0, "other": 0.0}
    for pid in _descendants(daemon_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        figures["renderers" if b"--type=renderer" in command else "other"] += _cpu(pid)
    return figures


def _measure(watched: bool, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        base, page, port = Path(folder), WatchPageServer(), free_port()
        (base / "harvester.toml").write_text(
            f"""
[state]
dir = "state"
data_dir = "data"
[http]
port = {port}
[daemon]
run_on_start = true
[[targets]]
name = "idle"
url = "{page.url}"
schedule = "24h"
[targets.ready]
function = "window.watchReady === true"
[targets.auth]
profile_dir = "profile"
[targets.watch]
enabled = {str(watched).lower()}
"""
        )
        daemon = DaemonProcess(base / "harvester.toml", port)
        try:

            def settled() -> bool:
                target = daemon.health()["targets"]["idle"]
                if target["last_status"] != "committed":
                    return False
                return target["watch"]["state"] == "watching" if watched else not target["running"]

            daemon.wait_for("the start-up run", settled, timeout=180)
            if not watched:
                # The start-up run's browser closes after its commit: wait until it is gone.
                daemon.wait_for("its browser closed", lambda: not _descendants(daemon.proc.pid))
            before, start = _sample(daemon.proc.pid), time.monotonic()
            time.sleep(seconds)  # the measurement window itself
            after, took = _sample(daemon.proc.pid), time.monotonic() - start
            with StateDB.open(base / "state", readonly=True) as state:
                runs = len(state.list_runs())
            daemon.stop()
        finally:
            daemon.close()
            page.close()
    result = {name: after[name] - before[name] for name in after}
    result["window_s"] = took
    result["runs"] = runs
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    rows = {"unwatched": _measure(False, args.seconds), "watched": _measure(True, args.seconds)}
    print(f"{'daemon':>10} {'cpu s: daemon':>14} {'renderers':>10} {'other':>8} {'runs':>5}")
    for name, r in rows.items():
        print(
            f"{name:>10} {r['daemon']:>14.2f} {r['renderers']:>10.2f} {r['other']:>8.2f} "
            f"{int(r['runs']):>5}"
        )
    extra = sum(rows["watched"][k] - rows["unwatched"][k] for k in ("daemon", "renderers"))
    window = rows["watched"]["window_s"]
    print(f"watched beyond unwatched (daemon + renderers): {extra:.2f} s CPU in {window:.0f} s")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
