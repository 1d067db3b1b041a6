"""`--sink`: the sink a command's changes go to (shared by `harvest`, `run` and `demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flink_jobs.continuous import ContinuousForwarder
from flink_jobs.forwarder import FlinkForwarder
from harvester.errors import UsageError
from harvester.sinks import ChangeSink, JsonLinesSink

if TYPE_CHECKING:
    from harvester.config import Settings

# Where `--sink jsonl` writes, under `state.data_dir`.
DEFAULT_JSONL = "changes-jsonl"


def make_sink(spec: str | None, settings: Settings) -> ChangeSink:
    """The sink named by `--sink` (default: Flink), validated; the caller closes it.

    A sink's broken configuration (e.g. `flink.statements`) raises `ConfigError` here, before
    any harvest.
    """
    sink: ChangeSink
    if spec is None or spec == "flink":
        continuous = settings.flink.delivery == "continuous"
        sink = ContinuousForwarder(settings) if continuous else FlinkForwarder(settings)
    elif spec == "jsonl" or spec.startswith("jsonl:"):
        rest = spec.partition(":")[2]
        sink = JsonLinesSink(
            Path(rest).resolve() if rest else settings.state.data_dir / DEFAULT_JSONL
        )
    else:
        raise UsageError(f"--sink {spec!r}: expected `flink`, `jsonl` or `jsonl:DIR`")
    try:
        sink.validate()
    except BaseException:
        sink.close()
        raise
    return sink
