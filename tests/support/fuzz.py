"""Hypothesis strategies for the fidelity fuzzing: IndexedDB records as typed JSON texts.

Values are the graphs of `tests/support/values.py` (every type of the typed-JSON table, Maps with
object keys, Sets, sparse arrays, shared references and cycles), some wrapped once more;
`codec.canonical` writes them as the typed JSON the reader must give back. Keys are every kind
IndexedDB takes, falsy and compound ones included.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from harvester import codec
from harvester.codec import Map, Set, SparseArray
from tests.support.values import (
    containers_in,
    dates,
    graphs,
    js_strings,
    leaves,
    same_value_zero,
)


@dataclass(frozen=True)
class FuzzRecord:
    """One record to store: the typed JSON texts of its key and value, and the key's order."""

    key: str
    value: str
    order: tuple[Any, ...]


def key_order(key: Any) -> tuple[Any, ...]:
    """IndexedDB's key order: numbers < Dates < strings (UTF-16 code units) < binary < arrays."""
    if isinstance(key, bool):
        raise TypeError("a boolean is not a key")
    if isinstance(key, int | float):
        return (0, float(key))
    if isinstance(key, datetime):
        return (1, key)
    if isinstance(key, str):
        # Big-endian UTF-16 compares bytewise exactly as code units do.
        return (2, key.encode("utf-16-be", "surrogatepass"))
    if isinstance(key, bytes):
        return (3, key)
    return (4, tuple(key_order(k) for k in key))


# -0 is stored as the key 0, and NaN is no key at all.
key_numbers = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False).filter(lambda f: f != 0 or math.copysign(1, f) > 0),
    st.sampled_from([0, 5e-324, 1e21, -1e-7, math.inf, -math.inf]),
)
key_leaves = st.one_of(
    key_numbers,
    js_strings,
    dates,
    st.binary(max_size=8),
    st.sampled_from([0, "", b""]),  # falsy keys must not read as "no lower bound"
)
keys = st.recursive(key_leaves, lambda inner: st.lists(inner, max_size=3), max_leaves=6)

# Graphs, some wrapped once more in an array or an object (with `$`-names): the references of
# the inner graph then have longer pointers, through an `$object` marker too.
_graphs = graphs(with_opaque=False)
values = st.one_of(
    _graphs,
    st.lists(_graphs, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(["$ref", "a", "$", "~/"]), _graphs, min_size=1, max_size=2),
)


@st.composite
def records(draw: Any, max_size: int) -> list[FuzzRecord]:
    """Up to `max_size` records with distinct keys."""
    pairs = draw(
        st.lists(
            st.tuples(keys, values),
            min_size=1,
            max_size=max_size,
            unique_by=lambda p: codec.canonical(p[0]),
        )
    )
    return [FuzzRecord(codec.canonical(k), codec.canonical(v), key_order(k)) for k, v in pairs]


@st.composite
def changed_values(draw: Any) -> tuple[str, str]:
    """The typed JSON of a value and of a copy of it with one member (or, for a leaf, the whole
    value) replaced by another leaf: two different values."""
    value = draw(values)
    changed = copy.deepcopy(value)
    found = containers_in(changed)
    new = draw(leaves)
    if not found:
        changed = new
    else:
        holder = draw(st.sampled_from(found))
        if isinstance(holder, list | dict | SparseArray):
            members = holder.items if isinstance(holder, SparseArray) else holder
            names = list(range(len(members))) if isinstance(members, list) else list(members)
            if names:
                members[draw(st.sampled_from(names))] = new
            elif isinstance(members, list):
                members.append(new)
            else:
                members["added"] = new
        elif isinstance(holder, Map):
            if holder.entries:
                at = draw(st.integers(0, len(holder.entries) - 1))
                holder.entries[at] = (holder.entries[at][0], new)
            else:
                holder.entries.append(([], new))
        elif isinstance(holder, Set):
            # Members are unique, and a -0 member is stored as 0.
            assume(same_value_zero(new) not in {same_value_zero(m) for m in holder.items})
            assume(not (isinstance(new, float) and new == 0 and math.copysign(1, new) < 0))
            holder.items.append(new)
    before, after = codec.canonical(value), codec.canonical(changed)
    assume(before != after)
    return before, after
