"""The `HARVESTER_<TABLE>__<KEY>` environment variables that override the config file."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsError

from harvester.config.sources.base import ConfigSource
from harvester.config.types import Loc
from harvester.errors import ConfigError


class EnvSource(EnvSettingsSource, ConfigSource):
    """pydantic-settings' environment source, naming the variable behind each value.

    Prefix, nesting delimiter and case come from the settings class's `model_config`.
    """

    def __init__(self, settings_cls: type[BaseSettings], *, overriding: Path) -> None:
        super().__init__(settings_cls)
        self.overriding = overriding
        self._data = self._read()
        self._variables = dict(self._leaves(self._data, ()))

    def __call__(self) -> dict[str, Any]:
        return self._data

    def origin(self, loc: Loc) -> str | None:
        for prefix, variable in self._variables.items():
            if loc[: len(prefix)] == prefix:
                return f"${variable}"
        return None

    def _read(self) -> dict[str, Any]:
        prefix = self.env_prefix.upper()
        try:
            return super().__call__()
        except SettingsError as exc:
            # pydantic-settings names the field, not the variable: 'error parsing value for
            # field "x"'.
            match = re.search(r'field "([^"]+)"', str(exc))
            variable = f"${prefix}{match.group(1).upper()}" if match else f"{prefix}…"
            raise ConfigError(
                f"{variable}: not valid JSON (overriding {self.overriding}); expected JSON for a "
                "key that holds a list or a table"
            ) from None

    def _leaves(self, data: Mapping[str, Any], loc: Loc) -> Iterator[tuple[Loc, str]]:
        """(location, variable name) of each value the environment gave."""
        for key, value in data.items():
            if isinstance(value, Mapping):
                yield from self._leaves(value, (*loc, key))
            else:
                path = (self.env_nested_delimiter or "").join(map(str, (*loc, key)))
                yield (*loc, key), (self.env_prefix + path).upper()
