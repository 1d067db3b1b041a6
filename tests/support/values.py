"""Hypothesis strategies for every kind of value a page can store: each type of the typed-JSON
table, Maps with object keys, Sets, sparse arrays, shared references and cycles."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from typing import Any

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
)


def _no_pairs(text: str) -> bool:
    # A high surrogate followed by a low one is one character to JavaScript: such a Python
    # string cannot come back the same, so values are generated without it.
    return not any(
        "\ud800" <= a <= "\udbff" and "\udc00" <= b <= "\udfff" for a, b in itertools.pairwise(text)
    )


surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
js_strings = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), surrogates, st.sampled_from('"\\$/~\n\x00'))
).filter(_no_pairs)
safe_strings = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]))
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.sampled_from([0.0, -0.0, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 1.2345678901234568e20]),
)
dates = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
invalid_dates = st.sampled_from(
    [
        InvalidDate(None),
        InvalidDate("+275760-09-13T00:00:00.000Z"),
        InvalidDate("-000001-01-01T00:00:00.000Z"),
    ]
)
regexps = st.builds(
    RegExp,
    st.sampled_from(["ab+c", "^x$", "a|b", "\\d+", "[a-z]*", "(?:é)"]),
    st.sampled_from(["", "g", "gi", "dgimsy", "u", "gmu"]),
)
blob_types = st.sampled_from(["", "text/plain", "application/octet-stream"])
blobs = st.builds(lambda data, t: Blob(t, len(data), data), st.binary(max_size=40), blob_types)
files = st.builds(
    lambda data, t, name, modified: File(t, len(data), data, name=name, last_modified=modified),
    st.binary(max_size=40),
    blob_types,
    safe_strings,
    st.integers(min_value=0, max_value=2**45),
)
ELEMENT_SIZES = {
    "Int8Array": 1,
    "Uint8Array": 1,
    "Uint8ClampedArray": 1,
    "Int16Array": 2,
    "Uint16Array": 2,
    "Int32Array": 4,
    "Uint32Array": 4,
    "Float32Array": 4,
    "Float64Array": 8,
    "BigInt64Array": 8,
    "BigUint64Array": 8,
    "DataView": 1,
}
typed_arrays = st.sampled_from(sorted(ELEMENT_SIZES)).flatmap(
    lambda t: st.builds(
        lambda n, data: TypedArray(t, data[: n * ELEMENT_SIZES[t]]),
        st.integers(0, 4),
        st.binary(min_size=32, max_size=32),
    )
)
errors = st.builds(
    JSError,
    st.sampled_from(["Error", "TypeError", "RangeError", "SyntaxError", "EvalError", "URIError"]),
    safe_strings,
)
boxed = st.builds(Boxed, st.one_of(numbers, js_strings, st.booleans(), st.integers().map(BigInt)))
leaves = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    js_strings,
    st.just(UNDEFINED),
    st.integers().map(BigInt),
    dates,
    invalid_dates,
    regexps,
    st.binary(max_size=40),
    blobs,
    files,
    typed_arrays,
    errors,
    boxed,
)
opaques = st.builds(
    lambda reason, usages: Opaque("CryptoKey", {"reason": reason, "usages": usages}),
    safe_strings,
    st.lists(st.sampled_from(["encrypt", "decrypt", "sign"]), unique=True),
)


def same_value_zero(value: Any) -> Any:
    """What JavaScript's Map and Set compare members by (objects by identity)."""
    if isinstance(value, BigInt):
        return ("bigint", int(value))
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, int | float):
        return ("number", "nan" if value != value else float(value) + 0.0)
    if isinstance(value, str | type(None)) or value is UNDEFINED:
        return (type(value).__name__, value)
    return ("object", id(value))


def _negative_zero(value: float) -> bool:
    return value == 0 and math.copysign(1, value) < 0


def _sparse(draw: Any, children: st.SearchStrategy[Any]) -> SparseArray:
    length = draw(st.integers(0, 8))
    present = (
        draw(st.sets(st.integers(0, max(length - 1, 0)), max_size=length)) if length else set()
    )
    extras = draw(
        st.dictionaries(
            safe_strings.filter(lambda k: not k.isdigit() and k != "length"), children, max_size=2
        )
    )
    if len(present) == length and not extras:
        extras = {"extra": None}  # a dense array with nothing more is written as a plain array
    items = {str(i): draw(children) for i in sorted(present)}
    return SparseArray(length, {**items, **extras})


@st.composite
def _containers(draw: Any, children: st.SearchStrategy[Any]) -> Any:
    kind = draw(st.sampled_from(["list", "dict", "map", "set", "sparse"]))
    if kind == "list":
        return draw(st.lists(children, max_size=4))
    if kind == "dict":
        keys = st.one_of(js_strings, st.sampled_from(["$ref", "$date", "__proto__", "a/b~c", ""]))
        return draw(st.dictionaries(keys, children, max_size=4))
    # JavaScript turns a -0 Map key or Set member into 0: no such value can be stored.
    members = children.filter(lambda v: not (isinstance(v, float) and _negative_zero(v)))
    if kind == "map":
        pairs = draw(
            st.lists(
                st.tuples(members, children),
                max_size=4,
                unique_by=lambda p: same_value_zero(p[0]),
            )
        )
        return Map(pairs)
    if kind == "set":
        return Set(draw(st.lists(members, max_size=4, unique_by=same_value_zero)))
    return _sparse(draw, children)


trees = st.recursive(leaves, _containers, max_leaves=12)


def containers_in(
    value: Any, out: list[Any] | None = None, seen: set[int] | None = None
) -> list[Any]:
    """Every list, dict, Map, Set and sparse array in `value`, each once."""
    out = [] if out is None else out
    seen = set() if seen is None else seen
    if id(value) in seen or not isinstance(value, list | dict | Map | Set | SparseArray):
        return out
    seen.add(id(value))
    out.append(value)
    children: list[Any]
    if isinstance(value, list):
        children = value
    elif isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, Map):
        children = [x for pair in value.entries for x in pair]
    elif isinstance(value, Set):
        children = value.items
    else:
        children = list(value.items.values())
    for child in children:
        containers_in(child, out, seen)
    return out


@st.composite
def graphs(draw: Any, with_opaque: bool = True) -> Any:
    """A tree, then a few extra references from one of its containers to another: sharing and
    cycles (a reference to an ancestor)."""
    root = draw(st.one_of(trees, opaques) if with_opaque else trees)
    containers = containers_in(root, [], set())
    if containers:
        for _ in range(draw(st.integers(0, 3))):
            holder = draw(st.sampled_from(containers))
            target = draw(st.sampled_from(containers))
            if isinstance(holder, list):
                holder.append(target)
            elif isinstance(holder, dict):
                holder[draw(safe_strings)] = target
            elif isinstance(holder, Map):
                holder.entries.append(([], target))  # a fresh key: JavaScript keys are unique
            elif isinstance(holder, Set):
                if all(item is not target for item in holder.items):  # members are unique
                    holder.items.append(target)
            else:
                holder.items[f"x{len(holder.items)}"] = target
    return root
