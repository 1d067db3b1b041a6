"""`--reset-state`: move a state folder aside, whole, so that a new one can start.

Nothing is deleted: the old DB, its spool files (changes that may never have been sent), the
Flink logs and the lock file move together to `<state.dir>.broken-<UTC time>`, where a person can
restore from them or send a spool by hand.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from pathlib import Path

from harvester.errors import UnusableStateError
from harvester.lock import StateLock
from harvester.state.paths import aside_path
from harvester.state.schema import sync_folder


def reset_state(state_dir: Path, *, now: datetime | None = None) -> Path | None:
    """Move `state_dir` aside and make it anew, empty (0700); where the old one went, or None
    when there was none.

    Call it before taking the folder's `StateLock`: it takes that lock itself, for the move,
    and raises `StateLockedError` while another process (or this one) holds it. A lock held on
    the old folder would not guard the new one.
    """
    if not os.path.lexists(state_dir):
        return None
    # A symlinked state.dir keeps pointing where it did: the folder it names is what moves.
    folder = state_dir.resolve()
    if not folder.is_dir():
        raise UnusableStateError(
            f"state.dir {state_dir} is not a folder; move it away or set another state.dir"
        )
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    with StateLock(folder):
        aside = next(
            path
            for path in (aside_path(folder, stamp, n) for n in itertools.count(1))
            if not os.path.lexists(path)
        )
        try:
            folder.rename(aside)
        except OSError as exc:
            raise UnusableStateError(
                f"cannot move the state folder {folder} aside to {aside}: "
                f"{exc.strerror or exc}; move its contents elsewhere by hand (a mount point "
                "cannot be renamed) and run again without --reset-state"
            ) from exc
    try:
        # Made here, not by the next open, so that a symlinked state.dir resolves again.
        folder.mkdir(mode=0o700)
        sync_folder(folder.parent)
    except OSError as exc:
        raise UnusableStateError(
            f"the state folder was moved aside to {aside}, but a new {folder} could not be "
            f"made: {exc.strerror or exc}"
        ) from exc
    return aside
