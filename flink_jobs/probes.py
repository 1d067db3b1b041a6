"""Which of the user's INSERTs a job failed in, found by running them again one at a time.

A job runs every INSERT in one statement set, so their operators share one chain of tasks and
a failure inside the SQL (a CAST, a function) names neither a statement nor a table: Flink's
exception and its task name are the same whichever INSERT failed. When the failure does not
name a sink itself (`failures.named_sinks`), the worker runs the job's input once with no
statement, then with each INSERT alone, into a blackhole copy of its table: the first that
fails with the same exception is the culprit, unless the input alone already fails. The copies
write nothing, so the probes change nothing outside the job; each costs a job, and they run
only after a job failed at run time, once per failure (the answer is kept for the retries).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from py4j.protocol import Py4JError
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StatementSet, StreamTableEnvironment
from pyflink.util.exceptions import JavaException

from flink_jobs import failures, pipeline
from flink_jobs.failures import UserSink
from flink_jobs.protocol import JobSpec

logger = logging.getLogger("flink_jobs.probes")

PROBE_SINK = "harvester_probe_sink"
_TIMEOUT = "java.util.concurrent.TimeoutException"

Environment = Callable[[JobSpec], StreamExecutionEnvironment]


class Prober:
    """Finds the culprit of a run-time failure; remembers it for the same failure again."""

    def __init__(self, environment: Environment) -> None:
        self._environment = environment
        self._known: dict[tuple[tuple[str, ...], str, str], int | None] = {}

    def culprit(
        self, spec: JobSpec, sinks: Sequence[UserSink], root: str, timeout: float
    ) -> UserSink | None:
        """The user sink whose INSERT alone fails like the job did (`root`), or None."""
        exception = root.partition(":")[0]
        key = (spec.statements, spec.runtime, exception)
        if key not in self._known:
            self._known[key] = self._probe(spec, sinks, exception, timeout)
        index = self._known[key]
        return next((sink for sink in sinks if sink.index == index), None)

    def _probe(
        self, spec: JobSpec, sinks: Sequence[UserSink], exception: str, timeout: float
    ) -> int | None:
        if self._fails(spec, None, exception, timeout):
            return None  # the input fails without any of the user's statements
        for sink in sinks:
            if sink.table and self._fails(spec, sink, exception, timeout):
                return sink.index
        return None

    def _fails(self, spec: JobSpec, sink: UserSink | None, exception: str, timeout: float) -> bool:
        """Whether the job's input through `sink`'s INSERT alone (None: through no statement)
        fails at run time with `exception`."""
        what = "no statement" if sink is None else f"flink.statements[{sink.index}]"
        probe = replace(spec, name=f"{spec.name} (probe: {what})")
        try:
            env = self._environment(probe)
            t_env = pipeline.table_env(env, probe)
            result = build_probe(env, t_env, probe, sink).execute()
        except (Py4JError, JavaException) as exc:
            # A copy Flink cannot build (a sink with metadata columns, say) tells nothing.
            logger.info("probe of %s not built: %s", what, pipeline.useful_line(exc))
            return False
        try:
            result.wait(int(timeout * 1000))
        except (Py4JError, JavaException) as exc:
            links = failures.chain(pipeline.trace_text(exc))
            if any(name == _TIMEOUT for name, _ in links):
                with contextlib.suppress(Py4JError, JavaException):  # it may have just ended
                    result.get_job_client().cancel().result()
                return False
            line = failures.root_line(links)
            logger.info("probe of %s failed: %s", what, line)
            return line.partition(":")[0] == exception
        return False


def build_probe(
    env: StreamExecutionEnvironment,
    t_env: StreamTableEnvironment,
    spec: JobSpec,
    sink: UserSink | None,
) -> StatementSet:
    """The job's input into a blackhole, through `sink`'s INSERT (its table swapped for a
    blackhole copy of the same columns) or, with None, straight."""
    pipeline.register_source(env, t_env, spec)
    statement_set = t_env.create_statement_set()
    if sink is None:
        t_env.execute_sql(
            f"CREATE TEMPORARY TABLE {PROBE_SINK} ({pipeline.column_list()}) "
            "WITH ('connector' = 'blackhole')"
        )
        statement_set.add_insert_sql(
            f"INSERT INTO {PROBE_SINK} SELECT {pipeline.select_list()} FROM change_log"
        )
        return statement_set
    statements = list(map(pipeline.clean_statement, spec.statements))
    for sql in statements[: sink.index]:
        if not pipeline.is_insert(t_env, sql):
            t_env.execute_sql(sql)
    # A temporary table shadows a catalog one of the same name, so the INSERT's own text then
    # writes into the copy (its column list, partitions and casts unchanged).
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE {PROBE_SINK} WITH ('connector' = 'blackhole') "
        f"LIKE {sink.quoted} (EXCLUDING OPTIONS)"
    )
    t_env.execute_sql(f"DROP TEMPORARY TABLE IF EXISTS {sink.quoted}")
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE {sink.quoted} WITH ('connector' = 'blackhole') LIKE {PROBE_SINK}"
    )
    statement_set.add_insert_sql(statements[sink.index])
    return statement_set
