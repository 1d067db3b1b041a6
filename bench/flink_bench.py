"""Flink benchmark (issue 5): the pipeline against a plain writer, the sources, fixed costs, soak.

    .venv/bin/python bench/flink_bench.py                    # N = 10k, 100k: (a) (b) (c), costs
    .venv/bin/python bench/flink_bench.py --big              # adds N = 1M
    .venv/bin/python bench/flink_bench.py --only fixed --modes embedded,local-cluster
    .venv/bin/python bench/flink_bench.py --only soak --soak 200 [--jobs-per-worker 30]
    .venv/bin/python bench/flink_bench.py --only profile     # where a warm job's time goes

(a) our pipeline with the default sinks through `FlinkForwarder` (a warm embedded worker), per
source; (b) the floor: a plain Python writer of the same rows as JSON lines; (c) the source
variants side by side — streamed `from_collection`, `from_pandas`, the file source — one job
each in a fresh process; fixed cost per job with a warm process, embedded and local-cluster;
peak RSS of the Python and JVM processes; the soak (JVM RSS, threads and temp files every 20
jobs). Rows are ~300 bytes, like the design's changelog rows. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import MB, PeakSampler, free_port, rss  # noqa: E402

from flink_jobs.forwarder import FlinkForwarder, plan_jobs  # noqa: E402
from flink_jobs.protocol import JobResult  # noqa: E402
from flink_jobs.runner import FlinkRunner  # noqa: E402
from harvester.config import Settings  # noqa: E402
from harvester.spool import SpoolFile  # noqa: E402


def make_spool(
    folder: Path, run_id: str, rows: int, target: str = "bench", *, value_bytes: int = 0
) -> SpoolFile:
    """`rows` changelog rows of ~300 bytes (a third updates, a tenth deletes); `value_bytes`
    pads each value's JSON to about that size (0: ~60 bytes, no padding)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.jsonl"
    with path.open("wb") as out:
        for index in range(rows):
            op = "-D" if index % 10 == 9 else "+U" if index % 3 == 1 else "+I"
            value = old = None
            if op != "-D":
                record: dict[str, object] = {
                    "id": index,
                    "name": f"item {index}",
                    "price": index % 997 / 10,
                    "tags": ["a"],
                }
                if value_bytes:
                    record["note"] = "x" * max(value_bytes - len(orjson.dumps(record)) - 10, 0)
                value = orjson.dumps(record).decode()
            if op != "+I":
                old = orjson.dumps({"id": index, "name": f"item {index}", "tags": []}).decode()
            row = {
                "run_id": run_id,
                "target": target,
                "origin": "https://app.example.com",
                "db_name": "shop",
                "db_version": 3,
                "store": ("items", "orders", "users")[index % 3],
                "key": str(index),
                "op": op,
                "value": value,
                "old_value": old,
                "value_hash": f"{index:064x}",
                "harvested_at": f"2026-11-26T15:{index // 60000 % 60:02d}:00.{index % 1000:03d}Z",
            }
            out.write(orjson.dumps(row) + b"\n")
    return SpoolFile(run_id, target, path, rows)


def cpu_seconds(pids: dict[str, int | None]) -> float:
    """User + system CPU time of these processes so far: a figure the machine's load does not
    inflate the way it inflates wall time."""
    total = 0
    for pid in pids.values():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _sizes(pids: dict[str, int | None]) -> dict[str, float]:
    return {name: rss(pid) for name, pid in pids.items()}


def worker_pids(runner: FlinkRunner) -> dict[str, int | None]:
    worker = runner._worker
    if worker is None:
        return {}
    return {"python": worker._process.pid, "jvm": worker.jvm_pid}


def config(work: Path, **flink: Any) -> Settings:
    return Settings.model_validate(
        {"state": {"dir": str(work / "state"), "data_dir": str(work / "data")}, "flink": flink}
    )


def human(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows >= 1_000_000 else f"{rows // 1000}k"


# ---- (b) the floor ------------------------------------------------------------------------------


def floor(spool: SpoolFile, out: Path) -> float:
    """Read the spool and write every row as a JSON line: what any sink has to do at least."""
    started = time.perf_counter()
    with spool.path.open("rb") as lines, out.open("wb") as sink:
        for line in lines:
            sink.write(orjson.dumps(orjson.loads(line)) + b"\n")
    return time.perf_counter() - started


# ---- (a) the pipeline ---------------------------------------------------------------------------


def bench_pipeline(work: Path, spools: dict[int, SpoolFile], sources: list[str]) -> None:
    print("\n(a) pipeline with the default sinks (warm embedded worker) vs (b) plain JSON writer")
    print(
        f"{'rows':>6} {'source':>10} {'jobs':>4} {'seconds':>8} {'x floor':>8} "
        f"{'py MB':>6} {'jvm MB':>7} {'floor s':>8} {'CPU s':>6}"
    )
    for source in sources:
        folder = work / f"pipeline-{source}"
        shutil.rmtree(folder, ignore_errors=True)
        settings = config(folder, source=source, jobs_per_worker=1000)
        with FlinkForwarder(settings) as forwarder:
            forwarder.start()
            forwarder.send([make_spool(folder / "spool", "warm", 10)])
            for rows, spool in spools.items():
                floor_seconds = floor(spool, folder / "floor.jsonl")
                pids = worker_pids(forwarder.runner)
                cpu = cpu_seconds(pids)
                started = time.perf_counter()
                with PeakSampler(lambda: _sizes(worker_pids(forwarder.runner))) as peaks:
                    forwarder.send([spool])
                seconds = time.perf_counter() - started
                cpu = cpu_seconds(pids) - cpu
                jobs = len(
                    plan_jobs(
                        [spool], settings.flink.max_rows_per_job, whole_spools=source == "file"
                    )
                )
                if worker_pids(forwarder.runner) != pids:
                    cpu = float("nan")  # the worker was replaced mid-way: its CPU time is lost
                print(
                    f"{human(rows):>6} {source:>10} {jobs:>4} {seconds:8.1f} "
                    f"{seconds / floor_seconds:8.1f} {peaks.peaks.get('python', 0) / MB:6.0f} "
                    f"{peaks.peaks.get('jvm', 0) / MB:7.0f} {floor_seconds:8.2f} {cpu:6.1f}",
                    flush=True,
                )


# ---- (c) the source variants, each in a fresh process -------------------------------------------


def register_pandas(t_env: Any, spool: SpoolFile) -> None:
    """`change_log` through the Arrow path (`from_pandas`), for comparison only."""
    import pandas as pd
    from pyflink.table import DataTypes

    from flink_jobs.pipeline import COLUMNS

    columns: dict[str, list[Any]] = {name: [] for name, _ in COLUMNS}
    with spool.path.open("rb") as lines:
        for line in lines:
            row = orjson.loads(line)
            for name in columns:
                columns[name].append(row[name])
    frame = pd.DataFrame(columns)
    frame["harvested_at"] = pd.to_datetime(frame["harvested_at"], utc=True, format="ISO8601")
    kinds = {"BIGINT": DataTypes.BIGINT(), "STRING": DataTypes.STRING()}
    schema = [kinds.get(kind, DataTypes.TIMESTAMP_LTZ(3)) for _, kind in COLUMNS]
    t_env.create_temporary_view("change_log", t_env.from_pandas(frame, schema))


def variant_child(variant: str, spool_path: Path, rows: int, work: Path) -> None:
    """Run one job with one source variant in this process; print its figures as JSON."""
    from flink_jobs import pipeline
    from flink_jobs.protocol import JobSpec, SpoolSlice
    from flink_jobs.worker import Session, _prepare_tmp

    os.environ.update(FLINK_LOG_DIR=str(work / "logs"), ROOT_LOG_LEVEL="WARN")
    session = Session("embedded", _prepare_tmp(work / "tmp"), 1)
    session.handle(("warm-up", session.warm_up_spec("batch", "collection")))
    spool = SpoolFile("variant", "bench", spool_path, rows)
    spec = JobSpec(
        name=f"variant {variant}",
        slices=(SpoolSlice(spool.run_id, spool.target, spool.path),),
        rows=rows,
        runtime="batch",
        source="file" if variant == "file" else "collection",
        parallelism=1,
        statements=(),
        data_dir=work / "data",
        jars=(),
    )
    started = time.perf_counter()
    with PeakSampler(lambda: _sizes({"python": os.getpid(), "jvm": session.jvm_pid})) as peaks:
        env = session.environment(spec)
        t_env = pipeline.table_env(env, spec)
        if variant == "pandas":
            register_pandas(t_env, spool)
        elif variant == "file":
            pipeline.register_file_source(t_env, spec.slices, streaming=False)
        else:
            pipeline.register_collection_source(env, t_env, spec.slices, streaming=False)
        statement_set = t_env.create_statement_set()
        for sql in pipeline.default_sinks(t_env, spec.data_dir, streaming=False):
            statement_set.add_insert_sql(sql)
        statement_set.execute().wait()
    print(
        "RESULT "
        + json.dumps(
            {
                "seconds": time.perf_counter() - started,
                "python": peaks.peaks.get("python", 0),
                "jvm": peaks.peaks.get("jvm", 0),
            }
        ),
        flush=True,
    )
    session.close()


def bench_variants(work: Path, spools: dict[int, SpoolFile], variants: list[str]) -> None:
    print("\n(c) source variants: one job each in a fresh process (after a warm-up job)")
    print(f"{'rows':>6} {'variant':>10} {'seconds':>8} {'py MB':>6} {'jvm MB':>7}")
    for rows, spool in spools.items():
        for variant in variants:
            folder = work / f"variant-{variant}-{rows}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            command = [
                sys.executable,
                __file__,
                "--child-variant",
                variant,
                "--child-spool",
                str(spool.path),
                "--child-rows",
                str(rows),
                "--work-dir",
                str(folder),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if not found:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{human(rows):>6} {variant:>10}   failed: {tail[:150]}", flush=True)
                continue
            result = json.loads(found[0].removeprefix("RESULT "))
            print(
                f"{human(rows):>6} {variant:>10} {result['seconds']:8.1f} "
                f"{result['python'] / MB:6.0f} {result['jvm'] / MB:7.0f}",
                flush=True,
            )


# ---- fixed cost per job -------------------------------------------------------------------------


def bench_fixed(work: Path, modes: list[str], jobs: int) -> None:
    print(f"\nfixed cost per job, warm process: {jobs} jobs of 10 rows after a first one")
    print(
        f"{'mode':>14} {'runtime':>9} {'source':>10} {'first s':>8} {'median':>7} {'min':>6} "
        f"{'build':>6} {'submit':>7} {'run':>6} {'CPU s':>6}"
    )
    for mode in modes:
        for runtime, source in (
            ("batch", "collection"),
            ("batch", "file"),
            ("streaming", "collection"),
        ):
            folder = work / f"fixed-{mode}-{runtime}-{source}"
            shutil.rmtree(folder, ignore_errors=True)
            address = f"localhost:{free_port()}" if mode == "local-cluster" else None
            settings = config(
                folder,
                mode=mode,
                address=address,
                runtime=runtime,
                source=source,
                jobs_per_worker=1000,
            )
            spool = make_spool(folder / "spool", "fixed", 10)
            with FlinkRunner(settings) as runner:
                runner.start()
                started = time.perf_counter()
                runner.run([_whole(spool)], spool.rows)
                first = time.perf_counter() - started
                results: list[JobResult] = []
                cpu = []
                for _ in range(jobs):
                    pids = worker_pids(runner)
                    before = cpu_seconds(pids)
                    results.append(runner.run([_whole(spool)], spool.rows))
                    cpu.append(cpu_seconds(pids) - before)
            seconds = [result.seconds for result in results]
            build = statistics.median(result.build_seconds for result in results)
            submit = statistics.median(result.submit_seconds for result in results)
            print(
                f"{mode:>14} {runtime:>9} {source:>10} {first:8.1f} "
                f"{statistics.median(seconds):7.2f} {min(seconds):6.2f} {build:6.2f} "
                f"{submit:7.2f} {statistics.median(seconds) - build - submit:6.2f} "
                f"{statistics.median(cpu):6.2f}",
                flush=True,
            )


def _whole(spool: SpoolFile) -> Any:
    from flink_jobs.protocol import SpoolSlice

    return SpoolSlice(spool.run_id, spool.target, spool.path)


# ---- where a warm job's time goes ---------------------------------------------------------------


def profile_child(work: Path, jobs: int) -> None:
    """A MiniCluster per job (PyFlink's local execution) against one MiniCluster per worker."""
    from pyflink.common import Configuration
    from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment

    from flink_jobs import pipeline
    from flink_jobs.protocol import JobSpec
    from flink_jobs.worker import Session, _prepare_tmp

    os.environ.update(FLINK_LOG_DIR=str(work / "logs"), ROOT_LOG_LEVEL="WARN")
    session = Session("embedded", _prepare_tmp(work / "tmp"), 1)
    spool = make_spool(work / "spool", "profile", 10)
    spec = JobSpec("profile", (_whole(spool),), 10, "batch", "collection", 1, (), work / "data", ())

    def one(env: Any) -> tuple[float, float, float]:
        started = time.perf_counter()
        env.set_parallelism(1)
        env.set_runtime_mode(RuntimeExecutionMode.BATCH)
        t_env = pipeline.table_env(env, spec)
        statement_set = pipeline.build_job(env, t_env, spec)
        built = time.perf_counter()
        statement_set.explain()
        planned = time.perf_counter()
        statement_set.execute().wait()
        done = time.perf_counter()
        session.clean()
        return built - started, planned - built, done - planned

    for label, make in (
        (
            "MiniCluster per job",
            lambda: StreamExecutionEnvironment.get_execution_environment(Configuration()),
        ),
        ("one MiniCluster per worker", lambda: session.environment(spec)),
    ):
        for _ in range(3):
            one(make())
        timings = [one(make()) for _ in range(jobs)]
        build, plan, execute = (statistics.median(column) for column in zip(*timings, strict=True))
        print(
            f"{label:>28}: build {build:.2f} s, plan (explain) {plan:.2f} s, "
            f"optimize+submit+run {execute:.2f} s, total {build + plan + execute:.2f} s",
            flush=True,
        )
    session.close()


# ---- soak ---------------------------------------------------------------------------------------


def bench_soak(work: Path, jobs: int, jobs_per_worker: int) -> None:
    print(f"\nsoak: {jobs} jobs of 100 rows, embedded, jobs_per_worker = {jobs_per_worker}")
    print(
        f"{'job':>5} {'daemon MB':>9} {'worker py MB':>12} {'JVM MB':>7} {'threads':>7} "
        f"{'temp files':>10} {'last job s':>10}"
    )
    folder = work / "soak"
    shutil.rmtree(folder, ignore_errors=True)
    settings = config(folder, jobs_per_worker=jobs_per_worker)
    spool = make_spool(folder / "spool", "soak", 100)
    with FlinkRunner(settings) as runner:
        runner.start()
        for number in range(1, jobs + 1):
            result = runner.run([_whole(spool)], spool.rows)
            if number % 20 == 0:
                if runner._worker is not None:
                    # Just replaced: measure the new worker once it is up, as the next job would.
                    runner._worker._wait_ready()
                stats = runner.worker_stats()
                temp_files = sum(len(files) for _, _, files in os.walk(folder / "state"))
                print(
                    f"{number:>5} {rss(os.getpid()) / MB:9.0f} "
                    f"{(stats.python_rss if stats else 0) / MB:12.0f} "
                    f"{(stats.jvm_rss if stats else 0) / MB:7.0f} "
                    f"{stats.jvm_threads if stats else 0:>7} {temp_files:>10} "
                    f"{result.seconds:10.2f}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="10000,100000", help="comma-separated N")
    parser.add_argument("--big", action="store_true", help="also N = 1,000,000")
    parser.add_argument(
        "--only",
        default="pipeline,variants,fixed",
        help="pipeline, variants, fixed, profile, soak (comma-separated)",
    )
    parser.add_argument("--sources", default="collection,file")
    parser.add_argument("--variants", default="collection,pandas,file")
    parser.add_argument("--modes", default="embedded,local-cluster")
    parser.add_argument("--fixed-jobs", type=int, default=10)
    parser.add_argument("--soak", type=int, default=200)
    parser.add_argument("--jobs-per-worker", type=int, default=30)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/flink-bench"))
    parser.add_argument("--child-variant", help=argparse.SUPPRESS)
    parser.add_argument("--child-spool", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    if args.child_variant:
        variant_child(args.child_variant, args.child_spool, args.child_rows, work)
        return
    if args.child_profile:
        profile_child(work, args.fixed_jobs)
        return
    only = args.only.split(",")
    counts = [int(n) for n in args.rows.split(",")] + ([1_000_000] if args.big else [])
    logging.basicConfig(level=logging.WARNING)
    spools = {}
    if {"pipeline", "variants"} & set(only):
        for rows in counts:
            path = work / "spools" / f"bench-{rows}.jsonl"
            spools[rows] = (
                SpoolFile(f"bench-{rows}", "bench", path, rows)
                if path.exists()
                else make_spool(work / "spools", f"bench-{rows}", rows)
            )
        sizes = ", ".join(
            f"{human(r)}: {s.path.stat().st_size / r:.0f} B/row" for r, s in spools.items()
        )
        print(f"spools: {sizes}")
    if "pipeline" in only:
        bench_pipeline(work, spools, args.sources.split(","))
    if "variants" in only:
        bench_variants(work, spools, args.variants.split(","))
    if "fixed" in only:
        bench_fixed(work, args.modes.split(","), args.fixed_jobs)
    if "profile" in only:
        print("\nwhere a warm job's time goes (10-row collection job, batch)")
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--child-profile",
                "--fixed-jobs",
                str(args.fixed_jobs),
                "--work-dir",
                str(work / "profile"),
            ],
            check=False,
        )
    if "soak" in only:
        bench_soak(work, args.soak, args.jobs_per_worker)


if __name__ == "__main__":
    main()
