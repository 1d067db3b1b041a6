"""Turning `--key K` and `--where FIELD=VALUE` into matches on typed JSON."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harvester.codec import canonical, decode
from harvester.errors import UsageError
from harvester.inspect.schema import top_level_fields


def key_texts(argument: str) -> list[str]:
    """The canonical typed-JSON key texts `argument` may mean: `42` is the number or the string."""
    texts = [canonical(argument)]
    # Not JSON, or JSON that is no typed-JSON value: then it only names the string.
    with contextlib.suppress(ValueError, TypeError):
        node = json.loads(argument)
        # `decode` reads a str as typed JSON text (`"7"` would become the number 7): a JSON
        # string is that string.
        texts.append(canonical(node if isinstance(node, str) else decode(node)))
    return list(dict.fromkeys(texts))


@dataclass(frozen=True)
class Where:
    """`FIELD=VALUE`: FIELD is dotted through nested objects; VALUE is JSON or a plain string."""

    path: tuple[str, ...]
    text: str

    @classmethod
    def parse(cls, argument: str) -> Where:
        name, sep, text = argument.partition("=")
        if not sep or not name:
            raise UsageError(f"--where wants FIELD=VALUE, got {argument!r}")
        return cls(tuple(name.split(".")), text)

    def _candidates(self) -> list[Any]:
        try:
            return [json.loads(self.text), self.text]
        except ValueError:
            return [self.text]

    def matches(self, value: Any) -> bool:
        node = value
        for name in self.path:
            fields = top_level_fields(node)
            if fields is None or name not in fields:
                return False
            node = fields[name]
        candidates = self._candidates()
        if any(_same(node, c) for c in candidates):
            return True
        # A tagged scalar (a date, a bigint, NaN) matches its payload: `--where born=2001-…Z`.
        if isinstance(node, dict) and len(node) == 1:
            payload = next(iter(node.values()))
            return isinstance(payload, str) and payload in candidates
        return False


def _same(a: Any, b: Any) -> bool:
    # Python has True == 1; in JSON (and to the user) they are different values.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def matches_all(value: Any, wheres: Sequence[Where]) -> bool:
    return all(where.matches(value) for where in wheres)
