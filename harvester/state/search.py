"""The inspector's record search: one page of a store's records, sorted, optionally matching a
text, with the number of records matching.

A text of 3 characters or more is looked up in `snapshot_search` (schema 7: an FTS5 trigram
index of each record's key and value leaves, `schema.search_index`), which gives candidates;
`search_contains` (`schema.contains`) then keeps those whose key or value text really contains
it. A shorter text has no trigram: it matches keys by prefix, on the snapshot's unique index.
A big store in last_changed order merges two walks (`_last_changed`).
`docs/state.md` ("Search") has the rules.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
import sqlite3
from collections.abc import Iterator
from itertools import islice, product
from typing import Any

from harvester.state.connections import Connections, marks
from harvester.state.records import RecordPage, SnapshotRecord, Store, from_row

ORDERS = {"first_seen": "s.id", "key": "s.key", "last_changed": "s.last_changed_run"}
# Counting stops here (`RecordPage.capped`): a text in most of a million records would take
# a second to count.
COUNT_CAP = 10_000
MIN_TRIGRAM = 3
# Trigrams of a long text beyond these add little selectivity and cost a doclist each.
MAX_TRIGRAMS = 24
_COLUMNS = "s.key, s.value, s.value_hash, s.first_seen_run, s.last_changed_run"
_IN_STORE = "s.target = :target AND s.origin = :origin AND s.db = :db AND s.store = :store"
_SURROGATE = re.compile("[\ud800-\udfff]")
# The records that hold the text: the index gives candidates in rowid order, lazily; the function
# checks each one. CROSS JOIN keeps the index outside: inside, SQLite would run the whole match
# once per record.
_FOUND = (
    "FROM snapshot_search f CROSS JOIN snapshot s ON s.id = f.rowid "
    f"WHERE f.snapshot_search MATCH :query AND {_IN_STORE} "
    "AND (search_contains(s.key, :needle) OR search_contains(s.value, :needle))"
)
# A record holds the text: its key or value text does (any case), and the index agrees.
_MATCHES = (
    "(search_contains(s.key, :needle) OR search_contains(s.value, :needle)) "
    "AND EXISTS (SELECT 1 FROM snapshot_search f WHERE f.snapshot_search MATCH :query "
    "AND f.rowid = s.id)"
)


def _escaped(text: str) -> str:
    """`text` as it appears inside a typed-JSON string: JSON escapes, lone surrogates as `\\udXXX`
    (how the reader writes them)."""
    inner = json.dumps(text, ensure_ascii=False)[1:-1]
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", inner)


def match_query(text: str) -> str:
    """The FTS5 query for `text`: its trigrams, each a quoted string (a literal, whatever the
    characters: the user's text is never FTS syntax), all required."""
    plain = _SURROGATE.sub("", text)
    grams = list(dict.fromkeys(plain[i : i + 3] for i in range(len(plain) - 2)))
    if len(grams) > MAX_TRIGRAMS:  # evenly spread, the first and the last kept
        step = (len(grams) - 1) / (MAX_TRIGRAMS - 1)
        grams = [grams[round(i * step)] for i in range(MAX_TRIGRAMS)]
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


def _prefixes(text: str) -> list[str]:
    """The key texts a 1–2 character `text` may begin: a number or other key as typed, a string
    key after its quote, in every mix of upper and lower case."""
    cases = {"".join(chars) for chars in product(*({c.lower(), c.upper()} for c in text))}
    return sorted({form for case in cases for form in (case, '"' + _escaped(case))})


def _after(prefix: str) -> str | None:
    """The least text above every text that starts with `prefix` (UTF-8 sorts as code points)."""
    last = ord(prefix[-1])
    return None if last >= 0x10FFFF else prefix[:-1] + chr(last + 1 + (last == 0xD7FF) * 0x800)


def search_records(
    conns: Connections,
    store: Store,
    *,
    text: str,
    order: str,
    descending: bool,
    offset: int,
    limit: int,
) -> RecordPage:
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; use one of {', '.join(ORDERS)}")
    if offset < 0 or limit < 0:
        raise ValueError(f"offset and limit must not be negative (got {offset}, {limit})")
    way = "DESC" if descending else "ASC"
    sort = _sort(order, descending)
    params: dict[str, Any] = {
        "target": store.target,
        "origin": store.origin,
        "db": store.db,
        "store": store.store,
        "limit": limit,
        "offset": offset,
        "cap": COUNT_CAP + 1,
    }
    if not text:
        return _all(conns, params, order, descending)
    if len(text) < MIN_TRIGRAM:
        return _by_prefix(conns, params, sort, text)
    params["query"] = match_query(text)
    if not params["query"]:  # nothing but lone surrogates, which the index never holds
        return RecordPage([], 0)
    params["needle"] = _escaped(text).lower()
    return _by_text(conns, params, sort, order, way)


def _sort(order: str, descending: bool) -> str:
    """The ORDER BY of `order`; the id breaks ties, so that pages never overlap or skip."""
    way = "DESC" if descending else "ASC"
    return f"{ORDERS[order]} {way}" + ("" if order == "first_seen" else f", s.id {way}")


def _page(conns: Connections, sql: str, params: dict[str, Any]) -> list[SnapshotRecord]:
    return [from_row(SnapshotRecord, row) for row in conns.rows(sql, params)]


def _counted(conns: Connections, matching: str, params: dict[str, Any]) -> tuple[int, bool]:
    """How many rows the query `matching` gives, up to the cap."""
    count = conns.rows(f"SELECT count(*) FROM ({matching} LIMIT :cap)", params)[0][0]
    return min(count, COUNT_CAP), count > COUNT_CAP


def _all(conns: Connections, params: dict[str, Any], order: str, descending: bool) -> RecordPage:
    # The commit counted the store: no count of a million rows per page.
    counted = conns.rows(f"SELECT records FROM stores s WHERE {_IN_STORE}", params)
    total = int(counted[0][0]) if counted else 0
    # A page past the middle is read from the other end, the other way round: every walk below
    # is as long as its offset.
    offset, limit = params["offset"], params["limit"]
    flip = total > offset > total // 2
    if flip:
        limit = min(limit, total - offset)
        params = params | {"offset": total - offset - limit, "limit": limit}
        descending = not descending
    if order == "last_changed" and total >= COUNT_CAP:
        records = _last_changed(conns, params, descending)
    else:
        # A big store in first-seen order: walking the table by id meets its rows at once,
        # where the unique index would sort them all first. (A small store's rows are sorted.)
        walk = "NOT INDEXED" if order == "first_seen" and total >= COUNT_CAP else ""
        records = _page(
            conns,
            f"SELECT {_COLUMNS} FROM snapshot s {walk} WHERE {_IN_STORE} "
            f"ORDER BY {_sort(order, descending)} LIMIT :limit OFFSET :offset",
            params,
        )
    return RecordPage(records[::-1] if flip else records, total)


def _by_prefix(conns: Connections, params: dict[str, Any], sort: str, text: str) -> RecordPage:
    ranges = []
    for number, prefix in enumerate(_prefixes(text)):
        params[f"p{number}"] = prefix
        upper = _after(prefix)
        if upper is None:
            ranges.append(f"s.key >= :p{number}")
        else:
            params[f"q{number}"] = upper
            ranges.append(f"(s.key >= :p{number} AND s.key < :q{number})")
    # One range per arm: each is a seek on the unique index (target, origin, db, store, key).
    arms = " UNION ALL ".join(
        f"SELECT s.id FROM snapshot s WHERE {_IN_STORE} AND {where}" for where in ranges
    )
    total, capped = _counted(conns, f"SELECT id FROM ({arms})", params)
    records = _page(
        conns,
        f"SELECT {_COLUMNS} FROM snapshot s WHERE s.id IN ({arms}) ORDER BY {sort} "
        "LIMIT :limit OFFSET :offset",
        params,
    )
    return RecordPage(records, total, capped)


def _by_text(
    conns: Connections, params: dict[str, Any], sort: str, order: str, way: str
) -> RecordPage:
    total, capped = _counted(conns, f"SELECT 1 {_FOUND}", params)
    if capped and order == "last_changed":
        records = _last_changed(conns, params, way == "DESC", text=True)
        return RecordPage(records, total, capped)
    if order == "first_seen":
        sql = f"SELECT {_COLUMNS} {_FOUND} ORDER BY f.rowid {way} LIMIT :limit OFFSET :offset"
    elif not capped or order != "key":
        # At most COUNT_CAP matches: sorting them is cheap. (last_changed has no index to walk:
        # every match is sorted, linear in the matches; a walk would check every record.)
        sql = f"SELECT {_COLUMNS} {_FOUND} ORDER BY {sort} LIMIT :limit OFFSET :offset"
    else:
        # A common text in key order: walking the unique index meets a match soon; each record is
        # checked against the index by rowid (no list of every match is built).
        sql = (
            f"SELECT {_COLUMNS} FROM snapshot s WHERE {_IN_STORE} AND {_MATCHES} "
            f"ORDER BY {sort} LIMIT :limit OFFSET :offset"
        )
    return RecordPage(_page(conns, sql, params), total, capped)


def _last_changed(
    conns: Connections, params: dict[str, Any], descending: bool, *, text: bool = False
) -> list[SnapshotRecord]:
    """A page of a big store in last-changed order, by merging two walks: the records changed
    since first seen, in that order on `snapshot_changed`, and the others, in id order (`text`:
    matches only, those from the search index, which holds them in id order too).

    Ids grow in commit order, and so do a target's run ids, so a never-changed record's id order
    is its first-seen (= last-changed) order.
    """
    way = "DESC" if descending else "ASC"
    walks = (
        f"SELECT s.last_changed_run, s.id FROM snapshot s INDEXED BY snapshot_changed "
        f"WHERE {_IN_STORE} AND s.last_changed_run <> s.first_seen_run "
        f"{f'AND {_MATCHES}' if text else ''} {{where}} "
        f"ORDER BY s.last_changed_run {way}, s.id {way}",
        f"SELECT s.last_changed_run, s.id {_FOUND} AND s.last_changed_run = s.first_seen_run "
        f"ORDER BY f.rowid {way}"
        if text
        else f"SELECT s.last_changed_run, s.id FROM snapshot s NOT INDEXED WHERE {_IN_STORE} "
        f"AND s.last_changed_run = s.first_seen_run ORDER BY s.id {way}",
    )
    with conns.reading() as conn:  # every walk in one snapshot of the DB
        # A text's matches are not counted cheaply: its deep pages walk from the start.
        changed, unchanged, skip = (
            (_walk(conn, walks[0], params), _walk(conn, walks[1], params), params["offset"])
            if text
            else _skipped(conn, walks, params, descending)
        )
        merged = heapq.merge(changed, unchanged, reverse=descending)
        ids = [row[1] for row in islice(merged, skip, skip + params["limit"])]
        rows = conn.execute(
            f"SELECT {_COLUMNS}, s.id FROM snapshot s WHERE s.id IN ({marks(len(ids))})", ids
        ).fetchall()
    by_id = {row["id"]: from_row(SnapshotRecord, row) for row in rows}
    return [by_id[record] for record in ids]


def _walk(
    conn: sqlite3.Connection, sql: str, params: dict[str, Any], start: int = 0
) -> Iterator[tuple[Any, ...]]:
    """The rows of the walk `sql` from its row `start`, as plain tuples (which compare)."""
    cursor = conn.cursor()
    cursor.row_factory = None
    return iter(cursor.execute(f"{sql.format(where='')} LIMIT -1 OFFSET {start}", params))


def _skipped(
    conn: sqlite3.Connection, walks: tuple[str, str], params: dict[str, Any], descending: bool
) -> tuple[Iterator[tuple[Any, ...]], Iterator[tuple[Any, ...]], int]:
    """Both walks of `_last_changed` begun near the page at `params["offset"]`, and how many
    merged rows to skip from there.

    The never-changed walk is the long one: its offset is skipped in SQL. Among the first
    `offset` merged rows at most all `n` changed ones come from the changed walk, so the
    never-changed walk's row `j = offset - n` comes at or before the page; the changed rows
    before it are counted on their index.
    """
    changed, unchanged = walks
    offset = params["offset"]
    count = f"SELECT count(*) FROM ({changed})"
    n = conn.execute(count.format(where=""), params).fetchone()[0]
    j = max(0, offset - n)
    rest = _walk(conn, unchanged, params, j)
    first = next(rest, None)
    if first is None:  # fewer never-changed rows than that: the page is past the end
        return iter(()), iter(()), 0
    before = "(s.last_changed_run, s.id) " + (">" if descending else "<") + " (:lcr, :rid)"
    i = conn.execute(
        count.format(where=f"AND {before}"), params | {"lcr": first[0], "rid": first[1]}
    ).fetchone()[0]
    unchanged_rows = itertools.chain([first], rest)
    if j + i > offset:  # only changed rows come before the page (and j is 0)
        return _walk(conn, changed, params, offset), unchanged_rows, 0
    return _walk(conn, changed, params, i), unchanged_rows, offset - (j + i)
