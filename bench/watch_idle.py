"""The idle cost of watch mode: CPU seconds of the daemon and of Chromium over a quiet minute.

Two daemons in turn (`harvester run --sink jsonl`), each with one target on the page of
`tests/support/daemon.py` (IndexedDB written only when told, so idle here), scheduled once a
day: one with `watch.enabled`, whose page then stays open, and one without, whose browser
closes after the start-up run. After the start-up run (and, watched, the page attached), the
CPU time (utime + stime from /proc) of the daemon process, of the renderers and of the rest of
Chromium (browser, GPU, utility processes, Playwright's driver) is taken over `--seconds`.

    .venv/bin/python bench/watch_idle.py [--seconds 60] [--baseline-seconds S]
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

from common import descendants, free_port  # noqa: E402

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


def _sample(daemon_pid: int) -> dict[str, float]:
    """CPU seconds so far: the daemon, the renderers, and every other descendant."""
    figures = {"daemon": _cpu(daemon_pid), "renderers": 0.0, "other": 0.0}
    for pid in descendants(daemon_pid):
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
                daemon.wait_for("its browser closed", lambda: not descendants(daemon.proc.pid))
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
    parser.add_argument("--seconds", type=float, default=60.0, help="the watched daemon's window")
    parser.add_argument(
        "--baseline-seconds", type=float, help="the unwatched daemon's window (default: --seconds)"
    )
    args = parser.parse_args()
    baseline = args.seconds if args.baseline_seconds is None else args.baseline_seconds
    rows = {"unwatched": _measure(False, baseline), "watched": _measure(True, args.seconds)}
    head = ("daemon", "window s", "cpu s: daemon", "renderers", "other", "runs")
    print(
        " ".join(
            f"{name:>{width}}" for name, width in zip(head, (10, 9, 14, 10, 8, 5), strict=True)
        )
    )
    for name, r in rows.items():
        print(
            f"{name:>10} {r['window_s']:>9.0f} {r['daemon']:>14.2f} {r['renderers']:>10.2f} "
            f"{r['other']:>8.2f} {int(r['runs']):>5}"
        )

    def rate(name: str, *parts: str) -> float:
        return sum(rows[name][part] for part in parts) / rows[name]["window_s"]

    # The windows may differ: compare CPU per second, as a share of one core.
    extra = rate("watched", "daemon") - rate("unwatched", "daemon")
    page = rate("watched", "renderers")
    print(
        f"watched beyond unwatched: daemon {100 * extra:.2f}% of a core; the idle page's "
        f"renderers {100 * page:.2f}%; Chromium's other processes "
        f"{100 * (rate('watched', 'other') - rate('unwatched', 'other')):.2f}%"
    )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
