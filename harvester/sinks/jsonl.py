"""A sink that appends every changelog row to one JSON-lines file (tests, `--sink jsonl`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harvester.sinks.base import ChangeSink

if TYPE_CHECKING:
    from harvester.spool import SpoolFile


class JsonLinesSink(ChangeSink):
    """Appends every row to `<directory>/changes.jsonl`.

    All or nothing: a failed `send` cuts the file back to where it started.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "changes.jsonl"
        self.description = f"JSON lines in {self.path}"

    def send(self, spools: Sequence[SpoolFile]) -> None:
        # Harvested data is private like the state folder: 0700 folders, a 0600 file. The
        # folder above (the data_dir) is ours too; folders above that are the user's.
        self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as out:
            start = out.tell()
            try:
                for spool in spools:
                    with spool.path.open("rb") as rows:
                        while chunk := rows.read(1 << 20):
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            except BaseException:
                out.flush()
                out.truncate(start)
                raise
