"""The base class of the config's sources."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from harvester.config.models.settings import Settings
from harvester.config.types import Loc

ENV_PREFIX = "HARVESTER_"


class SettingsSchema(BaseSettings, Settings):
    """`Settings` as the sources read it: its keys, and how the environment names them.

    Never built: a BaseSettings validates through its own `__init__`, which drops the
    validation context that carries the config folder; `Settings` itself is validated instead.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False
    )


class ConfigSource(PydanticBaseSettingsSource):
    """Raw config data (`source()`) that can tell where each of its values came from."""

    @abstractmethod
    def origin(self, loc: Loc) -> str | None:
        """Where the value at `loc` came from, as problem lines name it; None: not from here."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The raw value of one top-level key (these sources read their data whole)."""
        return self().get(field_name), field_name, False
