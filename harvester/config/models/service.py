"""The tables that configure the harvester itself: state, log, browser, Flink, HTTP, daemon."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_serializer, field_validator

from harvester.config.models.base import ConfigModel
from harvester.config.types import (
    BrowserUrl,
    Duration,
    Kind,
    LogLevel,
    PositiveDuration,
    ResolvedPath,
    problem,
    show,
)
from harvester.redaction import MASK


class StateSettings(ConfigModel):
    """Where the harvester keeps its own files."""

    dir: ResolvedPath = Field(
        Path("state"), description="The state DB, spool files, lock and logs live here."
    )
    data_dir: ResolvedPath = Field(Path("data"), description="Output folder of the default sinks.")
    keep_runs: int = Field(
        50, gt=0, description="Committed runs (and their history) kept per target."
    )
    keep_failed_runs: int = Field(
        100,
        gt=0,
        description="Failed runs kept per target, apart from the committed ones: failures never "
        "push committed history out.",
    )


class LogSettings(ConfigModel):
    """The harvester's own log, on stderr."""

    level: LogLevel = Field("info", description="Least severe level written.")
    format: Literal["text", "json"] = Field(
        "text", description="`text` for people, `json` for one JSON object per line."
    )


class BrowserSettings(ConfigModel):
    """The Chromium that opens the targets."""

    removed_keys: ClassVar[dict[str, str]] = {"max_concurrent": "daemon.max_concurrent_harvests"}

    executable_path: ResolvedPath | None = Field(
        None,
        description="Chromium to launch; unset: Playwright's Chromium, then chromium, "
        "chromium-browser, google-chrome on PATH.",
    )
    headless: bool = Field(True, description="Run Chromium without a window.")
    args: list[str] = Field([], description="Extra Chromium command-line flags.")
    connect_url: BrowserUrl | None = Field(
        None,
        description="Use a running browser at this endpoint instead of launching one: a CDP "
        "endpoint (`http://host:9222`, `ws://host:9222/devtools/browser/…`, as Chromium's "
        "`--remote-debugging-port` gives) or a Playwright server (`ws://host:3000/`, as "
        "`playwright run-server` and browser services give); `connect_protocol` says which. "
        "Each run connects anew, so a browser that went away is reconnected for the next run.",
    )
    connect_protocol: Literal["auto", "cdp", "playwright"] = Field(
        "auto",
        description="How to speak to `connect_url`: `auto` takes an http(s):// URL or a ws(s):// "
        "one whose path starts with `/devtools/` for CDP, any other ws(s):// URL for a "
        "Playwright server; `cdp` or `playwright` for a service whose URLs say neither.",
    )


class FlinkStatement(ConfigModel):
    """A Flink SQL statement of the pipeline (the continuous job, or every per-harvest job),
    after the built-in tables exist."""

    sql: str = Field(
        min_length=1,
        description="Flink SQL: `CREATE TABLE …` or `INSERT INTO … SELECT … FROM changes`; "
        "`${state.data_dir}` and `${state.dir}` in it stand for those folders.",
    )


class FlinkSettings(ConfigModel):
    """How the changelog reaches Apache Flink."""

    mode: Literal["embedded", "local-cluster", "remote"] = Field(
        "embedded",
        description="`embedded`: a MiniCluster in a worker process; `local-cluster`: PyFlink's "
        "standalone cluster; `remote`: the cluster at `address`.",
    )
    delivery: Literal["continuous", "per-harvest"] = Field(
        "continuous",
        description="`continuous`: committed runs are appended to a log that one long-running, "
        "checkpointed STREAMING job consumes, so your SQL's state spans every harvest; "
        "`per-harvest`: one bounded job per send, each harvest processed alone.",
    )
    runtime: Literal["batch", "streaming"] = Field(
        "batch",
        description="Flink runtime mode of the per-harvest jobs; continuous delivery always "
        "runs STREAMING and ignores it.",
    )
    log_dir: ResolvedPath | None = Field(
        None,
        description="The changelog log that the continuous job reads; unset: "
        "`<state.dir>/flink-log`. A remote cluster must see it at the same path.",
    )
    checkpoint_dir: ResolvedPath | None = Field(
        None,
        description="Where the continuous job's checkpoints are kept; unset: "
        "`<state.dir>/flink-checkpoints`. A remote cluster must see it at the same path.",
    )
    checkpoint_interval: PositiveDuration = Field(
        timedelta(seconds=1),
        description="How often the continuous job checkpoints; file sinks commit at checkpoints.",
    )
    log_retention: Duration = Field(
        timedelta(days=7),
        description="How long consumed log files are kept, so that `harvester flink reset` can "
        "replay them.",
    )
    max_lag: PositiveDuration = Field(
        timedelta(minutes=5),
        description="`/healthz` is unhealthy when a handed-off run has waited this long for the "
        "continuous job.",
    )
    address: Annotated[str, Kind("host:port")] | None = Field(
        None, description="REST address of the remote cluster; required when mode = `remote`."
    )
    parallelism: int = Field(1, gt=0, description="Default parallelism of the jobs.")
    jars: list[ResolvedPath] = Field([], description="Extra jars (connectors, formats).")
    max_rows_per_job: int = Field(
        100_000, gt=0, description="Most changelog rows sent in one Flink job."
    )
    source: Literal["auto", "collection", "file"] = Field(
        "auto",
        description="`collection`: rows travel inside the job; `file`: Flink reads the spool "
        "files (faster and leaner at every size measured); `auto`: `file` where the cluster "
        "shares our disk (embedded, local-cluster), `collection` for a remote cluster.",
    )
    jobs_per_worker: int = Field(
        30, gt=0, description="Jobs before the Flink worker process is replaced."
    )
    statements: list[FlinkStatement] = Field([], description="Your Flink SQL, run on every job.")

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("mode") == "remote":
                raise problem('required when mode = "remote"', "a host:port like flink:8081")
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise problem(f"{show(value)} is not host:port", "a host:port like flink:8081")
        return value


# A bearer token shorter than this is guessable.
TOKEN_MIN_LENGTH = 16


class HttpSettings(ConfigModel):
    """The daemon's health and metrics endpoint."""

    bind: str = Field("127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(8787, ge=0, le=65535, description="Port to listen on; 0 picks a free one.")
    token: SecretStr | None = Field(
        None,
        min_length=TOKEN_MIN_LENGTH,
        description="The secret REST API clients send as `Authorization: Bearer …` "
        "(`/api/v1/`, docs/api.md); never printed. Required for the API when `bind` is not "
        "loopback: without it the API answers 403 there.",
    )

    cors_origins: list[str] = Field(
        [],
        description="Web origins (`https://app.example.com`; `*` for any) whose pages may read "
        "the REST API from a browser (CORS). None by default: a page elsewhere cannot.",
    )

    @field_serializer("token", when_used="json")
    def _mask_token(self, value: SecretStr | None) -> str | None:
        return None if value is None else MASK


class DaemonSettings(ConfigModel):
    """The scheduler of `harvester run`."""

    shutdown_grace: Duration = Field(
        timedelta(seconds=30),
        description="On SIGTERM, how long running harvests may take to finish.",
    )
    catch_up: bool = Field(
        True, description="At start, run once each harvest that fell due while the daemon was down."
    )
    run_on_start: bool = Field(False, description="Harvest every enabled target at start.")
    max_concurrent_harvests: int = Field(2, gt=0, description="Harvests running at once.")
