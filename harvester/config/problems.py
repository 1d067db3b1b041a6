"""Problem lines: `<source>: <dotted path>: <what is wrong>; expected <what>`, one per problem."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from harvester.config.models.base import ConfigModel
from harvester.config.models.settings import Settings
from harvester.config.types import PROBLEM, Loc, model_of, show, strip_optional, type_name


def dotted(loc: Sequence[str | int]) -> str:
    """`("targets", 1, "schedule")` → `targets[1].schedule`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def format_problem(source: str, loc: Sequence[str | int], what: str, expected: str | None) -> str:
    """One problem line: `<source>: <dotted path>: <what is wrong>; expected <what>`.

    With `expected` None, `what` says itself what to do instead (`removed; use …`).
    """
    where = f"{source}: {dotted(loc)}" if loc else source
    return f"{where}: {what}; expected {expected}" if expected is not None else f"{where}: {what}"


def explain(
    exc: ValidationError, templates: Mapping[Loc, str]
) -> Iterator[tuple[Loc, str, str | None]]:
    """(loc, what is wrong, what is expected) for each of pydantic's errors.

    `templates` holds the `${secret:…}` text written at a location: problem lines show it, not
    the secret it resolved to.
    """
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        ctx = error.get("ctx") or {}
        if error["type"] == PROBLEM:
            what = ctx["what"]
            if loc in templates:
                what = what.replace(show(error["input"]), show(templates[loc]))
            yield _extend(loc, ctx.get("at", "")), what, ctx["expected"]
            continue
        parent, field = _field_at(loc)
        if error["type"] == "extra_forbidden":
            replacement = _removed_keys(parent).get(str(loc[-1])) if loc else None
            if replacement is not None:
                yield loc, f"removed; use {replacement}", None
            else:
                keys = ", ".join(parent.model_fields) if parent else "none"
                yield loc, _unknown_key(str(loc[-1]) if loc else "", parent), f"one of: {keys}"
        elif error["type"] == "missing":
            yield loc, "required key is missing", _expected(field)
        else:
            shown = show(templates[loc]) if loc in templates else show(error["input"])
            expected = _expected(field) if field else error["msg"][:1].lower() + error["msg"][1:]
            yield loc, f"invalid value {shown}", expected


def _unknown_key(key: str, model: type[BaseModel] | None) -> str:
    """`unknown key`, with the closest key of that table when one is close (a typo)."""
    close = difflib.get_close_matches(key, model.model_fields if model else [], n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _removed_keys(model: type[BaseModel] | None) -> Mapping[str, str]:
    if model is not None and issubclass(model, ConfigModel):
        return model.removed_keys
    return {}


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
            item = get_args(strip_optional(here.annotation)) if here else ()
            here = _TypeAt(item[0]) if item else None
            continue
        if here is not None:
            model = model_of(here.annotation)
        if model is None or part not in model.model_fields:
            return model, None
        info: FieldInfo = model.model_fields[part]
        here = _TypeAt(info.annotation, tuple(info.metadata))
    return model, here


def _expected(here: _TypeAt | None) -> str:
    return type_name(here.annotation, here.metadata) if here else "a valid value"
