"""The Python values that stand for JavaScript values JSON and Python have no type for."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

# JavaScript numbers are doubles: an integer beyond 2**53 in typed JSON stands for the double
# nearest to it, where JSON parsers give an exact (and different) int.
SAFE_INT: Final = 2**53


def pointer_segment(key: str) -> str:
    """`key` as one segment of a JSON pointer (the path a `$ref` names)."""
    return key.replace("~", "~0").replace("/", "~1")


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
