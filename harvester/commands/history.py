"""`harvester history`: every version of one record across the kept runs, field by field."""

from __future__ import annotations

import argparse
import sys

from harvester.errors import UsageError
from harvester.inspect.history import find_history, flat_rows, history_payload
from harvester.inspect.options import format_options, open_state, output_format, state_options
from harvester.inspect.pretty import pretty_text
from harvester.inspect.queries import StateReader
from harvester.inspect.render import Column, to_json, write_rows
from harvester.state import Store

CHANGE_COLUMNS = (
    Column("op", "op"),
    Column("field", "field"),
    Column("old_text", "old", typed="old"),
    Column("new_text", "new", typed="new"),
)
# The run id and its commit time share a cell in a table, which leaves the values the width.
TABLE_COLUMNS = (Column("run_text", "run / committed", fit="keep"), *CHANGE_COLUMNS)
CSV_COLUMNS = (Column("run_id", "run"), Column("committed_at", "committed"), *CHANGE_COLUMNS)
USAGE = "give TARGET DB STORE KEY, or TARGET DB/STORE KEY"


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "history",
        parents=[common, state_options(), format_options()],
        help="show every version of one record",
        description=(
            "Show every version of one record across the kept committed runs, oldest first: "
            "the run, when it was committed, the op (+I, +U, -D) and the fields it changed "
            "(the whole value for +I and -D). `history TARGET DB STORE KEY`, as `show` names a "
            "store, or `history TARGET DB/STORE KEY`. KEY as `show --key` reads it: JSON (42, "
            '[1,"a"], {"$date":"…"}) or a plain string; 42 is the number when it has history, '
            'else the string ("42" names the string). Use -- before a KEY starting with -.'
        ),
    )
    parser.add_argument("target", metavar="TARGET")
    parser.add_argument("names", metavar="DB STORE KEY", nargs="+", help="or DB/STORE KEY")
    parser.set_defaults(func=run)


def _store(reader: StateReader, target: str, names: list[str]) -> Store:
    """The store named `DB STORE` or `DB/STORE`; unknown names are errors listing what exists."""
    if len(names) == 2:
        return reader.store(target, names[0], names[1])
    (joined,) = names
    stores = reader.stores(target=target)
    # Names may hold a slash themselves: the split that names a known store wins.
    found = [s for s in stores if f"{s.db}/{s.store}" == joined]
    if found:
        return reader.store(target, found[0].db, found[0].store)
    db, slash, store = joined.partition("/")
    if not slash:
        raise UsageError(f"{USAGE} (got {joined!r} with no slash)")
    return reader.store(target, db, store)


def run(args: argparse.Namespace) -> int:
    if len(args.names) not in (2, 3):
        raise UsageError(USAGE)
    *names, argument = args.names
    fmt = output_format(args)
    with open_state(args) as reader:
        store = _store(reader, args.target, names)
        key, versions = find_history(reader, store, argument)
    payload = history_payload(store, key, versions)
    if fmt == "json":
        sys.stdout.write(to_json(payload) + "\n")
    else:
        title = f"{store.target} / {store.db} / {store.store} / key {pretty_text(key)}"
        columns = CSV_COLUMNS if fmt == "csv" else TABLE_COLUMNS
        write_rows(flat_rows(payload), columns, fmt, sys.stdout, title=title)
    return 0
