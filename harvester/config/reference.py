"""The Markdown config reference (docs/config.md), generated from the models."""

from __future__ import annotations

from typing import cast, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from harvester.config.dump import toml_value
from harvester.config.models.settings import Settings
from harvester.config.types import model_of, type_name

_REFERENCE_INTRO = """\
# Config reference

<!-- Generated from harvester/config/models/ by `python -m harvester.config > docs/config.md`;
     edit the models' descriptions, not this file. -->

The harvester reads one TOML file: `--config PATH`, else `$HARVESTER_CONFIG`, else
`./harvester.toml`. `harvester check-config` validates it (Flink parses and plans
`flink.statements`, each `ready.function` is compiled) and prints the effective config; on
stderr it notes each target without `auth.profile_dir` or `auth.storage_state`, whose harvests
each start from an empty IndexedDB.

- **Unknown keys are errors**, and every problem is reported at once, one line each:
  `<file>: <path like targets[1].schedule>: <what is wrong>; expected <what>`; the exit code is 2.
  An unknown key names the closest key of its table: `unknown key (did you mean 'schedule'?)`.
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
        sub = model_of(info.annotation)
        item = get_args(info.annotation)[0] if get_origin(info.annotation) is list else None
        if sub is not None or (item is not None and model_of(item)):
            nested.append((key, sub or cast("type[BaseModel]", model_of(item)), sub is None))
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
