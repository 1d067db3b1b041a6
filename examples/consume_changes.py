"""Follow idb-harvester's changes feed and print each row as a JSON line (stdlib only).

    python examples/consume_changes.py --url http://127.0.0.1:8787 --cursor-file feed.cursor

Long-polls `GET /api/v1/changes` (docs/api.md): a request at the feed's end is held until a
commit brings rows, so a row is printed about as soon as it is committed. The cursor after the
last printed row is saved to --cursor-file (written whole, then renamed), so a restart of this
consumer or of the daemon goes on where it left off: no row is skipped, and none is printed
twice unless this process dies between printing a page and saving its cursor. While the daemon
is down it retries every few seconds. A cursor the daemon no longer holds (410: retention
removed the rows after it) stops it with exit code 3, rather than going on with a hole.
Set $HARVESTER_API_TOKEN when the daemon has `http.token`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

RETRY_SECONDS = 2.0


def fetch(url: str, token: str | None, timeout: float) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
        return dict(json.load(r))


def save(path: Path, cursor: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(cursor)
    part.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8787", help="the daemon's address")
    parser.add_argument("--cursor-file", type=Path, help="where the position is kept")
    parser.add_argument("--target", help="only this target's rows")
    parser.add_argument("--store", help="only this store's rows (DB/STORE)")
    parser.add_argument("--limit", type=int, default=1000, help="rows per request")
    parser.add_argument("--wait", type=float, default=30, help="long-poll seconds (at most 60)")
    parser.add_argument("--until-idle", action="store_true", help="stop at the first empty page")
    args = parser.parse_args(argv)
    token = os.environ.get("HARVESTER_API_TOKEN")
    cursor = None
    if args.cursor_file is not None and args.cursor_file.exists():
        cursor = args.cursor_file.read_text().strip() or None
    while True:
        query = {"limit": str(args.limit), "wait": f"{args.wait:g}s"}
        query |= {k: v for k, v in (("target", args.target), ("store", args.store)) if v}
        if cursor:
            query["after"] = cursor
        url = f"{args.url.rstrip('/')}/api/v1/changes?{urllib.parse.urlencode(query)}"
        try:
            page = fetch(url, token, timeout=args.wait + 30)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", "replace")
            if exc.code == 410:
                print(f"the feed no longer holds our position: {body}", file=sys.stderr)
                return 3
            if exc.code in (401, 403, 400, 404):
                print(f"the feed refused the request ({exc.code}): {body}", file=sys.stderr)
                return 2
            print(f"the feed answered {exc.code}; retrying", file=sys.stderr)
            time.sleep(RETRY_SECONDS)
            continue
        except (OSError, ValueError) as exc:
            print(f"cannot reach {args.url} ({exc}); retrying", file=sys.stderr)
            time.sleep(RETRY_SECONDS)
            continue
        for row in page["rows"]:
            sys.stdout.write(json.dumps(row) + "\n")
        sys.stdout.flush()
        cursor = page["next"]
        if args.cursor_file is not None:
            save(args.cursor_file, cursor)
        if args.until_idle and not page["rows"]:
            return 0


if __name__ == "__main__":
    sys.exit(main())
