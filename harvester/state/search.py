"""The inspector's record search: one page of a store's records, sorted, optionally matching a
text, with the number of records matching.

A text of 3 characters or more is looked up in `snapshot_search` (schema 6: an FTS5 trigram
index of each record's key and value leaves, `schema.SEARCH_INDEX`), which gives candidates;
`search_contains` (`schema.contains`) then keeps those whose key or value text really contains
it. A shorter text has no trigram: it matches keys by prefix, on the snapshot's unique index.
`docs/state.md` ("Search") has the rules.
"""

from __future__ import annotations

import json
import re
from itertools import product
from typing import Any

from harvester.state.connections import Connections
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
    # The id breaks ties (last_changed), so that pages never overlap or skip.
    sort = f"{ORDERS[order]} {way}" + ("" if order == "first_seen" else f", s.id {way}")
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
        return _all(conns, params, sort, order)
    if len(text) < MIN_TRIGRAM:
        return _by_prefix(conns, params, sort, text)
    params["query"] = match_query(text)
    if not params["query"]:  # nothing but lone surrogates, which the index never holds
        return RecordPage([], 0)
    params["needle"] = _escaped(text).lower()
    return _by_text(conns, params, sort, order, way)


def _page(conns: Connections, sql: str, params: dict[str, Any]) -> list[SnapshotRecord]:
    return [from_row(SnapshotRecord, row) for row in conns.rows(sql, params)]


def _counted(conns: Connections, matching: str, params: dict[str, Any]) -> tuple[int, bool]:
    """How many rows the query `matching` gives, up to the cap."""
    count = conns.rows(f"SELECT count(*) FROM ({matching} LIMIT :cap)", params)[0][0]
    return min(count, COUNT_CAP), count > COUNT_CAP


def _all(conns: Connections, params: dict[str, Any], sort: str, order: str) -> RecordPage:
    # The commit counted the store: no count of a million rows per page.
    counted = conns.rows(f"SELECT records FROM stores s WHERE {_IN_STORE}", params)
    total = int(counted[0][0]) if counted else 0
    # A big store in first-seen order: walking the table by id meets its rows at once, where
    # the unique index would sort them all first. (A small store's rows are sorted: cheap.)
    walk = "NOT INDEXED" if order == "first_seen" and total >= COUNT_CAP else ""
    records = _page(
        conns,
        f"SELECT {_COLUMNS} FROM snapshot s {walk} WHERE {_IN_STORE} ORDER BY {sort} "
        "LIMIT :limit OFFSET :offset",
        params,
    )
    return RecordPage(records, total)


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
    # The index gives candidates in rowid order, lazily; the function checks each one. CROSS
    # JOIN keeps the index outside: inside, SQLite would run the whole match once per record.
    found = (
        "FROM snapshot_search f CROSS JOIN snapshot s ON s.id = f.rowid "
        f"WHERE f.snapshot_search MATCH :query AND {_IN_STORE} "
        "AND (search_contains(s.key, :needle) OR search_contains(s.value, :needle))"
    )
    total, capped = _counted(conns, f"SELECT 1 {found}", params)
    if order == "first_seen":
        sql = f"SELECT {_COLUMNS} {found} ORDER BY f.rowid {way} LIMIT :limit OFFSET :offset"
    elif not capped or order != "key":
        # At most COUNT_CAP matches: sorting them is cheap. (last_changed has no index to walk:
        # every match is sorted, linear in the matches; a walk would check every record.)
        sql = f"SELECT {_COLUMNS} {found} ORDER BY {sort} LIMIT :limit OFFSET :offset"
    else:
        # A common text in key order: walking the unique index meets a match soon; each record is
        # checked against the index by rowid (no list of every match is built).
        sql = (
            f"SELECT {_COLUMNS} FROM snapshot s WHERE {_IN_STORE} "
            "AND (search_contains(s.key, :needle) OR search_contains(s.value, :needle)) "
            "AND EXISTS (SELECT 1 FROM snapshot_search f WHERE f.snapshot_search MATCH :query "
            "AND f.rowid = s.id) "
            f"ORDER BY {sort} LIMIT :limit OFFSET :offset"
        )
    return RecordPage(_page(conns, sql, params), total, capped)
