"""Lone UTF-16 surrogates, which IndexedDB allows and UTF-8 (SQLite, orjson) cannot hold raw."""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    """`text` with every lone UTF-16 surrogate written as a JSON `\\uXXXX` escape.

    Typed JSON texts hold surrogates only inside JSON strings, where the escape means the same
    code unit.
    """
    if text.isascii():
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
