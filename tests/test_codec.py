"""Typed JSON in Python: decode, encode, canonical text and hash (see docs/typed-json.md).

The strategies (tests/support/values.py) generate every kind of value a page can store, shared
references and cycles included; test_reader.py uses them too, to check that the page writes the
very same text.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.codec import (
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
    canonical,
    decode,
    encode,
    value_hash,
)
from tests.support.values import graphs, js_strings

# --- structural equality -----------------------------------------------------------------------


def same(a: Any, b: Any, pairs: set[tuple[int, int]] | None = None) -> bool:
    """Equal as JavaScript values: NaN equals NaN, -0.0 differs from 0, BigInt from numbers, and
    cycles are followed once."""
    pairs = set() if pairs is None else pairs
    if isinstance(a, BigInt) or isinstance(b, BigInt):
        return isinstance(a, BigInt) and isinstance(b, BigInt) and int(a) == int(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if a != a or b != b:
            return a != a and b != b
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b) and not (isinstance(a, list | tuple) and isinstance(b, list)):
        return False
    if isinstance(a, list | tuple | dict | Map | Set | SparseArray | Boxed | Opaque):
        if (id(a), id(b)) in pairs:
            return True
        pairs.add((id(a), id(b)))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y, pairs) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], pairs) for k in a)
    if isinstance(a, Map):
        return len(a) == len(b) and all(
            same(k1, k2, pairs) and same(v1, v2, pairs)
            for (k1, v1), (k2, v2) in zip(a.entries, b.entries, strict=True)
        )
    if isinstance(a, Set):
        return same(a.items, b.items, pairs)
    if isinstance(a, SparseArray):
        return a.length == b.length and same(a.items, b.items, pairs)
    if isinstance(a, Boxed):
        return same(a.value, b.value, pairs)
    if isinstance(a, Opaque):
        return a.type == b.type and same(a.details, b.details, pairs)
    return bool(a == b)


# --- properties ---------------------------------------------------------------------------------

PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(graphs())
def test_decode_of_encode_round_trips(value: Any) -> None:
    parsed = encode(value)
    # A str given to decode is always text: a parsed JSON string is its own value.
    assert same(parsed if isinstance(parsed, str) else decode(parsed), value)


@PROPERTY
@given(graphs())
def test_canonical_text_round_trips(value: Any) -> None:
    text = canonical(value)
    back = decode(text)
    assert same(back, value)
    assert canonical(back) == text
    assert json.loads(text) == json.loads(text)  # well-formed JSON (lone surrogates escaped)
    text.encode("utf-8")  # and encodable: no raw lone surrogate


@PROPERTY
@given(graphs())
def test_canonical_keeps_sharing_and_cycles(value: Any) -> None:
    # Decoding a text that has $refs must give back shared objects, not copies: the canonical
    # text, which writes a second reference as $ref, proves it.
    back = decode(canonical(value))
    assert canonical(back) == canonical(value)


@given(st.dictionaries(js_strings, st.integers(0, 9), max_size=6))
def test_object_keys_sorted_by_utf16_code_units(value: dict[str, int]) -> None:
    keys = list(json.loads(canonical(value)).keys()) if not any(k[:1] == "$" for k in value) else []
    assert keys == sorted(keys, key=lambda k: k.encode("utf-16-be", "surrogatepass"))


# --- examples -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (-1.5, "-1.5"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),
        (5e-7, "5e-7"),
        (1e-6, "0.000001"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1.2345e-10, "1.2345e-10"),
        (-1.7976931348623157e308, "-1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (2**53, "9007199254740992"),
        (2**60, "1152921504606847000"),
        (math.nan, '{"$number":"NaN"}'),
        (-math.inf, '{"$number":"-Infinity"}'),
        (-0.0, '{"$number":"-0"}'),
        (0, "0"),
        (BigInt(-(2**70)), '{"$bigint":"-1180591620717411303424"}'),
    ],
)
def test_numbers_are_written_as_javascript_writes_them(value: Any, text: str) -> None:
    assert canonical(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("é\u2028😀", '"é\u2028😀"'),
        ('"\\', '"\\"\\\\"'),
        ("\x00\x1f\x7f", '"\\u0000\\u001f\x7f"'),
        ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
        ("\ud800x\udfff", '"\\ud800x\\udfff"'),
    ],
)
def test_strings_are_escaped_as_json_stringify_does(value: str, text: str) -> None:
    assert canonical(value) == text
    assert decode(text) == value


def test_table_of_types() -> None:
    cyclic: dict[str, Any] = {"name": "c"}
    cyclic["self"] = cyclic
    shared = [1, 2]
    value = {
        "undefined": UNDEFINED,
        "date": datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        "bad_date": InvalidDate(None),
        "regexp": RegExp("ab+c", "gi"),
        "map": Map([({"k": 1}, "v"), ("b", 2)]),
        "set": Set([3, 1, 2]),
        "bytes": b"\x01\x02\x03",
        "typed": TypedArray("Float64Array", b"\x00" * 6 + b"\xf8\x3f"),
        "blob": Blob("text/plain", 2, b"hi"),
        "file": File("text/plain", 1, b"x", name="a.txt", last_modified=5),
        "big_blob": Blob("", 99, None, sha256="ab" * 32, truncated=True),
        "sparse": SparseArray(3, {"0": 1, "2": 3, "x": "y"}),
        "boxed": Boxed(BigInt(5)),
        "error": JSError("TypeError", "boom"),
        "cyclic": cyclic,
        "shared": {"a": shared, "b": shared},
        "escaped": {"$x": 1},
        "opaque": Opaque("CryptoKey", {"extractable": False, "usages": ["encrypt"]}),
    }
    assert canonical(value) == (
        '{"bad_date":{"$date":null},'
        '"big_blob":{"$blob":{"sha256":"' + "ab" * 32 + '","size":99,"truncated":true,"type":""}},'
        '"blob":{"$blob":{"bytes":"aGk=","size":2,"type":"text/plain"}},'
        '"boxed":{"$boxed":{"$bigint":"5"}},'
        '"bytes":{"$bytes":"AQID"},'
        '"cyclic":{"name":"c","self":{"$ref":"/cyclic"}},'
        '"date":{"$date":"1999-12-31T23:59:59.999Z"},'
        '"error":{"$error":{"message":"boom","name":"TypeError"}},'
        '"escaped":{"$object":{"$x":1}},'
        '"file":{"$blob":{"bytes":"eA==","lastModified":5,"name":"a.txt","size":1,'
        '"type":"text/plain"}},'
        '"map":{"$map":[[{"k":1},"v"],["b",2]]},'
        '"opaque":{"$opaque":{"extractable":false,"type":"CryptoKey","usages":["encrypt"]}},'
        '"regexp":{"$regexp":{"flags":"gi","source":"ab+c"}},'
        '"set":{"$set":[3,1,2]},'
        '"shared":{"a":[1,2],"b":{"$ref":"/shared/a"}},'
        '"sparse":{"$array":{"items":{"0":1,"2":3,"x":"y"},"length":3}},'
        '"typed":{"$typed":{"bytes":"AAAAAAAA+D8=","type":"Float64Array"}},'
        '"undefined":{"$undefined":true}}'
    )
    assert same(decode(canonical(value)), value)


def test_refs_resolve_to_the_same_python_objects() -> None:
    value = decode('{"a":[1],"b":{"$ref":"/a"},"m":{"$map":[[{"$ref":"/m"},{"$ref":""}]]}}')
    assert value["a"] is value["b"]
    key, item = value["m"].entries[0]
    assert key is value["m"]
    assert item is value


def test_ref_pointer_segments_are_escaped() -> None:
    value = decode('{"a/b":{"~":[0]},"c":{"$ref":"/a~1b/~0"}}')
    assert value["c"] is value["a/b"]["~"]


def test_decode_accepts_parsed_json_and_bytes() -> None:
    parsed = {"d": [{"$date": "2020-01-02T03:04:05.006Z"}], "r": {"$ref": "/d"}}
    value = decode(parsed)
    assert value["d"] == [datetime(2020, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)]
    assert value["r"] is value["d"]
    assert parsed["d"] == [{"$date": "2020-01-02T03:04:05.006Z"}]  # the caller's data is kept
    assert decode(b'{"$bigint":"7"}') == 7
    assert isinstance(decode(b'{"$bigint":"7"}'), BigInt)


def test_decode_rejects_what_our_encoder_never_writes() -> None:
    with pytest.raises(ValueError, match="unknown marker"):
        decode('{"$nope":1}')
    with pytest.raises(ValueError, match="points nowhere"):
        decode('{"a":{"$ref":"/b"}}')


def test_dates_out_of_python_range_and_timezones() -> None:
    assert decode('{"$date":"+275760-09-13T00:00:00.000Z"}') == InvalidDate(
        "+275760-09-13T00:00:00.000Z"
    )
    assert decode('{"$date":"0000-01-01T00:00:00.000Z"}') == InvalidDate("0000-01-01T00:00:00.000Z")
    local = datetime(2020, 1, 1, 1, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert canonical(local) == '{"$date":"2020-01-01T00:00:00.123Z"}'
    with pytest.raises(ValueError, match="naive"):
        encode(datetime(2020, 1, 1))


def test_encode_refuses_what_javascript_cannot_hold() -> None:
    with pytest.raises(ValueError, match="BigInt"):
        encode(2**53 + 1)
    with pytest.raises(TypeError, match="cannot encode"):
        encode(object())
    with pytest.raises(TypeError, match="keys must be str"):
        encode({1: "a"})


def test_value_hash_is_sha256_of_the_utf8_text() -> None:
    text = canonical({"é": "\ud800"})
    assert value_hash(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert value_hash(canonical({"b": 1, "a": 2})) == value_hash(canonical({"a": 2, "b": 1}))
    assert value_hash(canonical(Map([("a", 1), ("b", 2)]))) != value_hash(
        canonical(Map([("b", 2), ("a", 1)]))
    )


def test_undefined_is_a_falsy_singleton() -> None:
    assert not UNDEFINED
    assert type(UNDEFINED)() is UNDEFINED
    assert repr(UNDEFINED) == "UNDEFINED"
