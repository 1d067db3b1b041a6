"""Store names as Chromium's events report them, and globs that find those stores again.

IndexedDB names may hold any UTF-16 string, lone surrogates included; the DevTools protocol sends
text as UTF-8 and writes a lone surrogate as U+FFFD. An event's name then matches no store
exactly, so the glob made of it lets U+FFFD stand for any one character: it finds the store the
event meant (and one named with a real U+FFFD, which a read too many costs nothing wrong).
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"

# fnmatch's special characters, each escaped as a one-character class.
_SPECIAL = re.compile(r"([*?\[])")


def name_glob(name: str) -> str:
    """An `fnmatch` glob matching exactly `name` as Chromium reported it (see above)."""
    escaped = _SPECIAL.sub(r"[\1]", name)
    return escaped.replace(REPLACEMENT, "?")


def store_glob(db: str, store: str) -> str:
    """The target `stores` glob ("db/store") of one store an event named."""
    return f"{name_glob(db)}/{name_glob(store)}"
