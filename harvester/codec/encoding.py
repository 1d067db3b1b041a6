"""Python values → canonical typed JSON text, byte for byte what the page writes."""

from __future__ import annotations

import base64
import hashlib
import math
import re
from datetime import datetime
from typing import Any, Final

from harvester.codec.values import (
    SAFE_INT,
    UNDEFINED,
    BigInt,
    Blob,
    Boxed,
    File,
    InvalidDate,
    JSError,
    Map,
    Opaque,
    RegExp,
    Set,
    SparseArray,
    TypedArray,
    pointer_segment,
)
from harvester.timefmt import iso_utc


def encode(value: Any) -> Any:
    """Typed JSON of a Python value, as plain JSON-able Python data (dict/list/str/…)."""
    return _Encoder().walk(value, "")


def canonical(value: Any) -> str:
    """The canonical typed JSON text of a Python value: the same bytes the page writes."""
    parts: list[str] = []
    _dump(encode(value), parts)
    return "".join(parts)


def value_hash(text: str) -> str:
    """Stable hash of a canonical typed JSON text: sha256 hex of its UTF-8."""
    return hashlib.sha256(text.encode()).hexdigest()


def _utf16_order(key: str) -> bytes:
    # JavaScript sorts strings by UTF-16 code units; Python by code points. They differ only
    # above U+FFFF, so compare the UTF-16 encodings.
    return key.encode("utf-16-be", "surrogatepass")


def _b64text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: typed JSON dates need a timezone")
    return iso_utc(moment)


def _number(value: float) -> Any:
    if math.isnan(value):
        return {"$number": "NaN"}
    if math.isinf(value):
        return {"$number": "Infinity" if value > 0 else "-Infinity"}
    if value == 0 and math.copysign(1.0, value) < 0:
        return {"$number": "-0"}
    return value


class _Encoder:
    """One encode: the second reference to a container becomes a `$ref` to its first place."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        # id() -> (pointer, the object itself, kept alive so its id cannot be reused).
        self.seen: dict[int, tuple[str, Any]] = {}

    def _first(self, value: Any, path: str) -> dict[str, str] | None:
        prior = self.seen.get(id(value))
        if prior is not None:
            return {"$ref": prior[0]}
        self.seen[id(value)] = (path, value)
        return None

    def walk(self, value: Any, path: str) -> Any:
        if value is None or value is True or value is False or isinstance(value, str):
            return value
        if isinstance(value, BigInt):
            return {"$bigint": str(int(value))}
        if isinstance(value, int):
            if float(value) != value:
                raise ValueError(f"{value} is not a JS number; wrap it in BigInt")
            return value
        if isinstance(value, float):
            return _number(value)
        if value is UNDEFINED:
            return {"$undefined": True}
        if isinstance(value, datetime):
            return {"$date": _iso(value)}
        if isinstance(value, InvalidDate):
            return {"$date": value.iso}
        if isinstance(value, bytes | bytearray | memoryview):
            return {"$bytes": _b64text(bytes(value))}
        if isinstance(value, RegExp):
            return {"$regexp": {"source": value.source, "flags": value.flags}}
        if isinstance(value, TypedArray):
            return {"$typed": {"type": value.type, "bytes": _b64text(value.data)}}
        if isinstance(value, Blob):
            return {"$blob": _blob_payload(value)}
        if isinstance(value, JSError):
            return {"$error": {"name": value.name, "message": value.message}}
        if isinstance(value, Boxed):
            return {"$boxed": self.walk(value.value, path + "/$boxed")}
        if isinstance(value, Opaque):
            return {
                "$opaque": self._object({**value.details, "type": value.type}, path + "/$opaque")
            }
        ref = self._first(value, path) if isinstance(value, _CONTAINERS) else None
        if ref is not None:
            return ref
        if isinstance(value, list | tuple):
            return [self.walk(item, f"{path}/{i}") for i, item in enumerate(value)]
        if isinstance(value, dict):
            if any(not isinstance(key, str) or key[:1] == "$" for key in value):
                return {"$object": self._object(value, path + "/$object")}
            return self._object(value, path)
        if isinstance(value, Map):
            base = path + "/$map"
            return {
                "$map": [
                    [self.walk(k, f"{base}/{i}/0"), self.walk(v, f"{base}/{i}/1")]
                    for i, (k, v) in enumerate(value.entries)
                ]
            }
        if isinstance(value, Set):
            base = path + "/$set"
            return {"$set": [self.walk(v, f"{base}/{i}") for i, v in enumerate(value.items)]}
        if isinstance(value, SparseArray):
            items = self._object(value.items, path + "/$array/items")
            return {"$array": {"length": value.length, "items": items}}
        raise TypeError(f"cannot encode {type(value).__name__} as typed JSON")

    def _object(self, value: dict[str, Any], path: str) -> dict[str, Any]:
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"object keys must be str, not {type(key).__name__} ({key!r})")
        out: dict[str, Any] = {}
        # Sorted as the page sorts, so that the first of two references is the same one.
        for key in sorted(value, key=_utf16_order):
            out[key] = self.walk(value[key], path + "/" + pointer_segment(key))
        return out


_CONTAINERS: Final = (list, tuple, dict, Map, Set, SparseArray)


def _blob_payload(blob: Blob) -> dict[str, Any]:
    payload: dict[str, Any] = {"type": blob.type, "size": blob.size}
    if blob.data is not None:
        payload["bytes"] = _b64text(blob.data)
    if blob.sha256 is not None:
        payload["sha256"] = blob.sha256
    if blob.truncated:
        payload["truncated"] = True
    if isinstance(blob, File):
        payload["name"] = blob.name
        payload["lastModified"] = blob.last_modified
    return payload


# Canonical text ---------------------------------------------------------------------------------

# JSON.stringify escapes exactly these: quote, backslash, C0 controls and lone surrogates.
_NEEDS_ESCAPE: Final = re.compile(r'["\\\x00-\x1f\ud800-\udfff]')
_SURROGATES: Final = re.compile(r"[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")
_SHORT_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _surrogate(match: re.Match[str]) -> str:
    text = match.group()
    if len(text) == 2:
        # A high and a low surrogate side by side are one character to JavaScript.
        return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be")
    return f"\\u{ord(text):04x}"


def _string(text: str) -> str:
    """`JSON.stringify(text)`: same escapes, non-ASCII kept as is."""
    if _NEEDS_ESCAPE.search(text) is None:
        return '"' + text + '"'
    out = text.translate(_CONTROL_TABLE)
    out = _SURROGATES.sub(_surrogate, out)
    return '"' + out + '"'


_CONTROL_TABLE: Final = {
    code: _SHORT_ESCAPES.get(chr(code), f"\\u{code:04x}") for code in [*range(0x20), 0x22, 0x5C]
}


def _js_number(value: float) -> str:
    """`String(value)` for a finite JS number (ECMAScript Number::toString)."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    text = repr(abs(float(value)))  # shortest round-trip digits, as JavaScript chooses them
    mantissa, _, exp_text = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    stripped = digits.lstrip("0")
    n = len(whole) - (len(digits) - len(stripped)) + (int(exp_text) if exp_text else 0)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    exponent = f"e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    if k == 1:
        return sign + digits + exponent
    return sign + digits[0] + "." + digits[1:] + exponent


def _dump(node: Any, out: list[str]) -> None:
    if isinstance(node, str):
        out.append(_string(node))
    elif node is None:
        out.append("null")
    elif node is True:
        out.append("true")
    elif node is False:
        out.append("false")
    elif isinstance(node, int):
        out.append(str(node) if -SAFE_INT <= node <= SAFE_INT else _js_number(float(node)))
    elif isinstance(node, float):
        out.append(_js_number(node))
    elif isinstance(node, list):
        out.append("[")
        for i, item in enumerate(node):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    else:
        out.append("{")
        for i, key in enumerate(sorted(node, key=_utf16_order)):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _dump(node[key], out)
        out.append("}")
