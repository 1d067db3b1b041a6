"""The root of the config: the top-level keys and every table, and what a loaded config knows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from harvester.config.models.base import ConfigModel, table
from harvester.config.models.service import (
    BrowserSettings,
    DaemonSettings,
    FlinkSettings,
    HttpSettings,
    LogSettings,
    StateSettings,
)
from harvester.config.models.target import TargetSettings
from harvester.config.types import Loc, ResolvedPath, problem, show
from harvester.errors import UsageError
from harvester.redaction import Redactor


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """What `load_settings()` knows of a config besides its values (given as validation context)."""

    path: Path
    templates: Mapping[Loc, str]
    secrets: tuple[str, ...]


class Settings(ConfigModel):
    """Keys outside any table; `load_settings()` builds the whole config."""

    secrets_dir: ResolvedPath = Field(
        Path("secrets"), description="Folder of secret files for `${secret:NAME}`."
    )
    state: StateSettings = table()
    log: LogSettings = table()
    browser: BrowserSettings = table()
    flink: FlinkSettings = table()
    http: HttpSettings = table()
    daemon: DaemonSettings = table()
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
                raise problem(
                    f"name {show(target.name)} is already used by targets[{first[target.name]}]",
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
                raise problem(
                    "a persistent profile needs a local browser, but browser.connect_url is set",
                    "no profile_dir, or no browser.connect_url",
                    at=f"targets[{index}].auth.profile_dir",
                )
        return self

    @model_validator(mode="after")
    def _flink_folders(self) -> Settings:
        # Defaults under the state folder: they are known only once `state.dir` is.
        if self.flink.log_dir is None:
            self.flink.log_dir = self.state.dir / "flink-log"
        if self.flink.checkpoint_dir is None:
            self.flink.checkpoint_dir = self.state.dir / "flink-checkpoints"
        # Flink resolves a relative path in SQL against its working folder, not the config's:
        # statements name the state folders through these placeholders instead.
        places = {"${state.data_dir}": self.state.data_dir, "${state.dir}": self.state.dir}
        for statement in self.flink.statements:
            for placeholder, path in places.items():
                statement.sql = statement.sql.replace(placeholder, str(path))
        return self

    @model_validator(mode="after")
    def _remember_provenance(self, info: ValidationInfo) -> Settings:
        provenance = (info.context or {}).get("provenance")
        if isinstance(provenance, Provenance):
            self._config_path = provenance.path
            self._templates = dict(provenance.templates)
            self._secrets = provenance.secrets
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
        return cast("dict[str, Any]", _masked(data, Redactor(self._secrets)))


def secret_values(settings: Settings) -> list[str]:
    """Every resolved secret value, longest first, for log and output redaction."""
    return list(settings._secrets)


def _set_at(data: Any, loc: Loc, value: str) -> None:
    for part in loc[:-1]:
        data = data[part]
    data[loc[-1]] = value


def _masked(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, dict):
        return {k: _masked(v, redactor) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, redactor) for v in value]
    return value
