"""The feed's cursors: a feed position as an opaque, URL-safe text.

Opaque so that consumers pass it back rather than build one; it holds the position's run number,
rows read of that run and the run's id (which tells this state DB's run from another's).
"""

from __future__ import annotations

import base64
import binascii

import orjson

from harvester.state.feed import Position


class BadCursor(ValueError):
    """A text that is not a cursor this API gave."""


def encode(position: Position) -> str:
    raw = orjson.dumps([position.seq, position.done, position.run_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(text: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        seq, done, run_id = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadCursor(f"{text!r} is not a cursor of this feed") from exc
    if not (
        type(seq) is int
        and type(done) is int
        and seq >= 0
        and done >= 0
        and (run_id is None or (isinstance(run_id, str) and run_id))
    ):
        raise BadCursor(f"{text!r} is not a cursor of this feed")
    return Position(seq, done, run_id)
