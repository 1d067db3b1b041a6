"""Bounds that the browser layer and the storage layer both apply, defined once for both."""

from __future__ import annotations

from typing import Final

# Problems kept per store read and per stored run: a store of a million unreadable values must
# flood neither memory nor the run's row.
MAX_PROBLEMS: Final = 100
