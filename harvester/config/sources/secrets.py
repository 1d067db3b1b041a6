"""`${secret:NAME}` in any string of the config, resolved from the environment or a folder."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from harvester.config.sources.base import ConfigSource
from harvester.config.types import Loc

_SECRET_REF = re.compile(r"\$\{secret:([^}]*)\}")
_SECRET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class SecretsSource(ConfigSource):
    """The data of `sources` (first wins) merged, with every `${secret:NAME}` resolved.

    NAME is the environment variable NAME, else the file `<secrets_dir>/NAME`. The source
    remembers where templates were (`templates`), the values (`values`) and what it could not
    resolve (`problems`: location, what is wrong, what is expected).
    """

    def __init__(
        self, settings_cls: type[BaseSettings], *, sources: Sequence[ConfigSource], base_dir: Path
    ) -> None:
        super().__init__(settings_cls)
        self.sources = tuple(sources)
        merged: dict[str, Any] = {}
        for source in reversed(self.sources):
            merged = _merge(merged, source())
        self.folder = _secrets_dir(merged, base_dir)
        self.templates: dict[Loc, str] = {}
        self.values: set[str] = set()
        self.problems: list[tuple[Loc, str, str]] = []
        self._data: dict[str, Any] = self._resolve(merged, ())

    def __call__(self) -> dict[str, Any]:
        return self._data

    def origin(self, loc: Loc) -> str | None:
        for source in self.sources:
            found = source.origin(loc)
            if found is not None:
                return found
        return None

    def _resolve(self, value: Any, loc: Loc) -> Any:
        if isinstance(value, Mapping):
            return {k: self._resolve(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, (*loc, i)) for i, v in enumerate(value)]
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
