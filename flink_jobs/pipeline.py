"""The Flink job: spool rows in, the `change_log` / `changes` tables, the default sinks, user SQL.

Runs only inside the Flink worker (`flink_jobs.worker`), which owns the PyFlink gateway; the
daemon side never imports this module. `docs/flink.md` describes the tables and sinks for users.
"""

from __future__ import annotations

import itertools
import operator
import shutil
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, assert_never
from urllib.parse import urlsplit

import orjson
from py4j.protocol import Py4JError, Py4JJavaError
from pyflink.common import Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import DataTypes, Schema, StatementSet, StreamTableEnvironment
from pyflink.util.exceptions import JavaException

from flink_jobs import failures
from flink_jobs.failures import UserSink
from flink_jobs.protocol import JobSpec, SpoolSlice
from harvester.spool import RECORD_OPS, ROW_FIELDS, ROW_SCHEMA, SCHEMA_OPS, FieldKind


class FlinkType(NamedTuple):
    """How one kind of spool field is typed in Flink."""

    sql: str  # in SQL DDL: the file source, the sinks
    type_info: Any  # PyFlink's type of the field in the collection source's row tuples
    data_type: Any  # the table column that field of the collection source becomes


def flink_type(kind: FieldKind) -> FlinkType:
    """The Flink types of a kind of spool field (`harvester.spool.ROW_SCHEMA`)."""
    match kind:
        case "text":
            return FlinkType("STRING", Types.STRING(), DataTypes.STRING())
        case "integer":
            return FlinkType("BIGINT", Types.LONG(), DataTypes.BIGINT())
        case "timestamp":
            instant = DataTypes.TIMESTAMP_LTZ(3).bridged_to("java.time.Instant")
            return FlinkType("TIMESTAMP_LTZ(3)", Types.INSTANT(), instant)
        case _:
            assert_never(kind)


# `change_log`: the spool's changelog row, in spool order, as (column, Flink SQL type).
COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (name, flink_type(kind).sql) for name, kind in ROW_SCHEMA
)
NAMES: tuple[str, ...] = ROW_FIELDS
# `schema_log`: the schema rows, whose `key` is always NULL.
SCHEMA_NAMES: tuple[str, ...] = tuple(name for name in NAMES if name != "key")
RECORD_IDENTITY: tuple[str, ...] = ("target", "origin", "db_name", "store", "key")
# Every spool row, record and schema alike; `change_log` and `schema_log` are views on it.
ROWS_VIEW = "harvester_rows"
CHANGES_SINK = "harvester_changes_sink"
SCHEMA_SINK = "harvester_schema_sink"
RUN_STATS_SINK = "harvester_run_stats_sink"

# A constant watermark: no row is ever late, and event-time windows fire only when the bounded
# input ends (watermark MAX). That turns the per-run counts into final, insert-only rows in
# STREAMING mode, where the plain GROUP BY would emit updates a JSON file sink cannot take.
_NEVER_LATE = "TO_TIMESTAMP_LTZ(0, 3)"
_ISO = "'json.timestamp-format.standard' = 'ISO-8601'"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def quote(name: str) -> str:
    """A Flink SQL identifier in backticks (`key` and `value` are reserved words)."""
    return "`" + name.replace("`", "``") + "`"


def sql_string(text: str) -> str:
    """A Flink SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def column_list() -> str:
    return ", ".join(f"{quote(name)} {kind}" for name, kind in COLUMNS)


def select_list() -> str:
    return ", ".join(quote(name) for name in NAMES)


def opaque(sql: str, kind: FieldKind) -> str:
    """`sql` (a column of that kind) as an expression no filter over it can be pushed into the
    source through: Flink pushes no filter on `||` (and nothing on the JSON format gains by
    it)."""
    if kind == "text":
        return f"{sql} || ''"
    return f"CAST(CAST({sql} AS STRING) || '' AS {flink_type(kind).sql})"


def _ops(ops: Sequence[str]) -> str:
    return ", ".join(map(sql_string, ops))


def register_views(t_env: StreamTableEnvironment, extra: Sequence[str] = ()) -> None:
    """`change_log` (the record rows, as before schema rows existed: users' SQL is unchanged)
    and `schema_log` (the schema rows) on `ROWS_VIEW`, with its `extra` columns too."""
    records = ", ".join(quote(name) for name in (*NAMES, *extra))
    schemas = ", ".join(quote(name) for name in (*SCHEMA_NAMES, *extra))
    t_env.execute_sql(
        f"CREATE TEMPORARY VIEW change_log AS SELECT {records} FROM {ROWS_VIEW} "
        f"WHERE op IN ({_ops(RECORD_OPS)})"
    )
    t_env.execute_sql(
        f"CREATE TEMPORARY VIEW schema_log AS SELECT {schemas} FROM {ROWS_VIEW} "
        f"WHERE op IN ({_ops(SCHEMA_OPS)})"
    )


def table_env(env: StreamExecutionEnvironment, spec: JobSpec) -> StreamTableEnvironment:
    """A table environment for one job: UTC session time zone, the job's jars."""
    t_env = StreamTableEnvironment.create(env)
    config = t_env.get_config()
    # `dt` partitions and users' date functions must not depend on the host's time zone.
    config.set("table.local-time-zone", "UTC")
    config.set("pipeline.name", spec.name)
    if spec.jars:
        # Setting pipeline.jars through TableConfig also puts the jars on the planner's class
        # path, so user connectors resolve while planning, not only at run time.
        config.set("pipeline.jars", ";".join(path.as_uri() for path in spec.jars))
    return t_env


class Job(NamedTuple):
    """A job ready to execute, and the tables the user's INSERTs write."""

    statement_set: StatementSet
    sinks: tuple[UserSink, ...]


def build_job(
    env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, spec: JobSpec
) -> StatementSet:
    """Register the tables and sinks of `spec` and return the one statement set to execute."""
    return build(env, t_env, spec).statement_set


def build(env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, spec: JobSpec) -> Job:
    """`build_job`, with the tables the user's INSERTs write."""
    streaming = spec.runtime == "streaming"
    register_source(env, t_env, spec)
    statements = default_sinks(t_env, spec.data_dir, streaming=streaming)
    statement_set = t_env.create_statement_set()
    for sql in statements:
        statement_set.add_insert_sql(sql)
    sinks = []
    for index, sql in enumerate(map(clean_statement, spec.statements)):
        operation = parse(t_env, sql)
        if is_modify(operation):
            statement_set.add_insert_sql(sql)
            sinks.append(user_sink(operation, index, sql))
        else:
            t_env.execute_sql(sql)
    return Job(statement_set, tuple(sinks))


def register_source(
    env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, spec: JobSpec
) -> None:
    """`change_log` from the job's spools (and `changes` from it in streaming runtime)."""
    streaming = spec.runtime == "streaming"
    if spec.source == "file":
        register_file_source(t_env, spec.slices, streaming=streaming)
    else:
        register_collection_source(env, t_env, spec.slices, streaming=streaming)
    if streaming:
        register_changes(t_env)


_FIELDS = operator.itemgetter(*ROW_FIELDS)
_TIMESTAMPS = tuple(index for index, (_, kind) in enumerate(ROW_SCHEMA) if kind == "timestamp")


def _rows(slices: Sequence[SpoolSlice]) -> Iterator[tuple[object, ...]]:
    """Spool lines as PyFlink's internal row tuples (row kind first), one line at a time."""
    for part in slices:
        with part.path.open("rb") as lines:
            for line in itertools.islice(lines, part.start, part.stop):
                values = list(_FIELDS(orjson.loads(line)))
                for index in _TIMESTAMPS:
                    values[index] = _epoch_micros(values[index])
                # RowKind.INSERT: `change_log` is insert-only, `op` stays a column.
                yield (0, *values)


def _epoch_micros(iso: str) -> int:
    """`2026-11-26T15:00:00.123Z` as microseconds since the epoch (PyFlink's INSTANT form)."""
    return (datetime.fromisoformat(iso) - _EPOCH) // _MICROSECOND


def register_collection_source(
    env: StreamExecutionEnvironment,
    t_env: StreamTableEnvironment,
    slices: Sequence[SpoolSlice],
    *,
    streaming: bool,
) -> None:
    """`change_log` from the spool lines, shipped inside the job (any cluster can run it)."""
    type_info = Types.ROW_NAMED(list(NAMES), [flink_type(kind).type_info for _, kind in ROW_SCHEMA])
    # `from_collection` first builds a list of every converted row; its private half takes any
    # iterable and pickles it to a file row by row, so rows stream from the spool instead.
    stream = env._from_collection(_rows(slices), type_info)
    schema = Schema.new_builder()
    for name, kind in ROW_SCHEMA:
        schema.column(name, flink_type(kind).data_type)
    if streaming:
        schema.watermark("harvested_at", _NEVER_LATE)
    t_env.create_temporary_view(ROWS_VIEW, t_env.from_data_stream(stream, schema.build()))
    register_views(t_env)


def register_file_source(
    t_env: StreamTableEnvironment, slices: Sequence[SpoolSlice], *, streaming: bool
) -> None:
    """`change_log` read by Flink's filesystem source from the spools (whole files only)."""
    watermark = f", WATERMARK FOR harvested_at AS {_NEVER_LATE}" if streaming else ""
    selects = []
    for index, part in enumerate(slices):
        if part.start or part.stop is not None:
            raise ValueError(f"the file source reads whole spools, not {part}")
        name = f"harvester_spool_{index}"
        t_env.execute_sql(
            f"CREATE TEMPORARY TABLE {name} ({column_list()}{watermark}) WITH ("
            f"'connector' = 'filesystem', 'path' = {sql_string(part.path.as_uri())}, "
            f"'format' = 'json', {_ISO}, 'json.fail-on-missing-field' = 'true')"
        )
        selects.append(f"SELECT {select_list()} FROM {name}")
    t_env.execute_sql(f"CREATE TEMPORARY VIEW {ROWS_VIEW} AS " + " UNION ALL ".join(selects))
    register_views(t_env)


def register_changes(t_env: StreamTableEnvironment) -> None:
    """`changes`: `change_log` as a changelog table, RowKind from `op`, keyed by record identity.

    FROM_CHANGELOG (Flink 2.3) sets the RowKind on the Java side, so both sources get the same
    table without a Python function. Going through a changelog stream then declares the primary
    key, so upsert sinks keyed on the record identity need no materializing step.
    """
    mapped = t_env.sql_query(
        "SELECT * FROM FROM_CHANGELOG(input => TABLE change_log, op => DESCRIPTOR(op), "
        "op_mapping => MAP['+I', 'INSERT', '-U', 'UPDATE_BEFORE', '+U', 'UPDATE_AFTER', "
        "'-D', 'DELETE'])"
    )
    schema = Schema.new_builder().primary_key(*RECORD_IDENTITY).build()
    changes = t_env.from_changelog_stream(t_env.to_changelog_stream(mapped), schema)
    t_env.create_temporary_view("changes", changes)


def changes_sink(t_env: StreamTableEnvironment, data_dir: Path, options: str = "") -> list[str]:
    """Create the `changes` and `schema_log` default sinks under `data_dir` (extra WITH
    `options`); the INSERTs that fill them from `change_log` and `schema_log`."""
    return [
        _log_sink(t_env, CHANGES_SINK, data_dir / "changes", "change_log", NAMES, options),
        _log_sink(t_env, SCHEMA_SINK, data_dir / "schema_log", "schema_log", SCHEMA_NAMES, options),
    ]


def _log_sink(
    t_env: StreamTableEnvironment,
    table: str,
    folder: Path,
    view: str,
    names: Sequence[str],
    options: str,
) -> str:
    """Create a JSON-lines sink `table` in `folder` of `view`'s `names`; its INSERT.

    Partition columns are not written into the files: each line carries the row minus `target`
    and `dt`, which the folder names (`target=…/dt=…`) hold.
    """
    rest = [name for name in names if name != "target"]
    columns = ", ".join(f"{quote(name)} {kind}" for name, kind in COLUMNS if name in rest)
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE {table} ({columns}, target STRING, dt STRING) "
        f"PARTITIONED BY (target, dt) WITH ('connector' = 'filesystem', "
        f"'path' = {sql_string(folder.as_uri())}, 'format' = 'json', "
        f"{_ISO}{', ' + options if options else ''})"
    )
    return (
        f"INSERT INTO {table} SELECT {', '.join(quote(name) for name in rest)}, "
        f"target, CAST(CAST(harvested_at AS DATE) AS STRING) FROM {view}"
    )


def default_sinks(t_env: StreamTableEnvironment, data_dir: Path, *, streaming: bool) -> list[str]:
    """Create the default sink tables under `data_dir`; their INSERT statements."""
    logs = changes_sink(t_env, data_dir)
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE {RUN_STATS_SINK} (run_id STRING, target STRING, store STRING, "
        "inserts BIGINT, updates BIGINT, deletes BIGINT, "
        "first_at TIMESTAMP_LTZ(3), last_at TIMESTAMP_LTZ(3), dt STRING) "
        "PARTITIONED BY (dt) WITH ('connector' = 'filesystem', "
        f"'path' = {sql_string((data_dir / 'run_stats').as_uri())}, 'format' = 'json', {_ISO})"
    )
    counts = (
        "run_id, target, store, COUNT(*) FILTER (WHERE op = '+I'), "
        "COUNT(*) FILTER (WHERE op = '+U'), COUNT(*) FILTER (WHERE op = '-D'), "
        "MIN(harvested_at), MAX(harvested_at), CAST(CAST(MIN(harvested_at) AS DATE) AS STRING)"
    )
    if streaming:
        grouped = (
            "FROM TABLE(SESSION(TABLE change_log PARTITION BY (run_id, target, store), "
            "DESCRIPTOR(harvested_at), INTERVAL '36500' DAY(5))) "
            "GROUP BY run_id, target, store, window_start, window_end"
        )
    else:
        grouped = "FROM change_log GROUP BY run_id, target, store"
    return [*logs, f"INSERT INTO {RUN_STATS_SINK} SELECT {counts} {grouped}"]


def remove_staging(data_dir: Path) -> None:
    """Delete what a failed batch job staged for the default sinks (`.staging_*` folders).

    Flink moves staged files into place only when the job succeeds and leaves the folder
    behind otherwise; the retry writes the rows again, so nothing there is wanted. Removing
    every one is safe because each is this harvester's own: its runner sends one job at a time,
    and it holds data_dir's `DataDirLock` (`flink_jobs.data_lock`) so that no other harvester
    stages files there (whose job would then "succeed" with its rows gone).
    """
    for sink in ("changes", "schema_log", "run_stats"):
        for staging in (data_dir / sink).glob(".staging_*"):
            shutil.rmtree(staging, ignore_errors=True)


def parse(t_env: StreamTableEnvironment, sql: str) -> Any:
    """Flink's operation for one statement; parsing validates it against the tables so far."""
    return t_env._j_tenv.getParser().parse(sql).get(0)


def is_insert(t_env: StreamTableEnvironment, sql: str) -> bool:
    """True when `sql` writes to a table (goes into the statement set), False for DDL and SET.

    Flink's own parser decides (comments, INSERT OVERWRITE, …).
    """
    return is_modify(parse(t_env, sql))


def is_modify(operation: Any) -> bool:
    modify = get_gateway().jvm.java.lang.Class.forName(
        "org.apache.flink.table.operations.ModifyOperation"
    )
    return bool(modify.isInstance(operation))


def user_sink(operation: Any, index: int, sql: str) -> UserSink:
    """The table a user's INSERT writes, with its folder when it is a local filesystem sink."""
    sink_class = get_gateway().jvm.java.lang.Class.forName(
        "org.apache.flink.table.operations.SinkModifyOperation"
    )
    if not sink_class.isInstance(operation):  # CREATE TABLE … AS SELECT
        return UserSink(index, sql, "", "", None)
    table = operation.getContextResolvedTable()
    identifier = table.getIdentifier()
    options = table.getResolvedTable().getOptions()
    path = None
    if options.get("connector") == "filesystem" and options.get("path"):
        location = urlsplit(str(options.get("path")))
        if location.scheme in ("", "file"):
            # Flink resolves a relative path against the working folder, which we share.
            path = Path.cwd() / location.path
    return UserSink(
        index,
        sql,
        str(identifier.asSummaryString()),
        str(identifier.asSerializableString()),
        path,
    )


def check_statements(t_env: StreamTableEnvironment, spec: JobSpec) -> list[str]:
    """Problems with `spec.statements`, one line each, from planning them (nothing runs)."""
    if spec.runtime == "streaming":
        register_changes(t_env)
    default_sinks(t_env, spec.data_dir, streaming=spec.runtime == "streaming")
    return plan_statements(t_env, spec.statements)


def plan_statements(t_env: StreamTableEnvironment, statements: Sequence[str]) -> list[str]:
    """Plan each of `statements` against the tables registered so far (nothing runs); a line
    per problem, naming the statement's index."""
    problems = []
    for index, sql in enumerate(map(clean_statement, statements)):
        try:
            if is_insert(t_env, sql):
                t_env.explain_sql(sql)
            else:
                t_env.execute_sql(sql)
        except (Py4JJavaError, JavaException) as exc:
            problems.append(f"flink.statements[{index}]: {useful_line(exc)}")
    return problems


def register_empty_change_log(
    t_env: StreamTableEnvironment, empty_file: Path, spec: JobSpec
) -> None:
    """`change_log` over an empty spool, for planning statements without data."""
    register_file_source(
        t_env,
        [SpoolSlice(run_id="check", target="check", path=empty_file)],
        streaming=spec.runtime == "streaming",
    )


def clean_statement(sql: str) -> str:
    """A config statement as Flink's parser takes it: one trailing `;` dropped."""
    return sql.strip().removesuffix(";").rstrip()


def useful_line(exc: BaseException) -> str:
    """The line of a Flink failure worth showing (`failures.root_line`)."""
    return failures.root_line(failures.chain(trace_text(exc))) or type(exc).__name__


def trace_text(exc: BaseException) -> str:
    """The Java stack trace behind a PyFlink error, causes included, or the Python error's text.

    PyFlink re-raises some Java exceptions as `JavaException`, holding the trace as text; py4j's
    `Py4JJavaError` prints it after a line about the call that failed.
    """
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, JavaException):
            return str(current.stack_trace)
        if isinstance(current, Py4JJavaError):
            try:
                text = str(current)
            except Py4JError:  # the gateway is gone: only the exception's own line is left
                return str(current.java_exception)
            return text.partition("\n: ")[2] or text
        current = current.__cause__ or current.__context__
    return f"{type(exc).__name__}: {exc}"
