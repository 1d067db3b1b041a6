"""Load and soak (issue 8): `harvester run` with many demo targets on short intervals.

    .venv/bin/python bench/soak.py                        # 20 targets, 10 s interval, 10 minutes
    .venv/bin/python bench/soak.py --targets 5 --minutes 3
    .venv/bin/python bench/soak.py --watch --targets 20 --every 1000 --minutes 30
    .venv/bin/python bench/soak.py --watch --targets 1 --every 500 --big 20000 --minutes 3

`--watch` (issue 13): the targets are watched ticker pages (`tests/support/ticker.py`, scheduled
every `--interval` s as the safety net, a first full run at start that reads their `--big`
store), each writing a record stamped with `Date.now()` every `--every` ms once every page is
watched. It adds, from Flink's default sink (polled every 50 ms): the delay from each write to
its row (p50 / p90 / p95 / max, overall and per 5 minutes), the writes never seen there, and
how many runs read each big store; and the PSS of Chromium's processes (a sum of their RSS
would count the shared pages once per process).

Serves the demo site, writes a config of N targets (each with its own persistent profile, the
default Flink sink, so continuous delivery; `keep_runs` high enough that no run of the soak is
pruned), runs `harvester run` as a subprocess, and every `--sample` seconds reads from /proc the
daemon's RSS, open fds and threads, and the RSS of the continuous job's Flink worker (the
daemon's `python -m flink_jobs.worker` child) and of its JVM (the worker's child), with the
JVM's threads. After SIGTERM (the daemon then gives the job `daemon.shutdown_grace` to consume
what was handed off) it reads the state DB: every run committed or failed with a reason,
nothing pending, no spool file left; runs handed off to the log against runs consumed, the
hand-off → consumed lag, and the log files in `<state.dir>/flink-log` whose runs are not
consumed (0 after a clean stop); the first sample after the warm-up against the last (and the
means of the first and last quarters); runs committed and consumed per minute, and the fires
the daemon skipped (from its /metrics, just before the SIGTERM): with more targets than
`--concurrent` browsers can keep up with, runs queue and the rate is the browsers'.
Prints figures, asserts nothing (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import MB, children, descendants, free_port, percentile, pss, rss, threads  # noqa: E402

from harvester.demo import serve_demo  # noqa: E402
from harvester.sinks.log import ChangeLog  # noqa: E402
from harvester.state import Run, StateDB  # noqa: E402
from tests.support.daemon import WatchPageServer  # noqa: E402
from tests.support.ticker import TICKER_PAGE, SinkRows, tick_delays  # noqa: E402


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the daemon started
    rss: int
    fds: int
    threads: int
    worker_rss: int  # the Flink worker's Python process; 0 while none runs
    jvm_rss: int  # its JVM
    jvm_threads: int
    jvms: tuple[int, ...]  # their pids: a new one means the worker was restarted
    browser_pss: int  # every other process below the daemon (Chromium, Playwright's driver): PSS


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
    tree = children()
    # The continuous job's worker is the daemon's child running flink_jobs.worker (in a session
    # of its own, still the daemon's child); PyFlink starts its JVM as the worker's child.
    workers = [p for p in tree.get(daemon, []) if "flink_jobs.worker" in _cmdline(p)]
    jvms = tuple(jvm for worker in workers for jvm in tree.get(worker, []))
    flink = {*workers, *jvms, *(p for w in workers for p in descendants(w, tree))}
    return Sample(
        at=time.monotonic() - started,
        rss=rss(daemon),
        fds=fds,
        threads=threads(daemon),
        worker_rss=sum(rss(pid) for pid in workers),
        jvm_rss=sum(rss(pid) for pid in jvms),
        jvm_threads=sum(threads(pid) for pid in jvms),
        jvms=jvms,
        browser_pss=sum(pss(p) for p in descendants(daemon, tree) if p not in flink),
    )


def skipped_fires(port: int) -> int | None:
    """Fires the daemon skipped because the target's run was still going, from its /metrics
    (it no longer logs them); None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    return round(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("harvester_runs_skipped_total")
        )
    )


def write_config(
    folder: Path,
    *,
    targets: int,
    interval: int,
    concurrent: int,
    demo_url: str,
    port: int,
    watch: bool = False,
) -> Path:
    text = f"""
[state]
dir = "state"
data_dir = "data"
keep_runs = 100000

[http]
port = {port}

[daemon]
shutdown_grace = "60s"
max_concurrent_harvests = {concurrent}
run_on_start = {str(watch).lower()}
"""
    ready = "window.watchReady === true" if watch else "window.demoReady === true"
    for index in range(targets):
        text += f"""
[[targets]]
name = "t{index:02d}"
url = "{demo_url}"
schedule = "{interval}s"
retries = 1

[targets.ready]
function = "{ready}"

[targets.auth]
profile_dir = "profiles/t{index:02d}"

[targets.watch]
enabled = {str(watch).lower()}
"""
    path = folder / "harvester.toml"
    path.write_text(text)
    return path


def _watching(port: int, targets: int) -> bool:
    """Whether every target's page is watched (its first full run done), from /healthz."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            body = json.loads(answer.read())
    except OSError as exc:
        body = json.loads(exc.read()) if isinstance(exc, urllib.error.HTTPError) else {}
    states = [
        (t.get("watch", {}).get("state"), t.get("last_status"))
        for t in body.get("targets", {}).values()
    ]
    return len(states) == targets and all(s == ("watching", "committed") for s in states)


def _report_ticks(
    wrote: list[dict[str, Any]], sink: SinkRows, runs: list[Run], state_dir: Path
) -> None:
    """The watch figures: write → sink delays, writes missed, reads of the big stores."""
    delays = tick_delays(wrote, sink.rows())
    seen = [d for d in delays.values() if d is not None]
    print(
        f"\nwrites reported by the pages: {len(delays)}; in the sink: {len(seen)}; "
        f"missed {len(delays) - len(seen)}"
    )
    if seen:
        print("write → row in the default sink: " + _spread(seen))
    started = {w["key"]: w["at"] / 1000 for w in wrote if w.get("store") == "ticks"}
    if started:
        first = min(started.values())
        windows: dict[int, list[float]] = {}
        for key, delay in delays.items():
            if delay is not None:
                windows.setdefault(int((started[key] - first) // 300), []).append(delay)
        for window, values in sorted(windows.items()):
            print(f"  minutes {5 * window:>2}–{5 * window + 5:<2}: " + _spread(values))
    with StateDB.open(state_dir, readonly=True) as state:
        big = Counter(
            run.target
            for run in runs
            if any(f"{s.db}/{s.store}" == "app/big" for s in state.run_stores(run.id))
        )
    events = sum(1 for r in runs if r.trigger == "event")
    print(
        f"event-driven runs {events}; runs that read a big store, per target: "
        f"min {min(big.values(), default=0)} max {max(big.values(), default=0)}"
    )


def _spread(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5):.2f} s, p90 {percentile(values, 0.9):.2f} s, "
        f"p95 {percentile(values, 0.95):.2f} s, max {max(values):.2f} s ({len(values)} writes)"
    )


def _mb(value: float) -> str:
    return f"{value / MB:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--interval", type=int, default=10, help="schedule of each target, s")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sample", type=float, default=10, help="seconds between samples")
    parser.add_argument("--warm-up", type=float, default=120, help="seconds before 'flat' counts")
    parser.add_argument(
        "--concurrent", type=int, default=2, help="daemon.max_concurrent_harvests (its default)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the soak folder")
    parser.add_argument("--watch", action="store_true", help="watched ticker pages (see above)")
    parser.add_argument("--every", type=int, default=1000, help="--watch: ms between writes")
    parser.add_argument("--big", type=int, default=1000, help="--watch: records of the big store")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="harvester-soak-"))
    page = WatchPageServer(TICKER_PAGE) if args.watch else None
    demo = serve_demo(port=0) if page is None else None
    http_port = free_port()
    config = write_config(
        folder,
        targets=args.targets,
        interval=args.interval,
        concurrent=args.concurrent,
        demo_url=f"{page.url}?big={args.big}" if page is not None else demo.url if demo else "",
        port=http_port,
        watch=args.watch,
    )
    log_path = folder / "daemon.log"
    kind = f"watched, a write every {args.every} ms" if args.watch else "demo"
    print(
        f"soak: {args.targets} targets ({kind}) every {args.interval} s for {args.minutes:g} "
        f"min, default Flink sink; folder {folder}",
        flush=True,
    )
    samples: list[Sample] = []
    sink = SinkRows(folder / "data" / "changes")
    with log_path.open("wb") as log, sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "harvester", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
        started = time.monotonic()
        deadline = started + args.minutes * 60
        print(" t(s)  rss(MB) fds thr  worker(MB) jvm(MB) jvm_thr  browser(PSS MB)", flush=True)
        ticking = page is None
        while time.monotonic() < deadline and process.poll() is None:
            if not ticking and page is not None and _watching(http_port, args.targets):
                ticking = True
                # Stopped short of the end, so that the last writes have time to arrive.
                count = int((deadline - time.monotonic() - 15) * 1000 / args.every)
                page.send({"op": "tick", "every": args.every, "count": max(count, 0)})
                print(f"every page watched at t={time.monotonic() - started:.0f} s: ticking")
            time.sleep(min(args.sample, max(deadline - time.monotonic(), 0)))
            point = sample(process.pid, started)
            if point is not None:
                samples.append(point)
                print(
                    f"{point.at:5.0f}  {_mb(point.rss):>7} {point.fds:>3} {point.threads:>3}  "
                    f"{_mb(point.worker_rss):>10} {_mb(point.jvm_rss):>7} "
                    f"{point.jvm_threads:>7}  {_mb(point.browser_pss):>11}",
                    flush=True,
                )
        stop_at = time.monotonic()
        skipped = skipped_fires(http_port)
        crashed = process.poll()
        if crashed is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=180)
        drained = time.monotonic() - stop_at
        sink.poll()
    if demo is not None:
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
    # A run with rows goes into the log and waits for the job; one without is consumed at commit.
    handed = [r for r in committed if r.log_seq is not None]
    consumed = [r for r in handed if r.consumed_at is not None]
    by_id = {r.id: r for r in runs}
    change_log = ChangeLog(state_dir / "flink-log")
    unconsumed_files = sorted(
        item.path.name
        for item in change_log.files()
        if item.run_id not in by_id or by_id[item.run_id].consumed_at is None
    )
    set_aside = sum(1 for _ in change_log.files(consumed=True))

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
    print(
        f"handed off to the log: {len(handed)} runs, consumed {len(consumed)} "
        f"({len(consumed) / minutes:.1f}/min; {len(committed) - len(handed)} committed without "
        f"rows, consumed at commit); consumed rows "
        f"{sum(r.consumed_rows for r in handed)} of {sum(r.rows for r in handed)}"
    )
    print(
        f"log files of runs not consumed, left in flink-log: {len(unconsumed_files)} "
        f"{unconsumed_files[:5]}; set aside as consumed in _consumed/: {set_aside}"
    )
    lags = [
        (r.consumed_at - r.handed_off_at).total_seconds()
        for r in consumed
        if r.consumed_at is not None and r.handed_off_at is not None
    ]
    if lags:
        print(f"hand-off → consumed: median {statistics.median(lags):.1f} s, max {max(lags):.1f} s")
    if committed:
        durations = [(r.finished_at - r.started_at).total_seconds() for r in committed]
        median = statistics.median(durations)
        # The browsers, not the schedule, bound the rate once runs queue for them.
        print(
            f"run start→commit: median {median:.1f} s, max {max(durations):.1f} s; "
            f"{args.concurrent} harvests at once allow ≈ {args.concurrent * 60 / median:.0f}/min"
        )
    # Runs committed and consumed per minute over the soak, to see whether the rates hold.
    first = min((r.started_at for r in runs), default=None)
    if first is not None:
        for label, moments in (
            ("committed", [r.finished_at for r in committed]),
            ("consumed", [r.consumed_at for r in consumed]),
        ):
            buckets = Counter(int((at - first).total_seconds() // 60) for at in moments if at)
            print(
                f"{label} per minute: " + " ".join(str(buckets[m]) for m in range(int(minutes) + 1))
            )
    after = [s for s in samples if s.at >= args.warm_up]
    if len(after) >= 2:
        head, tail = after[: max(len(after) // 4, 1)], after[-max(len(after) // 4, 1) :]
        print(
            f"from t={after[0].at:.0f} s to t={after[-1].at:.0f} s: first sample → last "
            f"(means of the first and last quarters; min, max)"
        )
        for name, get in (
            ("rss MB", lambda s: s.rss / MB),
            ("fds", lambda s: s.fds),
            ("threads", lambda s: s.threads),
            ("worker MB", lambda s: s.worker_rss / MB),
            ("JVM MB", lambda s: s.jvm_rss / MB),
            ("JVM threads", lambda s: s.jvm_threads),
            ("Chromium PSS MB", lambda s: s.browser_pss / MB),
        ):
            values = [get(s) for s in after]
            print(
                f"{name:>14}: {get(after[0]):.0f} → {get(after[-1]):.0f} "
                f"({statistics.mean(map(get, head)):.0f} → {statistics.mean(map(get, tail)):.0f}; "
                f"min {min(values):.0f}, max {max(values):.0f})"
            )
        jvms = sorted({pid for s in samples for pid in s.jvms})
        print(f"Flink JVMs seen: {len(jvms)} {jvms} (more than one: the worker was restarted)")
    else:
        print("too short to compare after the warm-up")
    if page is not None:
        page.close()
        _report_ticks(page.wrote(), sink, runs, state_dir)
    if args.keep:
        print(f"kept {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
