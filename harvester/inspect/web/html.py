"""HTML helpers of the live inspector: escaping, links, tables, the page frame and its policy.

Everything shown goes through `e` (HTML escaping, with control and bidirectional-override
characters made visible escapes, so a harvested string can neither make markup nor reorder the
text around it). Links are built from our own path segments, each percent-encoded, so a
harvested `javascript:` URL is only ever text. The page has no script at all, and its
Content-Security-Policy allows only its own style (by hash), forms to this server and nothing
fetched.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote, urlencode

from harvester.surrogates import escape_surrogates

MAX_CELL = 200  # characters of a table cell before it is cut
MAX_VALUE = 20_000  # characters of a whole value on the record page

# C0/C1 controls (tab and newline kept) and the Unicode bidi controls, shown as escapes.
_VISIBLE = {
    c: f"\\u{c:04x}"
    for c in [
        *range(0x00, 0x09),
        *range(0x0B, 0x20),
        *range(0x7F, 0xA0),
        0x061C,
        0x200E,
        0x200F,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ]
}

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1d2330; background: #fbfbfd; }
header, main, footer { padding: 0 2rem; }
header { background: #eef2f8; border-bottom: 1px solid #c9d2e3; padding-top: .4rem; }
h1 { margin: .3rem 0 .6rem; font-size: 1.5rem; overflow-wrap: anywhere; }
h2 { margin-top: 2rem; border-bottom: 2px solid #c9d2e3; }
h3 { margin: 1.4rem 0 .3rem; font-size: 1.1rem; }
a { color: #1f56b3; }
a:focus-visible, input:focus-visible, select:focus-visible, button:focus-visible {
  outline: 3px solid #e0822c; outline-offset: 2px; }
.skip { position: absolute; left: -999px; top: 0; background: #fff; padding: .4rem; }
.skip:focus { left: .5rem; }
nav.crumbs a { margin-right: .4rem; }
.meta, .note { color: #4f5a6c; }
.note { font-style: italic; }
table { border-collapse: collapse; margin: .3rem 0 .8rem; background: #fff; }
th, td { border: 1px solid #dde3ee; padding: .2rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef2f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.code, td.value, pre { font-family: ui-monospace, monospace; font-size: 13px; }
td.value { white-space: pre-wrap; overflow-wrap: break-word; max-width: 40rem; }
.table-scroll { overflow-x: auto; max-width: 100%; }
pre { background: #fff; border: 1px solid #dde3ee; padding: .6rem; white-space: pre-wrap;
  overflow-wrap: anywhere; }
.status-failed, .op-removed, .op--D { color: #b3261e; font-weight: 600; }
.op-added, .op-\\+I, .status-committed { color: #1d7a38; }
.op-changed, .op-\\+U { color: #8a5a00; }
form.inline { display: flex; flex-wrap: wrap; gap: .6rem; align-items: end; margin: .4rem 0; }
form.inline .field { display: flex; flex-direction: column; font-size: .9rem; }
input, select, button { font: inherit; padding: .2rem .4rem; }
input[type=search] { width: 24rem; max-width: 100%; }
.pager a, .pager span { margin-right: .8rem; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: .3rem 0; }
figcaption { font-size: .9rem; color: #4f5a6c; }
svg { background: #fff; border: 1px solid #dde3ee; }
svg text { font-size: 11px; fill: #4f5a6c; }
svg .axis { stroke: #9aa6bb; }
svg .grid { stroke: #eef2f8; }
svg .records { fill: none; stroke: #2f6fdb; stroke-width: 2; }
svg .point { fill: #2f6fdb; }
svg .point.failed, svg .bar.failed { fill: #b3261e; }
svg .bar { fill: #e0822c; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; }
dl.facts dt { color: #4f5a6c; }
dl.facts dd { margin: 0; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = (
    f"default-src 'none'; style-src {_csp_hash(STYLE)}; img-src 'none'; script-src 'none'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Every reply: the policy above, no framing, no referrer leaving the inspector.
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def e(value: object) -> str:
    """`value` as HTML text: escaped, controls and bidi overrides shown as escapes."""
    return escape(escape_surrogates(str(value).translate(_VISIBLE)), quote=True)


def cut(text: str, limit: int = MAX_CELL) -> str:
    return text if len(text) <= limit else text[:limit] + " …(cut)"


def num(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def url(*segments: str, **query: str | int | None) -> str:
    """A path of this inspector from its segments (each percent-encoded), with a query of the
    values that are not None; escape it with `e` when it goes into an attribute."""
    path = "/" + "/".join(quote(segment, safe="") for segment in segments)
    params = {k: str(v) for k, v in query.items() if v is not None and v != ""}
    return path + ("?" + urlencode(params) if params else "")


def link(href: str, text: str, *, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f'<a href="{e(href)}"{attr}>{e(text)}</a>'


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, cls: str = "") -> str:
    """A table; header texts are escaped here, row cells are HTML made by the caller (each
    either `<td…>…</td>` or a plain string escaped into a `<td>`)."""
    head = "".join(h if h.startswith("<th") else f'<th scope="col">{e(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{e(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    attr = f' class="{cls}"' if cls else ""
    # A wide table scrolls on its own, rather than squeezing its cells to break words apart.
    return (
        f'<div class="table-scroll"><table{attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def td(html: str, cls: str = "") -> str:
    """A cell of HTML already escaped by the caller."""
    return f'<td class="{cls}">{html}</td>' if cls else f"<td>{html}</td>"


def facts(items: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in items)
    return f'<dl class="facts">{body}</dl>'


def pager(page: int, pages: int, href: Callable[[int], str]) -> str:
    """Previous / next links (`href(n)` is the URL of page n) and where we are."""
    parts: list[str] = []
    if page > 1:
        parts.append(link(href(page - 1), "← previous page"))
    parts.append(f"<span>page {page:,} of {max(pages, 1):,}</span>")
    if page < pages:
        parts.append(link(href(page + 1), "next page →"))
    return f'<nav class="pager" aria-label="pages">{"".join(parts)}</nav>'


def frame(title: str, body: str, *, crumbs: Sequence[tuple[str, str]] = ()) -> str:
    """A whole page: title, skip link, breadcrumbs (href, text), one h1 (the title), main."""
    trail = " / ".join(link(href, text) for href, text in [("/", "Inspector"), *crumbs])
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} — IndexedDB inspector</title><style>{STYLE}</style></head><body>"
        '<a class="skip" href="#main">Skip to content</a>'
        f'<header><nav class="crumbs" aria-label="breadcrumbs">{trail}</nav>'
        f"<h1>{e(title)}</h1></header>"
        f'<main id="main" tabindex="-1">{body}</main></body></html>'
    )
