"""Typed JSON text → Python values (the page's encoder writes it; see docs/typed-json.md)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import orjson

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
            elif kind is int and (item > SAFE_INT or item < -SAFE_INT):
                node[key] = float(item)
        return node
    if kind is list:
        for i, item in enumerate(node):
            kind = type(item)
            if kind is dict or kind is list:
                node[i] = _value(item)
            elif kind is int and (item > SAFE_INT or item < -SAFE_INT):
                node[i] = float(item)
        return node
    if kind is int and (node > SAFE_INT or node < -SAFE_INT):
        return float(node)
    return node


def _members(node: dict[str, Any]) -> dict[str, Any]:
    for key, item in node.items():
        kind = type(item)
        if kind is dict or kind is list:
            node[key] = _value(item)
        elif kind is int and (item > SAFE_INT or item < -SAFE_INT):
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
            obj[key] = self.walk(item, base + "/" + pointer_segment(key))
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
