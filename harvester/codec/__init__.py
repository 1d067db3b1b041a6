"""Typed JSON: the lossless JSON form of IndexedDB keys and values (see docs/typed-json.md).

The page's encoder (`reader.js`) writes canonical typed JSON text; this module decodes it into
Python values, encodes Python values back, and writes the same canonical text byte for byte, so
`canonical(decode(text)) == text` and equal values hash equally wherever they were written.
"""

from harvester.codec.decoding import decode
from harvester.codec.encoding import canonical, encode, value_hash
from harvester.codec.values import (
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
)

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
