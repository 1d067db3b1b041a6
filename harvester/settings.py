"""The config: pydantic models of the TOML file, loading with env overrides and secrets.

`load_settings()` reads the TOML file, lays the `HARVESTER_…` environment overrides over it,
resolves `${secret:NAME}` references and validates the result. Every problem found is reported at
once, as one line per problem: `<source>: <dotted path>: <what is wrong>; expected <what>`.

`python -m harvester.settings > docs/config.md` regenerates the config reference.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import annotated_types
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsError

from harvester.errors import ConfigError, UsageError
from harvester.redaction import MASK

ENV_PREFIX = "HARVESTER_"
CONFIG_ENV = "HARVESTER_CONFIG"
DEFAULT_CONFIG = Path("harvester.toml")

Loc = tuple[str | int, ...]

# The custom error type our validators raise; its ctx carries the problem line's parts.
_PROBLEM = "harvester_config"


def _problem(what: str, expected: str, *, at: str = "") -> PydanticCustomError:
    """A validation error whose line reads `<what>; expected <expected>` (`at`: a sub-path)."""
    return PydanticCustomError(_PROBLEM, "{what}", {"what": what, "expected": expected, "at": at})


@dataclass(frozen=True)
class _Kind:
    """Names a field's type in the reference and in `expected …` (Annotated metadata)."""

    text: str


# --- durations ---------------------------------------------------------------------------------

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DURATION = re.compile(r"\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")
_SECONDS = re.compile(r"\s*\d+(?:\.\d+)?\s*")
_DURATION_EXPECTED = "a duration like 500ms, 30s, 15m, 6h, 1h30m, or a number of seconds"


def parse_duration(value: object) -> timedelta | None:
    """`500ms`, `30s`, `15m`, `6h`, `1h30m`, `2d` or a plain number of seconds; None if not one."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and _SECONDS.fullmatch(value)):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(value))
    else:
        return None
    try:
        return timedelta(seconds=seconds) if seconds >= 0 else None
    except OverflowError:
        return None


def format_duration(value: timedelta) -> str:
    """The shortest duration text that parses back to `value`, e.g. `1h30m`, `500ms`."""
    micros = value // timedelta(microseconds=1)
    if micros % 1000:
        return f"{value.total_seconds()!r}s"
    millis = micros // 1000
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _to_duration(value: object) -> timedelta:
    duration = parse_duration(value)
    if duration is None:
        raise _problem(f"{_show(value)} is not a duration", _DURATION_EXPECTED)
    return duration


def _positive_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise _problem(f"{format_duration(value)} is not positive", "a duration above 0")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    _Kind("duration"),
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive_duration), _Kind("duration > 0")]


# --- paths, URLs, names, time zones, schedules -------------------------------------------------


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    # Relative paths mean "next to the config file", not "wherever the daemon was started".
    base = (info.context or {}).get("base_dir") or Path.cwd()
    return (Path(base) / value.expanduser()).resolve()


ResolvedPath = Annotated[Path, AfterValidator(_resolve_path), _Kind("path")]


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _problem(
            f"{_show(value)} is not an http(s) URL", "a URL like https://app.example.com/"
        )
    return value


HttpUrl = Annotated[str, AfterValidator(_check_http_url), _Kind("http(s) URL")]


def _check_browser_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise _problem(
            f"{_show(value)} is not a browser endpoint URL",
            "an http(s):// or ws(s):// URL like http://127.0.0.1:9222",
        )
    return value


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_name(value: str) -> str:
    # Target names become parts of file names (spools, logs), so only a safe alphabet.
    if not _NAME.fullmatch(value):
        raise _problem(
            f"{_show(value)} is not a usable target name",
            "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value


TargetName = Annotated[str, AfterValidator(_check_name), _Kind("name")]


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _problem(
            f"unknown time zone {_show(value)}", "an IANA time zone like UTC or Europe/Berlin"
        ) from None
    return value


Timezone = Annotated[str, AfterValidator(_check_timezone), _Kind("IANA time zone")]

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekday(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text.lower() in _WEEKDAYS:
        return _WEEKDAYS.index(text.lower())
    raise ValueError(f"bad day of week {text!r}")


def _cron_weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler 3 weekday names.

    Crontab counts Sunday as 0 (and 7); APScheduler 3 counts Monday as 0, also in its
    `from_crontab`. Spelling the days out keeps the crontab meaning users expect.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.split(","):
        spec, slash, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else 0
        if slash and not step:
            raise ValueError(f"bad step in day of week {item!r}")
        if spec == "*":
            low, high = 0, 6
        elif "-" in spec:
            first, last = spec.split("-", 1)
            low, high = _weekday(first), _weekday(last)
        else:
            low = _weekday(spec)
            high = 6 if slash else low
        if high < low:
            raise ValueError(f"bad range in day of week {item!r}")
        days.update(day % 7 for day in range(low, high + 1, step or 1))
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def _cron_trigger(expr: str, timezone: str, jitter: float | None) -> CronTrigger:
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{len(fields)} fields instead of 5")
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_cron_weekdays(day_of_week),
        timezone=timezone,
        jitter=jitter,
    )


def _schedule_interval(schedule: str) -> timedelta | None:
    """The interval when `schedule` is a duration; None when it is a cron string."""
    return parse_duration(schedule) if " " not in schedule.strip() else None


def _check_schedule(value: str) -> str:
    interval = _schedule_interval(value)
    if interval is not None:
        _positive_duration(interval)
        return value
    try:
        _cron_trigger(value, "UTC", None)
    except ValueError as exc:
        raise _problem(
            f"{_show(value)} is neither a cron string nor an interval ({exc})",
            'a 5-field cron string like "*/15 * * * *" or an interval like "15m"',
        ) from None
    return value


Schedule = Annotated[str, AfterValidator(_check_schedule), _Kind("cron string or duration")]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


# --- the models --------------------------------------------------------------------------------


class _Model(BaseModel):
    # validate_default: defaults go through the same validators (paths resolve, durations parse).
    model_config = ConfigDict(extra="forbid", validate_default=True)


class StateSettings(_Model):
    """Where the harvester keeps its own files."""

    dir: ResolvedPath = Field(
        "state", description="The state DB, spool files, lock and logs live here."
    )
    data_dir: ResolvedPath = Field("data", description="Output folder of the default sinks.")
    keep_runs: int = Field(50, gt=0, description="Runs (and their history) kept per target.")


class LogSettings(_Model):
    """The harvester's own log, on stderr."""

    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = Field(
        "info", description="Least severe level written."
    )
    format: Literal["text", "json"] = Field(
        "text", description="`text` for people, `json` for one JSON object per line."
    )


class BrowserSettings(_Model):
    """The Chromium that opens the targets."""

    executable_path: ResolvedPath | None = Field(
        None,
        description="Chromium to launch; unset: Playwright's Chromium, then chromium, "
        "chromium-browser, google-chrome on PATH.",
    )
    headless: bool = Field(True, description="Run Chromium without a window.")
    args: list[str] = Field([], description="Extra Chromium command-line flags.")
    connect_url: Annotated[str, AfterValidator(_check_browser_url), _Kind("URL")] | None = Field(
        None,
        description="Use a running browser over CDP at this endpoint instead of launching one.",
    )
    max_concurrent: int = Field(2, gt=0, description="Chromium instances open at once.")


class FlinkStatement(_Model):
    """A Flink SQL statement run on every harvest job, after the built-in tables exist."""

    sql: str = Field(
        min_length=1,
        description="Flink SQL: `CREATE TABLE …` or `INSERT INTO … SELECT … FROM change_log`.",
    )


class FlinkSettings(_Model):
    """How the changelog reaches Apache Flink."""

    mode: Literal["embedded", "local-cluster", "remote"] = Field(
        "embedded",
        description="`embedded`: a MiniCluster in a worker process; `local-cluster`: PyFlink's "
        "standalone cluster; `remote`: the cluster at `address`.",
    )
    runtime: Literal["batch", "streaming"] = Field(
        "batch", description="Flink runtime mode of the jobs."
    )
    address: Annotated[str, _Kind("host:port")] | None = Field(
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
                raise _problem('required when mode = "remote"', "a host:port like flink:8081")
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _problem(f"{_show(value)} is not host:port", "a host:port like flink:8081")
        return value


class HttpSettings(_Model):
    """The daemon's health and metrics endpoint."""

    bind: str = Field("127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(8787, ge=0, le=65535, description="Port to listen on; 0 picks a free one.")


class DaemonSettings(_Model):
    """The scheduler of `harvester run`."""

    shutdown_grace: Duration = Field(
        "30s", description="On SIGTERM, how long running harvests may take to finish."
    )
    catch_up: bool = Field(
        True, description="At start, run once each harvest that fell due while the daemon was down."
    )
    run_on_start: bool = Field(False, description="Harvest every enabled target at start.")
    max_concurrent_harvests: int = Field(2, gt=0, description="Harvests running at once.")


class ReadySettings(_Model):
    """When the target page counts as ready to read (all conditions given must hold)."""

    wait_until: Literal["load", "domcontentloaded", "networkidle"] = Field(
        "load", description="Page load state to wait for."
    )
    selector: str | None = Field(None, description="A CSS selector that must appear.")
    function: str | None = Field(
        None, description="A JavaScript expression or function that must become truthy."
    )
    settle: Duration = Field("0ms", description="Extra wait after the rest holds.")


class AuthStep(_Model):
    """One scripted step of a login, run before the page is opened."""

    action: Literal["goto", "click", "fill", "press", "wait_for"] = Field(description="What to do.")
    selector: str | None = Field(
        None,
        description="CSS selector: required by click and fill; wait_for needs it or `url`; "
        "optional for press.",
    )
    value: SecretStr | None = Field(
        None, description="Text for fill, key for press (e.g. `Enter`); never printed."
    )
    url: str | None = Field(
        None, description="URL for goto; for wait_for, the URL to wait for instead of a selector."
    )

    @field_validator("selector")
    @classmethod
    def _selector_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("action") in ("click", "fill"):
            raise _problem(f"required by action {info.data['action']!r}", "a CSS selector")
        return value

    @field_validator("value")
    @classmethod
    def _value_needed(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("action") in ("fill", "press"):
            raise _problem(f"required by action {info.data['action']!r}", "a string")
        return value

    @field_serializer("value", when_used="json")
    def _mask(self, value: SecretStr | None) -> str | None:
        return None if value is None else MASK

    @field_validator("url")
    @classmethod
    def _url_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        action = info.data.get("action")
        if value is None and action == "goto":
            raise _problem("required by action 'goto'", "a URL")
        if value is None and action == "wait_for" and info.data.get("selector") is None:
            raise _problem("action 'wait_for' needs `selector` or `url`", "a URL or a selector")
        return value


class HttpCredentials(_Model):
    """A user name and password for a site behind HTTP authentication."""

    username: str = Field(min_length=1, description="User name.")
    password: SecretStr = Field(description="Password; never printed.")

    @field_serializer("password", when_used="json")
    def _mask(self, _value: SecretStr) -> str:
        return MASK


class AuthSettings(_Model):
    """How the target is logged in."""

    storage_state: ResolvedPath | None = Field(
        None, description="Playwright storage-state JSON (cookies, local storage) to start with."
    )
    profile_dir: ResolvedPath | None = Field(
        None,
        description="A persistent Chromium profile, kept between harvests like a user's browser.",
    )
    steps: list[AuthStep] = Field([], description="Login steps, run in order.")
    http_credentials: HttpCredentials | None = Field(
        None, description="For a site behind HTTP (basic or digest) authentication."
    )
    extra_http_headers: dict[str, SecretStr] = Field(
        {},
        description="Headers sent with every request of the target, e.g. `Authorization`; "
        "values never printed.",
    )

    @field_serializer("extra_http_headers", when_used="json")
    def _mask_headers(self, value: dict[str, SecretStr]) -> dict[str, str]:
        return dict.fromkeys(value, MASK)

    @field_validator("profile_dir")
    @classmethod
    def _one_of(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # A persistent profile keeps its own cookies and storage; Playwright cannot add a state.
        if value is not None and info.data.get("storage_state") is not None:
            raise _problem(
                "storage_state and profile_dir exclude each other", "only one of the two"
            )
        return value


class LimitsSettings(_Model):
    """Bounds of one harvest."""

    batch_size: int = Field(10_000, gt=0, description="Most records read per page call.")
    max_batch_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="Most bytes of JSON read per page call."
    )
    max_records: int | None = Field(
        None, gt=0, description="Stop reading a store after this many records (unset: all)."
    )
    max_value_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="Blobs and Files larger than this are written with their sha256 but "
        "without their bytes.",
    )
    page_timeout: PositiveDuration = Field(
        "30s", description="Timeout of each page action (load, login step, read call)."
    )
    harvest_timeout: PositiveDuration = Field("10m", description="Timeout of a whole harvest.")
    consistency: Literal["batched", "snapshot"] = Field(
        "batched",
        description="`batched`: a read transaction per batch, the page keeps writing; "
        "`snapshot`: one read transaction per store, a consistent view that holds off the "
        "page's writes to it meanwhile.",
    )


class TargetSettings(_Model):
    """A web origin to harvest."""

    name: TargetName = Field(description="Unique name; used in file names and the changelog.")
    url: HttpUrl = Field(description="The page to open.")
    ignore_https_errors: bool = Field(
        False,
        description="Open the target even if its TLS certificate is not trusted (a staging site "
        "with a self-signed certificate).",
    )
    schedule: Schedule = Field(
        description="A 5-field cron string (`*/15 * * * *`, Sunday = 0) or an interval (`15m`)."
    )
    timezone: Timezone = Field("UTC", description="Time zone of the cron schedule.")
    enabled: bool = Field(True, description="Disabled targets are never scheduled.")
    databases: list[str] = Field(["*"], description="Globs of IndexedDB database names to read.")
    stores: list[str] = Field(["*"], description='Globs of "db/store" names to read.')
    retries: int = Field(
        3, ge=0, description="How often a failed harvest is retried before the next scheduled run."
    )
    jitter: Duration = Field("0s", description="Random delay added to each scheduled start.")
    ready: ReadySettings = Field(default_factory=dict)  # type: ignore[arg-type]
    auth: AuthSettings = Field(default_factory=dict)  # type: ignore[arg-type]
    limits: LimitsSettings = Field(default_factory=dict)  # type: ignore[arg-type]

    def trigger(self) -> BaseTrigger:
        """The APScheduler trigger of `schedule` in `timezone`, with `jitter`."""
        jitter = self.jitter.total_seconds() or None
        interval = _schedule_interval(self.schedule)
        if interval is not None:
            return IntervalTrigger(
                seconds=interval.total_seconds(), timezone=self.timezone, jitter=jitter
            )
        return _cron_trigger(self.schedule, self.timezone, jitter)


class Settings(_Model):
    """Keys outside any table; `load_settings()` builds the whole config."""

    secrets_dir: ResolvedPath = Field(
        "secrets", description="Folder of secret files for `${secret:NAME}`."
    )
    # Nested tables default to {} (not an instance) so that their paths resolve like given ones.
    state: StateSettings = Field(default_factory=dict)  # type: ignore[arg-type]
    log: LogSettings = Field(default_factory=dict)  # type: ignore[arg-type]
    browser: BrowserSettings = Field(default_factory=dict)  # type: ignore[arg-type]
    flink: FlinkSettings = Field(default_factory=dict)  # type: ignore[arg-type]
    http: HttpSettings = Field(default_factory=dict)  # type: ignore[arg-type]
    daemon: DaemonSettings = Field(default_factory=dict)  # type: ignore[arg-type]
    targets: list[TargetSettings] = Field([], description="The origins to harvest.")

    _config_path: Path | None = PrivateAttr(None)
    _templates: dict[Loc, str] = PrivateAttr(default_factory=dict)
    _secrets: tuple[str, ...] = PrivateAttr(())

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[TargetSettings]) -> list[TargetSettings]:
        first: dict[str, int] = {}
        for index, target in enumerate(targets):
            if target.name in first:
                raise _problem(
                    f"name {_show(target.name)} is already used by targets[{first[target.name]}]",
                    "a unique name per target",
                    at=f"[{index}].name",
                )
            first[target.name] = index
        return targets

    @model_validator(mode="after")
    def _profiles_need_local_browser(self) -> Settings:
        if self.browser.connect_url is None:
            return self
        for index, target in enumerate(self.targets):
            if target.auth.profile_dir is not None:
                raise _problem(
                    "a persistent profile needs a local browser, but browser.connect_url is set",
                    "no profile_dir, or no browser.connect_url",
                    at=f"targets[{index}].auth.profile_dir",
                )
        return self

    @property
    def config_path(self) -> Path | None:
        """The config file these settings came from (None when built in code)."""
        return self._config_path

    def target(self, name: str) -> TargetSettings:
        """The target called `name`; UsageError naming the known targets otherwise."""
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets) or "none"
        raise UsageError(f"no target named {name!r} in the config (targets: {known})")

    def masked_dump(self) -> dict[str, Any]:
        """The effective config as JSON-able data: secrets as `${secret:NAME}` or `****`."""
        data = self.model_dump(mode="json")
        for loc, template in self._templates.items():
            _set_at(data, loc, template)
        return cast("dict[str, Any]", _redact(data, self._secrets))


def secret_values(settings: Settings) -> list[str]:
    """Every resolved secret value, longest first, for log and output redaction."""
    return list(settings._secrets)


# --- loading -----------------------------------------------------------------------------------


def config_file(path: Path | None = None) -> Path:
    """The config file to read: `path`, else `$HARVESTER_CONFIG`, else `./harvester.toml`."""
    if path is None:
        path = Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else DEFAULT_CONFIG
    return path.expanduser().absolute()


def load_settings(path: Path | None = None) -> Settings:
    """Read, override, resolve and validate the config; ConfigError lists every problem."""
    config_path = config_file(path)
    file_data = _read_toml(config_path)
    env_data = _read_env(config_path)
    env_vars = dict(_env_leaves(env_data, ()))
    data = _merge(file_data, env_data)

    def source(loc: Loc) -> str:
        for prefix, var in env_vars.items():
            if loc[: len(prefix)] == prefix:
                return f"${var}"
        return str(config_path)

    secrets = _Secrets(_secrets_dir(data, config_path.parent))
    data = secrets.resolve(data, ())
    problems = [
        format_problem(source(loc), loc, what, expected) for loc, what, expected in secrets.problems
    ]
    unresolved = {loc for loc, _, _ in secrets.problems}
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data, context={"base_dir": config_path.parent})
    except ValidationError as exc:
        for loc, what, expected in _explain(exc, secrets.templates):
            # A field whose secret is missing has already been reported as such.
            if not any(loc[: len(u)] == u for u in unresolved):
                problems.append(format_problem(source(loc), loc, what, expected))
    if problems or settings is None:
        raise ConfigError([_redact(p, secrets.values) for p in problems])
    settings._config_path = config_path
    settings._templates = secrets.templates
    settings._secrets = tuple(sorted(secrets.values, key=len, reverse=True))
    return settings


def dotted(loc: Sequence[str | int]) -> str:
    """`("targets", 1, "schedule")` → `targets[1].schedule`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def format_problem(source: str, loc: Sequence[str | int], what: str, expected: str) -> str:
    """One problem line: `<source>: <dotted path>: <what is wrong>; expected <what>`."""
    where = f"{source}: {dotted(loc)}" if loc else source
    return f"{where}: {what}; expected {expected}"


def _read_toml(path: Path) -> dict[str, Any]:
    hint = f"a TOML config file (give --config PATH or set {CONFIG_ENV})"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; expected {hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a file; expected {hint}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}; expected {hint}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: byte {exc.start} is not UTF-8; expected a UTF-8 text file"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's TOMLDecodeError has no line attribute; the message ends with it.
        match = re.fullmatch(r"(.*) \(at (line \d+, column \d+|end of document)\)", str(exc))
        what, where = match.groups() if match else (str(exc), "")
        location = f"{path}: {where}" if where else str(path)
        raise ConfigError(f"{location}: {what}; expected valid TOML") from None


def _read_env(config_path: Path) -> dict[str, Any]:
    # EnvSettingsSource reads only model_fields and model_config, which a plain model has too;
    # Settings stays a BaseModel so that validation can carry the config folder as context.
    source = EnvSettingsSource(
        cast("type[BaseSettings]", Settings),
        case_sensitive=False,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
    )
    try:
        return source()
    except SettingsError as exc:
        # pydantic-settings names the field, not the variable: 'error parsing value for field "x"'.
        match = re.search(r'field "([^"]+)"', str(exc))
        var = f"${ENV_PREFIX}{match.group(1).upper()}" if match else f"{ENV_PREFIX}…"
        raise ConfigError(
            f"{var}: not valid JSON (overriding {config_path}); expected JSON for a key that "
            "holds a list or a table"
        ) from None


def _env_leaves(data: Mapping[str, Any], loc: Loc) -> Iterator[tuple[Loc, str]]:
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _env_leaves(value, (*loc, key))
        else:
            yield (*loc, key), ENV_PREFIX + "__".join(map(str, (*loc, key))).upper()


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _secrets_dir(data: Mapping[str, Any], base: Path) -> Path:
    configured = data.get("secrets_dir", "secrets")
    # A bad value is reported by validation; secret files are then looked up in the default.
    name = configured if isinstance(configured, str) else "secrets"
    return (base / Path(name).expanduser()).resolve()


_SECRET_REF = re.compile(r"\$\{secret:([^}]*)\}")
_SECRET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class _Secrets:
    """Resolves `${secret:NAME}` in every string and remembers where templates were."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.templates: dict[Loc, str] = {}
        self.values: set[str] = set()
        self.problems: list[tuple[Loc, str, str]] = []

    def resolve(self, value: Any, loc: Loc) -> Any:
        if isinstance(value, Mapping):
            return {k: self.resolve(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, (*loc, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and _SECRET_REF.search(value):
            self.templates[loc] = value
            return _SECRET_REF.sub(lambda m: self._lookup(m.group(1), loc), value)
        return value

    def _lookup(self, name: str, loc: Loc) -> str:
        if not _SECRET_NAME.fullmatch(name):
            self.problems.append(
                (
                    loc,
                    f"bad secret reference ${{secret:{name}}}",
                    "${secret:NAME}, NAME made of letters, digits, '_', '.', '-'",
                )
            )
            return ""
        secret = os.environ.get(name)
        if secret is None:
            file = self.folder / name
            try:
                # Secret files usually end with a newline that is not part of the secret.
                secret = file.read_text(encoding="utf-8").rstrip("\r\n")
            except FileNotFoundError:
                self.problems.append(
                    (
                        loc,
                        f"secret {name} is not set",
                        f"an environment variable {name} or a file {file}",
                    )
                )
                return ""
            except (OSError, UnicodeDecodeError) as exc:
                self.problems.append(
                    (loc, f"secret file {file} cannot be read ({exc})", "a readable UTF-8 file")
                )
                return ""
        if secret:
            self.values.add(secret)
        return secret


def _set_at(data: Any, loc: Loc, value: str) -> None:
    for part in loc[:-1]:
        data = data[part]
    data[loc[-1]] = value


def _redact(value: Any, secrets: set[str] | Sequence[str]) -> Any:
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, secrets) for v in value]
    return value


# --- turning pydantic's errors into problem lines ----------------------------------------------


def _show(value: object) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "…"


def _explain(exc: ValidationError, templates: Mapping[Loc, str]) -> Iterator[tuple[Loc, str, str]]:
    """(loc, what is wrong, what is expected) for each of pydantic's errors."""
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        ctx = error.get("ctx") or {}
        if error["type"] == _PROBLEM:
            what = ctx["what"]
            if loc in templates:
                # Show what the user wrote, not what the secret resolved to.
                what = what.replace(_show(error["input"]), _show(templates[loc]))
            yield _extend(loc, ctx.get("at", "")), what, ctx["expected"]
            continue
        parent, field = _field_at(loc)
        if error["type"] == "extra_forbidden":
            keys = ", ".join(parent.model_fields) if parent else "none"
            yield loc, "unknown key", f"one of: {keys}"
        elif error["type"] == "missing":
            yield loc, "required key is missing", _expected(field)
        else:
            shown = _show(templates[loc]) if loc in templates else _show(error["input"])
            expected = _expected(field) if field else error["msg"][:1].lower() + error["msg"][1:]
            yield loc, f"invalid value {shown}", expected


def _extend(loc: Loc, at: str) -> Loc:
    """`loc` plus a sub-path like `[2].name` or `address` given by a validator."""
    for match in re.finditer(r"\[(\d+)\]|([^.\[\]]+)", at):
        index, key = match.groups()
        loc = (*loc, int(index)) if index is not None else (*loc, key)
    return loc


@dataclass(frozen=True)
class _TypeAt:
    annotation: Any
    metadata: tuple[Any, ...] = ()


def _field_at(loc: Loc) -> tuple[type[BaseModel] | None, _TypeAt | None]:
    """The model holding the last key of `loc`, and the type found at `loc`."""
    model: type[BaseModel] | None = Settings
    here: _TypeAt | None = None
    for part in loc:
        if isinstance(part, int):
            item = get_args(_strip_optional(here.annotation)) if here else ()
            here = _TypeAt(item[0]) if item else None
            continue
        if here is not None:
            model = _model_of(here.annotation)
        if model is None or part not in model.model_fields:
            return model, None
        info: FieldInfo = model.model_fields[part]
        here = _TypeAt(info.annotation, tuple(info.metadata))
    return model, here


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not NoneType]
        if len(members) == 1:
            return members[0]
    return annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _expected(here: _TypeAt | None) -> str:
    return type_name(here.annotation, here.metadata) if here else "a valid value"


def type_name(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A short readable name of a field's type, e.g. `integer > 0`, `list of path`."""
    # The last name wins: PositiveDuration refines Duration's.
    for item in reversed(metadata):
        if isinstance(item, _Kind):
            return item.text
    annotation = _strip_optional(annotation)
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *more = get_args(annotation)
        return type_name(base, (*more, *metadata))
    if origin is Literal:
        return " | ".join(json.dumps(choice) for choice in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation)
        return "array of tables" if _model_of(item) else f"list of {type_name(item)}"
    if _model_of(annotation):
        return "table"
    names = {str: "string", int: "integer", bool: "boolean", float: "number"}
    name = names.get(annotation, "secret string" if annotation is SecretStr else str(annotation))
    bounds = []
    for item in metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            limit = getattr(item, attr, None)
            if isinstance(item, annotated_types.BaseMetadata) and limit is not None:
                bounds.append(f"{sign} {limit}")
        if isinstance(item, annotated_types.MinLen) and item.min_length > 0:
            name = f"non-empty {name}"
    return f"{name} {', '.join(bounds)}" if bounds else name


# --- the effective config as TOML --------------------------------------------------------------


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML text of JSON-like `data` (None values are left out, as TOML has no null)."""
    lines: list[str] = []
    _toml_table(data, (), None, lines)
    return "\n".join(lines) + "\n"


def _toml_table(
    data: Mapping[str, Any], path: tuple[str, ...], header: str | None, lines: list[str]
) -> None:
    def is_tables(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)

    if header:
        if lines:
            lines.append("")
        lines.append(header)
    for key, value in data.items():
        if value is not None and not isinstance(value, dict) and not is_tables(value):
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")
    for key, value in data.items():
        name = ".".join(_toml_key(part) for part in (*path, key))
        if isinstance(value, dict):
            _toml_table(value, (*path, key), f"[{name}]", lines)
        elif is_tables(value):
            for item in value:
                _toml_table(item, (*path, key), f"[[{name}]]", lines)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """A TOML literal of a JSON-like scalar or list (durations and paths as strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, timedelta):
        return toml_value(format_duration(value))
    if isinstance(value, Path):
        return toml_value(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    printable = all(c >= " " or c in "\n\t" for c in text) and "\x7f" not in text
    if "\n" in text and printable and "'''" not in text and not text.endswith("'"):
        # Multi-line SQL stays readable as a literal string.
        return f"'''\n{text}'''"
    # JSON's escapes are all valid in TOML basic strings, except that TOML also forbids DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


# --- the config reference ----------------------------------------------------------------------

_REFERENCE_INTRO = """\
# Config reference

<!-- Generated from harvester/settings.py by `python -m harvester.settings > docs/config.md`;
     edit the models' descriptions, not this file. -->

The harvester reads one TOML file: `--config PATH`, else `$HARVESTER_CONFIG`, else
`./harvester.toml`. `harvester check-config` validates it and prints the effective config.

- **Unknown keys are errors**, and every problem is reported at once, one line each:
  `<file>: <path like targets[1].schedule>: <what is wrong>; expected <what>`; the exit code is 2.
- **Environment overrides**: `HARVESTER_<TABLE>__<KEY>` beats the file, e.g.
  `HARVESTER_FLINK__PARALLELISM=2`, `HARVESTER_LOG__LEVEL=debug`. Lists and tables are given as
  JSON (`HARVESTER_BROWSER__ARGS='["--lang=de"]'`); `HARVESTER_TARGETS` replaces all targets.
- **Durations** are `500ms`, `30s`, `15m`, `6h`, `2d`, combinations like `1h30m`, or a number of
  seconds.
- **Paths** may be relative: they are taken relative to the config file's folder (also when given
  in the environment); `~` is the home folder.
- **Secrets**: any string may contain `${secret:NAME}`. NAME is read from the environment variable
  `NAME`, else from the file `<secrets_dir>/NAME` (without its trailing newline; `secrets_dir` may
  be set by `$HARVESTER_SECRETS_DIR`). A missing secret is a config error. Secret values are never
  printed: `check-config` shows the `${secret:NAME}` template, auth step values show `****`, and
  the log replaces them with `****`.
- **Schedules** are a 5-field cron string (minute hour day-of-month month day-of-week, Sunday = 0
  or 7; when both day fields are restricted, both must match) in the target's `timezone`, or an
  interval such as `15m`.
"""


def config_reference() -> str:
    """The Markdown config reference, generated from the models."""
    parts = [_REFERENCE_INTRO]
    _reference_section(Settings, (), parts, array=False)
    return "\n".join(parts)


def _reference_section(
    model: type[BaseModel], path: tuple[str, ...], parts: list[str], *, array: bool
) -> None:
    name = ".".join(path)
    title = "Top level" if not path else f"`[[{name}]]`" if array else f"`[{name}]`"
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    nested: list[tuple[str, type[BaseModel], bool]] = []
    for key, info in model.model_fields.items():
        sub = _model_of(info.annotation)
        item = get_args(info.annotation)[0] if get_origin(info.annotation) is list else None
        if sub is not None or (item is not None and _model_of(item)):
            nested.append((key, sub or cast("type[BaseModel]", _model_of(item)), sub is None))
            if sub is not None:
                continue
        rows.append(
            "| "
            + " | ".join(
                _cell(text)
                for text in (
                    f"`{key}`",
                    type_name(info.annotation, tuple(info.metadata)),
                    _default_text(info),
                    info.description or "",
                )
            )
            + " |"
        )
    doc = (model.__doc__ or "").strip()
    parts.append(f"## {title}\n\n{doc}\n\n" + "\n".join(rows) + "\n")
    for key, sub_model, is_array in nested:
        _reference_section(sub_model, (*path, key), parts, array=is_array)


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    if info.default is None:
        return "not set"
    return f"`{toml_value(info.default)}`"


def _cell(text: str) -> str:
    # A bare | would end the Markdown table cell.
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    sys.stdout.write(config_reference())
