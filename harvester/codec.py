"""Typed JSON: the lossless JSON form of IndexedDB keys and values (see docs/typed-json.md).

The page's encoder (`reader.js`) writes canonical typed JSON text; this module decodes it into
Python values, encodes Python values back, and writes the same canonical text byte for byte, so
`canonical(decode(text)) == text` and equal values hash equally wherever they were written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

__all__ = [
    "UNDEFINED",
    "BigInt",
    "Blob",
    "Boxed",
    "File",
    "InvalidDate",
    "JSError",
    "Map",
    "Opaque",
    "RegExp",
    "Set",
    "SparseArray",
    "TypedArray",
    "canonical",
    "decode",
    "encode",
    "value_hash",
]


class _Undefined:
    """JavaScript's `undefined`; there is one instance, `UNDEFINED`."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()


class BigInt(int):
    """A JavaScript BigInt: an `int` that stays distinct from JS numbers when encoded."""

    def __repr__(self) -> str:
        return f"BigInt({int(self)})"


class Map:
    """A JavaScript Map: entries in insertion order; keys may be unhashable (dicts, lists…)."""

    __slots__ = ("entries",)

    def __init__(self, entries: Iterable[tuple[Any, Any]] = ()) -> None:
        self.entries: list[tuple[Any, Any]] = list(entries)

    def get(self, key: Any, default: Any = None) -> Any:
        for k, v in self.entries:
            if k == key:
                return v
        return default

    def keys(self) -> list[Any]:
        return [k for k, _ in self.entries]

    def values(self) -> list[Any]:
        return [v for _, v in self.entries]

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Map) and self.entries == other.entries

    __hash__ = None  # type: ignore[assignment]  # mutable, like dict

    def __repr__(self) -> str:
        return f"Map({self.entries!r})"


class Set:
    """A JavaScript Set: members in insertion order; members may be unhashable."""

    __slots__ = ("items",)

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self.items: list[Any] = list(items)

    def __contains__(self, item: object) -> bool:
        return item in self.items

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Set) and self.items == other.items

    __hash__ = None  # type: ignore[assignment]  # mutable, like set

    def __repr__(self) -> str:
        return f"Set({self.items!r})"


@dataclass
class SparseArray:
    """An array with holes or extra properties: `items` maps property names ("0", "7", "x")."""

    length: int
    items: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegExp:
    source: str
    flags: str = ""


@dataclass(frozen=True)
class InvalidDate:
    """A Date Python cannot hold: invalid (`iso` None) or outside years 1–9999."""

    iso: str | None = None


@dataclass(frozen=True)
class Blob:
    """A Blob; `data` is None when it was over the byte limit (then `sha256` and `truncated`)."""

    type: str
    size: int
    data: bytes | None
    sha256: str | None = None
    truncated: bool = False


@dataclass(frozen=True)
class File(Blob):
    name: str = ""
    last_modified: int | float = 0


@dataclass(frozen=True)
class TypedArray:
    """A typed array or DataView (`type` is its constructor name) with its viewed bytes."""

    type: str
    data: bytes


@dataclass(frozen=True)
class JSError:
    name: str
    message: str


@dataclass(frozen=True)
class Boxed:
    """A boxed primitive (`new Number(1)`, `new String("a")`…) holding the primitive."""

    value: Any


@dataclass
class Opaque:
    """A value that could not be read (a non-extractable CryptoKey…): what could be read of it."""

    type: str
    details: dict[str, Any] = field(default_factory=dict)


# Decoding ---------------------------------------------------------------------------------------


# JavaScript numbers are doubles: an integer beyond 2**53 in the text stands for the double
# nearest to it, where JSON parsers give an exact (and different) int.
_SAFE_INT: Final = 2**53


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson rejects lone surrogates (`"\ud800"`), which JavaScript strings may hold.
        return json.loads(text)


def decode(typed: str | bytes | Any) -> Any:
    """Python value of typed JSON, given as text or as already parsed JSON."""
    if isinstance(typed, str | bytes):
        text = typed.decode() if isinstance(typed, bytes) else typed
        parsed = _loads(text)
        if '"$ref"' not in text:
            return _value(parsed)  # the fast path: rewrites our own parse in place
        return _Decoder().walk(parsed, "")
    return _Decoder().walk(typed, "")


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _date(iso: str | None) -> datetime | InvalidDate:
    if iso is None or iso[0] in "+-":
        return InvalidDate(iso)  # invalid, or an extended year Python's datetime cannot hold
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        return InvalidDate(iso)  # year 0, which JavaScript has and Python has not


_NUMBERS: Final = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
    "-0": -0.0,
}


def _blob(payload: dict[str, Any]) -> Blob:
    data = _b64(payload["bytes"]) if "bytes" in payload else None
    common = {
        "type": payload["type"],
        "size": payload["size"],
        "data": data,
        "sha256": payload.get("sha256"),
        "truncated": payload.get("truncated", False),
    }
    if "name" in payload:
        return File(**common, name=payload["name"], last_modified=payload["lastModified"])
    return Blob(**common)


# Markers whose payload holds no typed JSON of its own, so no container and no `$ref` target.
_LEAVES: Final[dict[str, Callable[[Any], Any]]] = {
    "$date": _date,
    "$number": _NUMBERS.__getitem__,
    "$bigint": BigInt,
    "$undefined": lambda _: UNDEFINED,
    "$bytes": _b64,
    "$regexp": lambda p: RegExp(p["source"], p["flags"]),
    "$typed": lambda p: TypedArray(p["type"], _b64(p["bytes"])),
    "$blob": _blob,
    "$error": lambda p: JSError(p["name"], p["message"]),
}
_NESTED: Final = (dict, list)


def _value(node: Any) -> Any:
    """Decodes parsed typed JSON without `$ref`s, rewriting dicts and lists in place."""
    # The hot path of reading: loops are written out rather than shared, to spare calls.
    kind = type(node)
    if kind is dict:
        if len(node) == 1:
            for name in node:
                if name[:1] == "$":
                    leaf = _LEAVES.get(name)
                    payload = node[name]
                    return leaf(payload) if leaf is not None else _container(name, payload)
        for key, item in node.items():
            kind = type(item)
            if kind is dict or kind is list:
                node[key] = _value(item)
            elif kind is int and (item > _SAFE_INT or item < -_SAFE_INT):
                node[key] = float(item)
        return node
    if kind is list:
        for i, item in enumerate(node):
            kind = type(item)
            if kind is dict or kind is list:
                node[i] = _value(item)
            elif kind is int and (item > _SAFE_INT or item < -_SAFE_INT):
                node[i] = float(item)
        return node
    if kind is int and (node > _SAFE_INT or node < -_SAFE_INT):
        return float(node)
    return node


def _members(node: dict[str, Any]) -> dict[str, Any]:
    for key, item in node.items():
        kind = type(item)
        if kind is dict or kind is list:
            node[key] = _value(item)
        elif kind is int and (item > _SAFE_INT or item < -_SAFE_INT):
            node[key] = float(item)
    return node


def _container(name: str, payload: Any) -> Any:
    match name:
        case "$object":
            return _members(payload)
        case "$map":
            return Map((_value(k), _value(v)) for k, v in payload)
        case "$set":
            return Set(_value(item) for item in payload)
        case "$array":
            return SparseArray(payload["length"], _members(payload["items"]))
        case "$boxed":
            return Boxed(_value(payload))
        case "$opaque":
            return Opaque(payload.pop("type"), _members(payload))
    raise ValueError(f"typed JSON: unknown marker {name!r}")


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


class _Decoder:
    """A decode that resolves `$ref` pointers to the containers met before, and copies."""

    __slots__ = ("refs",)

    def __init__(self) -> None:
        self.refs: dict[str, Any] = {}

    def walk(self, node: Any, path: str) -> Any:
        if isinstance(node, list):
            out: list[Any] = []
            self.refs[path] = out
            out.extend(self.walk(item, f"{path}/{i}") for i, item in enumerate(node))
            return out
        if not isinstance(node, dict):
            return _value(node)  # a scalar: a long integer becomes the double it stands for
        if len(node) == 1:
            ((name, payload),) = node.items()
            if name[:1] == "$":
                leaf = _LEAVES.get(name)
                return leaf(payload) if leaf is not None else self._marker(name, payload, path)
        return self._object(node, path, path, strict=True)

    def _object(
        self, node: dict[str, Any], path: str | None, base: str, *, strict: bool = False
    ) -> dict[str, Any]:
        """A dict at `path` (None: not a ref target) whose members sit under `base`.

        `strict`: a bare object, where a `$` key means the text was not written by our encoder.
        """
        obj: dict[str, Any] = {}
        if path is not None:
            self.refs[path] = obj
        for key, item in node.items():
            if strict and key[:1] == "$":
                raise ValueError(f"typed JSON: unescaped key {key!r} at {path or '/'}")
            obj[key] = self.walk(item, base + "/" + _escape(key))
        return obj

    def _marker(self, name: str, payload: Any, path: str) -> Any:
        inner = path + "/" + name
        match name:
            case "$ref":
                try:
                    return self.refs[payload]
                except KeyError:
                    raise ValueError(f"typed JSON: $ref {payload!r} points nowhere") from None
            case "$object":
                return self._object(payload, path, inner)
            case "$map":
                m = Map()
                self.refs[path] = m
                for i, (k, v) in enumerate(payload):
                    m.entries.append(
                        (self.walk(k, f"{inner}/{i}/0"), self.walk(v, f"{inner}/{i}/1"))
                    )
                return m
            case "$set":
                s = Set()
                self.refs[path] = s
                s.items.extend(self.walk(item, f"{inner}/{i}") for i, item in enumerate(payload))
                return s
            case "$array":
                arr = SparseArray(payload["length"])
                self.refs[path] = arr
                arr.items = self._object(payload["items"], None, inner + "/items")
                return arr
            case "$boxed":
                return Boxed(self.walk(payload, inner))
            case "$opaque":
                details = {k: v for k, v in payload.items() if k != "type"}
                return Opaque(payload["type"], self._object(details, None, inner))
        raise ValueError(f"typed JSON: unknown marker {name!r} at {path or '/'}")


# Encoding ---------------------------------------------------------------------------------------


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
    u = moment.astimezone(UTC)
    # Formatted by hand: strftime does not pad years below 1000. JavaScript dates hold
    # milliseconds, so finer parts are dropped, as the page would.
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}."
        f"{u.microsecond // 1000:03d}Z"
    )


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
            out[key] = self.walk(value[key], path + "/" + _escape(key))
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
        out.append(str(node) if -_SAFE_INT <= node <= _SAFE_INT else _js_number(float(node)))
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
