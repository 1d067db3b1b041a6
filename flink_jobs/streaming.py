"""The continuous job: the changelog log in, `change_log` / `changes`, the default sinks, the
acknowledgements, and the user's SQL, as one checkpointed STREAMING statement set.

Runs only inside the Flink worker, like `flink_jobs.pipeline`, whose helpers it shares.
`docs/flink.md` describes the tables for users; `harvester.sinks.log` the log's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from pyflink.table import StatementSet, StreamTableEnvironment

from flink_jobs import pipeline
from flink_jobs.failures import UserSink
from flink_jobs.pipeline import (
    NAMES,
    RECORD_IDENTITY,
    ROWS_VIEW,
    RUN_STATS_SINK,
    quote,
    sql_string,
)
from flink_jobs.protocol import StreamSpec
from harvester.sinks.log import ACKS_DIR, SEQ_PATTERN
from harvester.spool import ROW_SCHEMA

LOG_TABLE = "harvester_log"
ROLL_CHECK_MS = 100
ACKS_SINK = "harvester_acks"
# Per-run counts are needed until the run is acknowledged, which takes seconds; a day bounds the
# aggregates' state however many runs the job sees.
_COUNT_TTL = "1d"
_ISO = "'json.timestamp-format.standard' = 'ISO-8601'"


def job_config(spec: StreamSpec) -> dict[str, str]:
    """The job's checkpointing, recovery and mini-batch settings."""
    interval = f"{spec.interval_ms}ms"
    config = {
        "execution.checkpointing.interval": interval,
        "execution.checkpointing.dir": spec.checkpoint_dir.as_uri(),
        # Cancelling (a one-shot command's end, a daemon's stop) keeps the latest checkpoint:
        # the next start resumes from it.
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "2",
        # Fewer, larger updates from the aggregates (the acks, run_stats, users' GROUP BYs).
        "table.exec.mini-batch.enabled": "true",
        "table.exec.mini-batch.allow-latency": f"{max(spec.interval_ms // 4, 50)}ms",
        "table.exec.mini-batch.size": "5000",
        "table.local-time-zone": "UTC",
        "pipeline.name": spec.name,
    }
    if spec.restore:
        config["execution.state-recovery.path"] = spec.restore
    if spec.jars:
        config["pipeline.jars"] = ";".join(path.as_uri() for path in spec.jars)
    return config


def _rolling() -> str:
    # Row-format part files are committed at the first checkpoint after they rolled, and they
    # roll only on the sink's own timer (at a checkpoint only past 128 MB): a timer every
    # 100 ms and a file old enough after 10 ms make a file roll within 100 ms of its rows, so
    # each checkpoint commits what was written up to 100 ms before it.
    return (
        "'sink.rolling-policy.rollover-interval' = '10ms', "
        f"'sink.rolling-policy.check-interval' = '{ROLL_CHECK_MS}ms'"
    )


def register_tables(t_env: StreamTableEnvironment, spec: StreamSpec) -> None:
    """The log as a continuously monitored file table, and `change_log`, `schema_log` and
    `changes` on it."""
    monitor = max(min(spec.interval_ms // 2, 500), 100)
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE {LOG_TABLE} ({pipeline.column_list()}, "
        "harvester_file STRING NOT NULL METADATA FROM 'file.name' VIRTUAL) WITH ("
        f"'connector' = 'filesystem', 'path' = {sql_string(spec.log_dir.as_uri())}, "
        f"'format' = 'json', {_ISO}, 'source.monitor-interval' = '{monitor}ms')"
    )
    # Every column opaque (`pipeline.opaque`): a filter pushed into the scan (a view's on `op`,
    # the user's on `store`) makes that branch's scan differ from the others, and scans that
    # differ are not shared: the job then reads the log once per branch, each branch at its own
    # place in it, and a restart from a checkpoint finds a slower branch's next files gone (set
    # aside once the acks' branch had consumed them). One scan serves every branch.
    columns = ", ".join(
        f"{pipeline.opaque(quote(name), kind)} AS {quote(name)}" for name, kind in ROW_SCHEMA
    )
    seq = f"CAST(REGEXP_EXTRACT(harvester_file || '', {sql_string(SEQ_PATTERN)}, 1) AS BIGINT)"
    t_env.execute_sql(
        f"CREATE TEMPORARY VIEW {ROWS_VIEW} AS SELECT {columns}, {seq} AS seq FROM {LOG_TABLE}"
    )
    pipeline.register_views(t_env, ("seq",))
    # The latest row of each record by `seq`, not by arrival: the file source reads the files
    # it finds in one scan in any order, so two runs of a target handed off while the job was
    # down may arrive newest first. Top-1 per record is then right whatever the order (and a
    # file read twice changes nothing); a `-D` as the latest row retracts the record.
    identity = ", ".join(quote(name) for name in RECORD_IDENTITY)
    columns = ", ".join(quote(name) for name in (*NAMES, "seq") if name != "op")
    t_env.execute_sql(
        f"CREATE TEMPORARY VIEW changes AS SELECT {columns} FROM ("
        f"SELECT *, ROW_NUMBER() OVER (PARTITION BY {identity} ORDER BY seq DESC) "
        "AS harvester_rank FROM change_log) WHERE harvester_rank = 1 AND op <> '-D'"
    )


def default_sinks(t_env: StreamTableEnvironment, spec: StreamSpec) -> list[str]:
    """The default sinks under `data_dir` and the acks in the log; their INSERT statements."""
    rolling = _rolling()
    logs = pipeline.changes_sink(t_env, spec.data_dir, rolling)
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE {RUN_STATS_SINK} (run_id STRING, target STRING, store STRING, "
        "inserts BIGINT, updates BIGINT, deletes BIGINT, "
        "first_at TIMESTAMP_LTZ(3), last_at TIMESTAMP_LTZ(3), "
        "PRIMARY KEY (run_id, target, store) NOT ENFORCED) WITH ('connector' = 'filesystem', "
        f"'path' = {sql_string((spec.data_dir / 'run_stats').as_uri())}, "
        f"'format' = 'debezium-json', 'debezium-json.timestamp-format.standard' = 'ISO-8601', "
        f"{rolling})"
    )
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE {ACKS_SINK} (run_id STRING, `rows` BIGINT, "
        "PRIMARY KEY (run_id) NOT ENFORCED) WITH ('connector' = 'filesystem', "
        f"'path' = {sql_string((spec.log_dir / ACKS_DIR).as_uri())}, "
        f"'format' = 'debezium-json', {rolling})"
    )
    ttl = f"/*+ STATE_TTL('change_log' = '{_COUNT_TTL}') */"
    # The acks count every row of a run, its schema rows too: `runs.rows` counts them all.
    acks_ttl = f"/*+ STATE_TTL('{ROWS_VIEW}' = '{_COUNT_TTL}') */"
    return [
        *logs,
        f"INSERT INTO {RUN_STATS_SINK} SELECT {ttl} run_id, target, store, "
        "COUNT(*) FILTER (WHERE op = '+I'), COUNT(*) FILTER (WHERE op = '+U'), "
        "COUNT(*) FILTER (WHERE op = '-D'), MIN(harvested_at), MAX(harvested_at) "
        "FROM change_log GROUP BY run_id, target, store",
        f"INSERT INTO {ACKS_SINK} SELECT {acks_ttl} run_id, COUNT(*) FROM {ROWS_VIEW} "
        "GROUP BY run_id",
    ]


class StreamJob(NamedTuple):
    """The continuous job ready to execute, and the tables the user's INSERTs write."""

    statement_set: StatementSet
    sinks: tuple[UserSink, ...]


def build(t_env: StreamTableEnvironment, spec: StreamSpec) -> StreamJob:
    """Register every table of the continuous job; the statement set to execute."""
    register_tables(t_env, spec)
    statement_set = t_env.create_statement_set()
    for sql in default_sinks(t_env, spec):
        statement_set.add_insert_sql(sql)
    sinks = []
    for index, sql in enumerate(map(pipeline.clean_statement, spec.statements)):
        operation = pipeline.parse(t_env, sql)
        if pipeline.is_modify(operation):
            statement_set.add_insert_sql(sql)
            sinks.append(pipeline.user_sink(operation, index, sql))
        else:
            t_env.execute_sql(sql)
    return StreamJob(statement_set, tuple(sinks))


def check(t_env: StreamTableEnvironment, spec: StreamSpec) -> list[str]:
    """Problems with the user's statements against the continuous tables (nothing runs)."""
    register_tables(t_env, spec)
    default_sinks(t_env, spec)
    return pipeline.plan_statements(t_env, spec.statements)


def apply_config(t_env: StreamTableEnvironment, config: Mapping[str, str]) -> None:
    """Set `config` on the table environment (it reaches the job's configuration)."""
    table_config = t_env.get_config()
    for key, value in config.items():
        table_config.set(key, value)
