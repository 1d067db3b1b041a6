"""The continuous job's plan reads the log once, whatever its branches filter: scans that
differ are not shared, and a branch with a scan of its own stands at its own place in the log
(a restart from a checkpoint then asked for files set aside once the acks' branch had consumed
them: `test_flink_remote_faults` found it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# Run in a process of its own: the plan needs a Flink gateway, which lives as long as its process.
PLAN = textwrap.dedent(
    """
    import re, sys
    from pathlib import Path
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment
    from flink_jobs import streaming
    from flink_jobs.protocol import StreamSpec

    folder = Path(sys.argv[1])
    statements = (
        "CREATE TABLE by_store (t STRING) WITH ('connector' = 'blackhole')",
        "INSERT INTO by_store SELECT target FROM change_log WHERE store = 'orders'",
        "CREATE TABLE by_version (t STRING) WITH ('connector' = 'blackhole')",
        "INSERT INTO by_version SELECT target FROM change_log WHERE db_version > 1 AND seq > 3",
        "CREATE TABLE new_stores (s STRING) WITH ('connector' = 'blackhole')",
        "INSERT INTO new_stores SELECT store FROM schema_log WHERE op = '+S' "
        "AND harvested_at > TIMESTAMP '2020-01-01 00:00:00'",
    )
    spec = StreamSpec(
        name="plan", log_dir=folder / "log", checkpoint_dir=folder / "checkpoints", restore=None,
        interval_ms=1000, parallelism=1, statements=statements, data_dir=folder / "data", jars=(),
    )
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    plan = streaming.build(t_env, spec).statement_set.explain()
    optimized = plan.split("== Optimized Execution Plan ==")[-1]
    print(len(re.findall(r"TableSourceScan\\(table=\\[\\[[^\\]]*harvester_log", optimized)))
    """
)


def test_every_branch_of_the_continuous_job_shares_one_scan_of_the_log(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PLAN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "1", done.stdout
