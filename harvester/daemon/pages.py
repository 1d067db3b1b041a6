"""The daemon's HTML pages: the live inspector and the single-file report, secrets masked.

Run errors they show may quote a secret: it is masked raw and as HTML escapes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from harvester.daemon.http import Handler, Request, Response, html_response, mask_secrets

NOT_FOUND = Response(404, b"not found\n")


def inspector_page(inspector: Handler | None, request: Request, secrets: Iterable[str]) -> Response:
    """The inspector's reply to `request`, every text reply masked (downloads pass as they are)."""
    if inspector is None:
        return NOT_FOUND
    response = inspector(request)
    if not response.content_type.startswith("text/"):
        return response
    masked = mask_secrets(response.body.decode("utf-8"), secrets)
    return replace(response, body=masked.encode("utf-8"))


def report_page(render: Callable[[], str] | None, secrets: Iterable[str]) -> Response:
    """The HTML report of the state DB, as `harvester report` writes it."""
    if render is None:
        return NOT_FOUND
    return html_response(render(), secrets)
