"""The changelog's ops and the one rule that decides which a key's change is."""

from __future__ import annotations

from typing import Literal

Op = Literal["+I", "+U", "-D"]


def change_op(old_hash: str | None, new_hash: str | None) -> Op | None:
    """The op that takes a key from `old_hash` to `new_hash` (None: no record); None if equal.

    Capture decides what to spool by it and the commit what the history records: the commit
    cannot take the spooled op on trust, because a `--full` run spools every record as +I.
    """
    if old_hash == new_hash:
        return None
    if old_hash is None:
        return "+I"
    if new_hash is None:
        return "-D"
    return "+U"
