"""Loading the config: the file, the environment over it, secrets resolved, then validation.

Every problem found is reported at once, as one line per problem:
`<source>: <dotted path>: <what is wrong>; expected <what>`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from harvester.config.models.settings import Provenance, Settings
from harvester.config.problems import explain, format_problem
from harvester.config.sources.base import SettingsSchema
from harvester.config.sources.env import EnvSource
from harvester.config.sources.secrets import SecretsSource
from harvester.config.sources.toml import TomlFileSource
from harvester.errors import ConfigError
from harvester.redaction import Redactor

CONFIG_ENV = "HARVESTER_CONFIG"
DEFAULT_CONFIG = Path("harvester.toml")


def config_file(path: Path | None = None) -> Path:
    """The config file to read: `path`, else `$HARVESTER_CONFIG`, else `./harvester.toml`."""
    if path is None:
        path = Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else DEFAULT_CONFIG
    return path.expanduser().absolute()


def load_settings(path: Path | None = None) -> Settings:
    """Read, override, resolve and validate the config; ConfigError lists every problem."""
    config_path = config_file(path)
    hint = f"give --config PATH or set {CONFIG_ENV}"
    file = TomlFileSource(SettingsSchema, path=config_path, hint=hint)
    env = EnvSource(SettingsSchema, overriding=config_path)
    source = SecretsSource(SettingsSchema, sources=(env, file), base_dir=config_path.parent)
    problems = [
        format_problem(source.origin(loc) or str(config_path), loc, what, expected)
        for loc, what, expected in source.problems
    ]
    unresolved = {loc for loc, _, _ in source.problems}
    secrets = tuple(sorted(source.values, key=len, reverse=True))
    provenance = Provenance(path=config_path, templates=source.templates, secrets=secrets)
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(
            source(), context={"base_dir": config_path.parent, "provenance": provenance}
        )
    except ValidationError as exc:
        for loc, what, expected in explain(exc, source.templates):
            # A field whose secret is missing has already been reported as such.
            if not any(loc[: len(u)] == u for u in unresolved):
                problems.append(
                    format_problem(source.origin(loc) or str(config_path), loc, what, expected)
                )
    if problems or settings is None:
        redactor = Redactor(secrets)
        raise ConfigError([redactor.redact(p) for p in problems])
    return settings
