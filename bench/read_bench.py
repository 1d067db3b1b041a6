"""Reading benchmark: our reader against the in-page floor and Playwright's storage_state.

For each N, a page served from 127.0.0.1 fills one store with N records of about 250 bytes
(strings, numbers, a nested object, an array, a Date) in a persistent (disk-backed) profile, reads
it once to warm LevelDB's cache, then measures:
  (a) the in-page floor: `getAll()` + `JSON.stringify` of the whole store inside the page;
  (b) our reader end to end as `harvester dump` uses it on a local browser: OriginReader into
      Python, typed JSON texts in plain-text batches; (bz) the same with large batches deflated
      in the page (what a browser at `browser.connect_url` is read with); (bd) as (b), every
      value also decoded with codec.decode into Python objects;
  (c) Playwright's `context.storage_state(indexed_db=True)` on the same data — in a child
      process with its own browser and an identical store, so that its memory (over a GB at
      100k) cannot inflate the Python figures of (b).
(a) and the (b)s run three times for N up to 100k and the quickest run counts: on a shared machine
other work only ever slows a run down. Python's peak RSS is the kernel's high-water mark, reset
before each phase. The browser's peak (the sum of the PSS of the Chromium processes started under
this one) is sampled every 50 ms in one more, untimed run of each phase: sampling costs the
other core a share that would slow the timed run.

    python bench/read_bench.py                # N = 10k and 100k
    python bench/read_bench.py 10000 --1m     # add N = 1M
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import OwnPeak, PeakSampler, children, serve, status_field
from playwright.async_api import BrowserContext, Page, async_playwright

from harvester import codec
from harvester.browser import find_chromium, launch_args
from harvester.config import LimitsSettings
from harvester.reader import OriginReader

C_LIMIT_S = 180.0  # (c) is skipped when it would take longer than this

PAGE = """<!doctype html><meta charset="utf-8"><title>read bench</title><script>
function record(i) {
  return {
    id: i,
    name: "customer " + i + " of the read benchmark",
    email: "customer" + i + "@example.com",
    score: i * 1.25,
    visits: i % 1000,
    active: i % 3 === 0,
    tags: ["alpha", "beta", "tag-" + (i % 17)],
    address: { street: (i % 200) + " Long Street", city: "Springfield", zip: 10000 + (i % 9000) },
    created: new Date(1700000000000 + i * 1000),
    note: "lorem ipsum dolor sit amet " + i,
  };
}
function open() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open("bench", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("records", { keyPath: "id" });
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
async function fill(n) {
  const db = await open();
  for (let start = 0; start < n; start += 10000) {
    const tx = db.transaction("records", "readwrite");
    const store = tx.objectStore("records");
    for (let i = start; i < Math.min(n, start + 10000); i++) store.put(record(i));
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
    });
  }
  db.close();
  return n;
}
async function floor() {
  const db = await open();
  const t0 = performance.now();
  const all = await new Promise((resolve, reject) => {
    const r = db.transaction("records").objectStore("records").getAll();
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  const text = JSON.stringify(all);
  const ms = performance.now() - t0;
  db.close();
  return { ms, records: all.length, chars: text.length };
}
</script>"""


def _browser_pss_kb() -> int:
    """PSS of every Chromium process under this one (the Playwright driver, Node, is not counted).

    PSS, not RSS: Chromium's processes share most of their pages, which RSS would count again in
    every process.
    """
    tree = children()
    total = 0
    stack = list(tree.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        stack.extend(tree.get(pid, []))
        try:
            name = Path(f"/proc/{pid}/comm").read_text(encoding="ascii").strip()
        except OSError:
            continue
        if "chrom" in name:
            total += status_field(pid, "Pss:", "smaps_rollup")
    return total


def _browser_peak(sampled: bool, interval: float = 0.05) -> PeakSampler | nullcontext[Any]:
    """The browser's peak PSS while the block runs, if `sampled` (its `peaks` stay empty
    otherwise): walking /proc and each process's smaps costs a core's share, so timed runs are
    not sampled."""
    if not sampled:
        return nullcontext(PeakSampler(lambda: {}))
    return PeakSampler(lambda: {"browser": _browser_pss_kb() / 1024}, interval=interval)


@dataclass
class Phase:
    seconds: float
    python_mb: float
    browser_mb: float
    note: str = ""


async def _open(playwright: Any, profile: Path) -> tuple[BrowserContext, Page]:
    context = await playwright.chromium.launch_persistent_context(
        profile, executable_path=find_chromium(None), headless=True, args=launch_args()
    )
    page = context.pages[0] if context.pages else await context.new_page()
    return context, page


async def _filled(playwright: Any, profile: Path, url: str, n: int) -> tuple[BrowserContext, Page]:
    context, page = await _open(playwright, profile)
    await page.goto(url)
    await page.evaluate("n => fill(n)", n)
    await page.evaluate("floor()")  # warm-up: the first read after a launch is cold
    return context, page


async def floor_phase(page: Page, *, sampled: bool = False) -> Phase:
    with OwnPeak() as own, _browser_peak(sampled) as browser:
        result = await page.evaluate("floor()")
    return Phase(result["ms"] / 1000, own.mb, browser.peaks.get("browser", 0.0))


async def reader_phase(
    page: Page, *, compress: bool, decode: bool, sampled: bool = False
) -> tuple[Phase, int]:
    limits = LimitsSettings(page_timeout="120s")
    records = 0
    with OwnPeak() as own, _browser_peak(sampled) as browser:
        start = time.perf_counter()
        reader = OriginReader(page, limits=limits, compress=compress)
        try:
            for db in await reader.schema():
                for store in db.stores:
                    async for batch in reader.read_store(store):
                        if decode:
                            for record in batch:
                                codec.decode(record.value or "")
                        records += len(batch)
        finally:
            await reader.close()
        seconds = time.perf_counter() - start
    return Phase(seconds, own.mb, browser.peaks.get("browser", 0.0)), records


async def storage_state_phase(n: int) -> Phase:
    """(c), run in this (child) process: fill an identical store, warm up, time storage_state."""
    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp), PAGE) as url:
        async with async_playwright() as playwright:
            context, _page = await _filled(playwright, Path(tmp) / "profile", url, n)
            try:
                # One long run: sampled sparsely, so that the sampling costs it little.
                with OwnPeak() as own, _browser_peak(True, interval=0.25) as peak:
                    start = time.perf_counter()
                    try:
                        state = await asyncio.wait_for(
                            context.storage_state(indexed_db=True), C_LIMIT_S
                        )
                    except TimeoutError:
                        note = f"skipped: over {C_LIMIT_S:.0f} s"
                        return Phase(float("nan"), 0, 0, note)
                    seconds = time.perf_counter() - start
                stores = [
                    s for o in state["origins"] for d in o.get("indexedDB", []) for s in d["stores"]
                ]
                got = sum(len(s["records"]) for s in stores)
                note = "" if got == n else f"storage_state returned {got} records"
                return Phase(seconds, own.mb, peak.peaks["browser"], note)
            finally:
                await context.close()


def run_storage_state(n: int) -> Phase:
    """(c) in a child process (which stops it after C_LIMIT_S)."""
    command = [sys.executable, __file__, "--storage-state-child", str(n)]
    try:
        # The child also fills its store first; past this it is hung, not slow.
        done = subprocess.run(command, capture_output=True, text=True, timeout=C_LIMIT_S * 3)
    except subprocess.TimeoutExpired:
        return Phase(float("nan"), 0, 0, f"skipped: over {C_LIMIT_S:.0f} s")
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Phase(float("nan"), 0, 0, f"skipped: failed ({reason})")
    return Phase(**json.loads(done.stdout.strip().splitlines()[-1]))


def _best(phases: list[Phase]) -> Phase:
    """The quickest of the timed runs (a busy machine only ever slows a run; the last, sampled
    run is not timed), with the peak memory of all."""
    return Phase(
        min(p.seconds for p in phases[:-1]),
        max(p.python_mb for p in phases),
        max(p.browser_mb for p in phases),
    )


async def bench(n: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp), PAGE) as url:
        async with async_playwright() as playwright:
            context, page = await _filled(playwright, Path(tmp) / "profile", url, n)
            floors: list[Phase] = []
            ways = {"b": (False, False), "bz": (True, False), "bd": (False, True)}
            reads: dict[str, list[Phase]] = {name: [] for name in ways}
            try:
                # The timed runs, then one sampled run of each for the browser's memory.
                for run in range(runs + 1):
                    sampled = run == runs
                    floors.append(await floor_phase(page, sampled=sampled))
                    for name, (compress, decode) in ways.items():
                        read, records = await reader_phase(
                            page, compress=compress, decode=decode, sampled=sampled
                        )
                        if records != n:
                            raise SystemExit(f"the reader returned {records} records, not {n}")
                        reads[name].append(read)
            finally:
                await context.close()
    return {"n": n, "a": _best(floors), **{name: _best(reads[name]) for name in ways}}


def _rate(n: int, phase: Phase) -> str:
    return f"{n / phase.seconds:>11,.0f}/s" if phase.seconds == phase.seconds else "          —"


def report(n: int, a: Phase, b: Phase, bz: Phase, bd: Phase, c: Phase) -> None:
    print(f"\nN = {n:,}")
    rows = [
        ("(a) in-page floor", a),
        ("(b) reader → Python (dump)", b),
        ("(bz) the same, deflated batches", bz),
        ("(bd) (b), values decoded", bd),
        ("(c) storage_state", c),
    ]
    for name, phase in rows:
        seconds = f"{phase.seconds:8.2f} s" if phase.seconds == phase.seconds else "       — "
        memory = (
            f"python {phase.python_mb:5.0f} MB  browser {phase.browser_mb:6.0f} MB"
            if phase.python_mb
            else ""
        )
        print(f"  {name:<30} {seconds} {_rate(n, phase)}  {memory}  {phase.note}".rstrip())
    print(
        f"  b / a = {b.seconds / a.seconds:.2f}× (target ≤ 1.7×)   bz / a = "
        f"{bz.seconds / a.seconds:.2f}×   bd / a = {bd.seconds / a.seconds:.2f}×",
        end="",
    )
    if c.seconds == c.seconds:
        print(
            f"   c / bd = {c.seconds / bd.seconds:.1f}× faster"
            f"   python memory bd / c = {bd.python_mb / c.python_mb:.2f}"
        )
    else:
        print(f"   (c) {c.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, help="record counts (default 10000 100000)")
    parser.add_argument("--1m", dest="million", action="store_true", help="also N = 1,000,000")
    parser.add_argument("--no-storage-state", action="store_true", help="skip (c)")
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="runs of (a) and (b) per N up to 100k, the quickest counted (default 3; 1M: 1)",
    )
    parser.add_argument("--storage-state-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.storage_state_child:
        phase = asyncio.run(storage_state_phase(args.storage_state_child))
        print(json.dumps(phase.__dict__))
        return
    sizes = args.sizes or [10_000, 100_000]
    if args.million:
        sizes.append(1_000_000)
    print(f"read bench, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    projected: float | None = None  # seconds per record of (c), from the last size measured
    for n in sorted(sizes):
        result = asyncio.run(bench(n, args.runs if n <= 100_000 else 1))
        if args.no_storage_state:
            c = Phase(float("nan"), 0, 0, "skipped (--no-storage-state)")
        elif projected is not None and projected * n > 2 * C_LIMIT_S:
            # Clearly over (a small N's fixed costs make the projection high): not even tried.
            c = Phase(float("nan"), 0, 0, f"skipped: projected {projected * n:.0f} s > 3 min")
        else:
            c = run_storage_state(n)
            if c.seconds == c.seconds:
                projected = c.seconds / n
        report(n, result["a"], result["b"], result["bz"], result["bd"], c)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
