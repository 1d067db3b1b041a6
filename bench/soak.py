"""Load and soak (issue 8): `harvester run` with many demo targets on short intervals.

    .venv/bin/python bench/soak.py                        # 20 targets, 10 s interval, 10 minutes
    .venv/bin/python bench/soak.py --targets 5 --minutes 3

Serves the demo site, writes a config of N targets (each with its own persistent profile, the
default Flink sink, `keep_runs` high enough that no run of the soak is pruned), runs
`harvester run` as a subprocess, and every `--sample` seconds reads from /proc the daemon's RSS,
open fds and threads and the Flink worker's (its Python process plus its JVM) RSS and threads.
After SIGTERM it reads the state DB: every run committed or failed with a reason, nothing
pending, no spool file left; RSS and fds after the warm-up against the end; runs per minute.
Prints figures, asserts nothing (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import MB, children, free_port, rss, threads  # noqa: E402

from harvester.demo import serve_demo  # noqa: E402
from harvester.state import StateDB  # noqa: E402


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the daemon started
    rss: int
    fds: int
    threads: int
    flink_rss: int  # worker Python process + its JVM; 0 while no worker runs
    flink_threads: int


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def sample(daemon: int, started: float) -> Sample | None:
    try:
        fds = sum(1 for _ in Path(f"/proc/{daemon}/fd").iterdir())
    except OSError:
        return None
    flink_rss = flink_threads = 0
    tree = children()
    # The Flink worker is the daemon's child running flink_jobs.worker; its JVM is its child.
    for worker in (p for p in tree.get(daemon, []) if "flink_jobs.worker" in _cmdline(p)):
        for pid in (worker, *tree.get(worker, [])):
            flink_rss += rss(pid)
            flink_threads += threads(pid)
    return Sample(
        time.monotonic() - started, rss(daemon), fds, threads(daemon), flink_rss, flink_threads
    )


def write_config(folder: Path, *, targets: int, interval: int, demo_url: str, port: int) -> Path:
    text = f"""
[state]
dir = "state"
data_dir = "data"
keep_runs = 100000

[http]
port = {port}

[daemon]
shutdown_grace = "60s"
"""
    for index in range(targets):
        text += f"""
[[targets]]
name = "t{index:02d}"
url = "{demo_url}"
schedule = "{interval}s"
retries = 1

[targets.ready]
function = "window.demoReady === true"

[targets.auth]
profile_dir = "profiles/t{index:02d}"
"""
    path = folder / "harvester.toml"
    path.write_text(text)
    return path


def _mb(value: float) -> str:
    return f"{value / MB:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--interval", type=int, default=10, help="schedule of each target, s")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sample", type=float, default=10, help="seconds between samples")
    parser.add_argument("--warm-up", type=float, default=120, help="seconds before 'flat' counts")
    parser.add_argument("--keep", action="store_true", help="keep the soak folder")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="harvester-soak-"))
    demo = serve_demo(port=0)
    http_port = free_port()
    config = write_config(
        folder, targets=args.targets, interval=args.interval, demo_url=demo.url, port=http_port
    )
    log_path = folder / "daemon.log"
    print(
        f"soak: {args.targets} targets every {args.interval} s for {args.minutes:g} min, "
        f"default Flink sink; folder {folder}",
        flush=True,
    )
    samples: list[Sample] = []
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "harvester", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
        started = time.monotonic()
        deadline = started + args.minutes * 60
        print(" t(s)  rss(MB) fds thr  flink_rss(MB) flink_thr", flush=True)
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(min(args.sample, max(deadline - time.monotonic(), 0)))
            point = sample(process.pid, started)
            if point is not None:
                samples.append(point)
                print(
                    f"{point.at:5.0f}  {_mb(point.rss):>7} {point.fds:>3} {point.threads:>3}  "
                    f"{_mb(point.flink_rss):>13} {point.flink_threads:>9}",
                    flush=True,
                )
        stop_at = time.monotonic()
        crashed = process.poll()
        if crashed is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=180)
        drained = time.monotonic() - stop_at
    demo.close()
    elapsed = stop_at - started

    state_dir = folder / "state"
    with StateDB.open(state_dir, readonly=True) as state:
        runs = state.list_runs()
        pending = state.pending_runs()
    statuses = Counter(run.status for run in runs)
    no_reason = [r.id for r in runs if r.status == "failed" and not r.error]
    reasons = Counter((r.error or "")[:100] for r in runs if r.status == "failed")
    spool_left = (
        sorted(p.name for p in (state_dir / "spool").glob("*")) if state_dir.exists() else []
    )
    committed = [r for r in runs if r.status == "committed" and r.finished_at is not None]
    per_target = Counter(r.target for r in committed)
    log_text = log_path.read_text(errors="replace")
    skipped = log_text.count("maximum number of running instances reached")

    print()
    print(
        f"daemon: exit {code} ({'crashed' if crashed is not None else 'after SIGTERM'}), "
        f"drained in {drained:.1f} s; ran {elapsed:.0f} s"
    )
    print(
        f"runs: {dict(statuses)}; pending {len(pending)}; failed without a reason "
        f"{len(no_reason)}; spool files left {len(spool_left)} {spool_left[:5]}"
    )
    for reason, count in reasons.most_common(5):
        print(f"  failed x{count}: {reason}")
    fires = args.targets * elapsed / args.interval
    print(f"scheduled fires ≈ {fires:.0f}; fires skipped (target still running) {skipped}")
    minutes = elapsed / 60
    print(
        f"committed runs: {len(committed)} = {len(committed) / minutes:.1f}/min "
        f"(schedule asks {args.targets * 60 / args.interval:.0f}/min); per target "
        f"min {min(per_target.values(), default=0)} max {max(per_target.values(), default=0)}"
    )
    rows = sum(r.rows for r in committed)
    print(f"changelog rows committed: {rows}")
    if committed:
        durations = [(r.finished_at - r.started_at).total_seconds() for r in committed]
        print(
            f"run start→commit: median {statistics.median(durations):.1f} s, "
            f"max {max(durations):.1f} s"
        )
    # Committed runs per minute over the soak, to see whether the rate holds.
    first = min((r.started_at for r in runs), default=None)
    if first is not None:
        buckets = Counter(int((r.finished_at - first).total_seconds() // 60) for r in committed)
        print("committed per minute: " + " ".join(str(buckets[m]) for m in range(int(minutes) + 1)))
    after = [s for s in samples if s.at >= args.warm_up]
    if len(after) >= 2:
        head, tail = after[: max(len(after) // 4, 1)], after[-max(len(after) // 4, 1) :]
        for name, get in (
            ("rss MB", lambda s: s.rss / MB),
            ("fds", lambda s: s.fds),
            ("threads", lambda s: s.threads),
            ("flink rss MB", lambda s: s.flink_rss / MB),
            ("flink threads", lambda s: s.flink_threads),
        ):
            values = [get(s) for s in after]
            print(
                f"{name:>14}: after warm-up {statistics.mean(map(get, head)):.0f} → end "
                f"{statistics.mean(map(get, tail)):.0f} (min {min(values):.0f}, "
                f"max {max(values):.0f})"
            )
    else:
        print("too short to compare after the warm-up")
    if args.keep:
        print(f"kept {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
