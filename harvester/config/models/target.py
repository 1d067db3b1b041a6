"""The `[[targets]]` tables: an origin, when it is ready, how it logs in, what bounds a harvest."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from apscheduler.triggers.base import BaseTrigger
from pydantic import Field, SecretStr, ValidationInfo, field_serializer, field_validator

from harvester.config.models.base import ConfigModel, table
from harvester.config.models.watch import WatchSettings
from harvester.config.schedule import Schedule, make_trigger
from harvester.config.types import (
    Duration,
    HttpUrl,
    PositiveDuration,
    ResolvedPath,
    TargetName,
    Timezone,
    problem,
)
from harvester.redaction import MASK


class ReadySettings(ConfigModel):
    """When the target page counts as ready to read (all conditions given must hold)."""

    wait_until: Literal["load", "domcontentloaded", "networkidle"] = Field(
        "load", description="Page load state to wait for."
    )
    selector: str | None = Field(None, description="A CSS selector that must appear.")
    function: str | None = Field(
        None, description="A JavaScript expression or function that must become truthy."
    )
    settle: Duration = Field(timedelta(0), description="Extra wait after the rest holds.")


class AuthStep(ConfigModel):
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
            raise problem(f"required by action {info.data['action']!r}", "a CSS selector")
        return value

    @field_validator("value")
    @classmethod
    def _value_needed(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("action") in ("fill", "press"):
            raise problem(f"required by action {info.data['action']!r}", "a string")
        return value

    @field_serializer("value", when_used="json")
    def _mask(self, value: SecretStr | None) -> str | None:
        return None if value is None else MASK

    @field_validator("url")
    @classmethod
    def _url_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        action = info.data.get("action")
        if value is None and action == "goto":
            raise problem("required by action 'goto'", "a URL")
        if value is None and action == "wait_for" and info.data.get("selector") is None:
            raise problem("action 'wait_for' needs `selector` or `url`", "a URL or a selector")
        return value


class HttpCredentials(ConfigModel):
    """A user name and password for a site behind HTTP authentication."""

    username: str = Field(min_length=1, description="User name.")
    password: SecretStr = Field(description="Password; never printed.")

    @field_serializer("password", when_used="json")
    def _mask(self, _value: SecretStr) -> str:
        return MASK


class AuthSettings(ConfigModel):
    """How the target is logged in."""

    storage_state: ResolvedPath | None = Field(
        None, description="Playwright storage-state JSON (cookies, local storage) to start with."
    )
    profile_dir: ResolvedPath | None = Field(
        None,
        description="A persistent Chromium profile, kept between harvests like a user's browser "
        "(cookies, storage and IndexedDB included). Without it, every harvest starts in a "
        "fresh browser whose IndexedDB is empty (but for what a `storage_state` file holds): "
        "what is read is what the page stores on a first visit.",
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
            raise problem("storage_state and profile_dir exclude each other", "only one of the two")
        return value


class LimitsSettings(ConfigModel):
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
        timedelta(seconds=30),
        description="Timeout of each page action (load, login step, read call).",
    )
    harvest_timeout: PositiveDuration = Field(
        timedelta(minutes=10), description="Timeout of a whole harvest."
    )
    consistency: Literal["batched", "snapshot"] = Field(
        "batched",
        description="`batched`: a read transaction per batch, the page keeps writing; "
        "`snapshot`: one read transaction per store, a consistent view that holds off the "
        "page's writes to it meanwhile.",
    )


class TargetSettings(ConfigModel):
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
    jitter: Duration = Field(
        timedelta(0), description="Random delay added to each scheduled start."
    )
    ready: ReadySettings = table()
    auth: AuthSettings = table()
    limits: LimitsSettings = table()
    watch: WatchSettings = table()

    def trigger(self) -> BaseTrigger:
        """The APScheduler trigger of `schedule` in `timezone`, with `jitter`."""
        return make_trigger(self.schedule, timezone=self.timezone, jitter=self.jitter)

    def schedule_key(self) -> tuple[object, ...]:
        """What the trigger is made of: a target whose key changed needs a new trigger."""
        return (str(self.schedule), self.timezone, self.jitter)
