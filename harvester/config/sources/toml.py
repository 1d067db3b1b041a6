"""The config file, read as TOML."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from harvester.config.sources.base import ConfigSource
from harvester.config.types import Loc
from harvester.errors import ConfigError


class TomlFileSource(ConfigSource):
    """The TOML file at `path`; one that is missing or no valid TOML raises ConfigError."""

    def __init__(self, settings_cls: type[BaseSettings], *, path: Path, hint: str) -> None:
        super().__init__(settings_cls)
        self.path = path
        self._data = _read(path, hint)

    def __call__(self) -> dict[str, Any]:
        return self._data

    def origin(self, loc: Loc) -> str:
        # A value no other source gave (a default, a missing key) is the file's to fix, too.
        return str(self.path)


def _read(path: Path, hint: str) -> dict[str, Any]:
    expected = f"a TOML config file ({hint})"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; expected {expected}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a file; expected {expected}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}; expected {expected}") from None
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
