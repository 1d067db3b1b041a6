"""The base class of the config's tables."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class ConfigModel(BaseModel):
    """A table of the config: unknown keys are errors, defaults are validated like values."""

    # validate_default: defaults go through the same validators (paths resolve, durations parse).
    model_config = ConfigDict(extra="forbid", validate_default=True)

    # Keys this table no longer has, and what to use instead; a config that sets one gets a
    # problem line naming the replacement rather than a bare "unknown key".
    removed_keys: ClassVar[dict[str, str]] = {}


def table() -> Any:
    """The default of a nested table: `{}`, validated like a given table.

    Not an instance: validating `{}` resolves the table's paths against the config folder, as
    for a table that was given. Typed Any, as `{}` is no instance of the field's model.
    """
    return Field(default_factory=dict)
