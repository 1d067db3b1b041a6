"""Human-readable text for typed-JSON keys and values: dates as dates, bytes as size + hex, …

This reads the typed JSON tree as stored rather than `codec.decode`'s Python values on purpose:
a `$ref` (a cycle or a shared object) then prints as the reference it is instead of a walk
through a cyclic graph, and every tag the page may write has a readable form even when Python
has no value type for it (RegExp, Error, opaque CryptoKeys).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from harvester.surrogates import escape_surrogates

HEX_PREVIEW = 16  # bytes shown before the hex preview is cut


def _string(value: str) -> str:
    # Quoted and escaped like JS; a lone surrogate (valid in JS, not in UTF-8) shows as \udxxx.
    return escape_surrogates(json.dumps(value, ensure_ascii=False))


def _decode64(b64: Any) -> bytes | None:
    try:
        return base64.b64decode(b64 or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None


def _hex_preview(b64: Any) -> str:
    data = _decode64(b64)
    if data is None:
        return "invalid base64"
    return data[:HEX_PREVIEW].hex(" ") + (" …" if len(data) > HEX_PREVIEW else "")


def _bytes_text(b64: Any, kind: str) -> str:
    data = _decode64(b64)
    size = "?" if data is None else len(data)
    return f"{kind}[{size} B] {_hex_preview(b64)}".rstrip()


def _size(n: Any) -> str:
    return f"{n} B" if isinstance(n, int) else "? B"


def _blob(payload: dict[str, Any]) -> str:
    kind = "File" if "name" in payload else "Blob"
    parts = []
    if "name" in payload:
        parts.append(_string(str(payload["name"])))
    parts.append(_string(str(payload.get("type", ""))))
    parts.append(_size(payload.get("size")))
    if payload.get("truncated"):
        parts.append(f"truncated, sha256 {payload.get('sha256', '?')}")
    elif "bytes" in payload:
        parts.append(_hex_preview(payload["bytes"]))
    return f"{kind}({', '.join(p for p in parts if p)})"


class _Printer:
    def __init__(self, indent: int | None) -> None:
        self.indent = indent

    def join(self, opening: str, items: list[str], closing: str, depth: int) -> str:
        if not items:
            return opening + closing
        if self.indent is None:
            return opening + ", ".join(items) + closing
        pad = "\n" + " " * (self.indent * (depth + 1))
        return (
            opening + pad + ("," + pad).join(items) + "\n" + " " * (self.indent * depth) + closing
        )

    def node(self, node: Any, depth: int) -> str:
        if node is None:
            return "null"
        if isinstance(node, bool):
            return "true" if node else "false"
        if isinstance(node, (int, float)):
            return json.dumps(node)
        if isinstance(node, str):
            return _string(node)
        if isinstance(node, list):
            return self.join("[", [self.node(v, depth + 1) for v in node], "]", depth)
        if isinstance(node, dict):
            if len(node) == 1:
                (tag,) = node
                if tag.startswith("$"):
                    return self.tagged(tag, node[tag], depth)
            return self.obj(node, depth)
        return repr(node)

    def obj(self, node: dict[str, Any], depth: int) -> str:
        items = [f"{_string(k)}: {self.node(v, depth + 1)}" for k, v in node.items()]
        return self.join("{", items, "}", depth)

    def tagged(self, tag: str, payload: Any, depth: int) -> str:
        match tag:
            case "$undefined":
                return "undefined"
            case "$number":
                return str(payload)
            case "$bigint":
                return f"{payload}n"
            case "$date":
                return "Invalid Date" if payload is None else f"Date({payload})"
            case "$regexp" if isinstance(payload, dict):
                return f"/{payload.get('source', '')}/{payload.get('flags', '')}"
            case "$map" if isinstance(payload, list):
                items = [
                    f"{self.node(pair[0], depth + 1)} => {self.node(pair[1], depth + 1)}"
                    for pair in payload
                    if isinstance(pair, list) and len(pair) == 2
                ]
                return self.join(f"Map({len(payload)}) {{", items, "}", depth)
            case "$set" if isinstance(payload, list):
                items = [self.node(v, depth + 1) for v in payload]
                return self.join(f"Set({len(payload)}) {{", items, "}", depth)
            case "$bytes":
                return _bytes_text(payload, "ArrayBuffer")
            case "$typed" if isinstance(payload, dict):
                return _bytes_text(payload.get("bytes"), str(payload.get("type", "typed")))
            case "$blob" if isinstance(payload, dict):
                return _blob(payload)
            case "$array" if isinstance(payload, dict):
                return self.sparse(payload, depth)
            case "$boxed":
                return f"Boxed({self.node(payload, depth)})"
            case "$error" if isinstance(payload, dict):
                return f"{payload.get('name', 'Error')}({_string(str(payload.get('message', '')))})"
            case "$ref":
                return f"<ref {payload or '(root)'}>"
            case "$opaque" if isinstance(payload, dict):
                rest = {k: v for k, v in payload.items() if k != "type"}
                return f"{payload.get('type', 'opaque')} {self.obj(rest, depth)}"
            case "$object" if isinstance(payload, dict):
                return self.obj(payload, depth)
        return self.obj({tag: payload}, depth)

    def sparse(self, payload: dict[str, Any], depth: int) -> str:
        length = payload.get("length", 0)
        items_in = payload.get("items", {})
        items = []
        indexes = sorted((int(k) for k in items_in if k.isdigit()), key=int)
        extra = [k for k in items_in if not k.isdigit()]
        previous = -1
        for index in indexes:
            holes = index - previous - 1
            if holes:
                items.append(f"<{holes} empty>")
            items.append(self.node(items_in[str(index)], depth + 1))
            previous = index
        if isinstance(length, int) and length - previous - 1 > 0:
            items.append(f"<{length - previous - 1} empty>")
        items += [f"{_string(k)}: {self.node(items_in[k], depth + 1)}" for k in extra]
        return self.join("[", items, "]", depth)


def pretty(node: Any, *, indent: int | None = None) -> str:
    """Readable text of a parsed typed-JSON node; one line unless `indent` is given."""
    return _Printer(indent).node(node, 0)


def pretty_text(text: str | None, *, indent: int | None = None) -> str:
    """Readable text of typed-JSON text (None, for a deleted value, reads as `-`)."""
    if text is None:
        return "-"
    return pretty(json.loads(text), indent=indent)
