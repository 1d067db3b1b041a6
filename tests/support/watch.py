"""Watch-mode test helpers: the page that writes on demand, a Chromium context to open it in,
and waiting for the batch that names a store."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import BrowserContext, Page, async_playwright

from harvester.browser import launch_args
from harvester.watch import Batch, Watcher
from tests.support.server import StaticServer

PAGES = Path(__file__).resolve().parent.parent / "pages"
WATCH_FILES = ("watch.html", "watch_worker.js")
# Generous: the machine may be loaded; a wait ends as soon as its condition holds.
WAIT = 30.0


def serve_watch_page(server: StaticServer) -> str:
    """Copy the watch page and its worker into `server`'s folder; the page's URL."""
    for name in WATCH_FILES:
        shutil.copyfile(PAGES / name, server.root / name)
    return server.url("watch.html")


@asynccontextmanager
async def chromium_context(executable: Path) -> AsyncIterator[BrowserContext]:
    """A fresh headless Chromium with one context (tabs of it share the storage key)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(executable), args=launch_args(), headless=True
        )
        try:
            yield await browser.new_context()
        finally:
            await browser.close()


async def open_ready(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function("window.ready === true", timeout=WAIT * 1000)
    return page


@asynccontextmanager
async def watched_page(
    server: StaticServer,
    executable: Path,
    *,
    seed: tuple[str, ...] = ("items",),
    debounce: float = 0.1,
    max_delay: float = 5.0,
    accept: Callable[[str, str], bool] | None = None,
) -> AsyncIterator[tuple[BrowserContext, Page, Watcher]]:
    """The watch page open and ready, the stores `seed` of database `app` made (one record
    each), and a watcher attached after that, closed on exit."""
    url = serve_watch_page(server)
    async with chromium_context(executable) as context:
        page = await open_ready(context, url)
        for store in seed:
            await page.evaluate(f"write('app', '{store}', [[0, 'seed']])")
        if accept is None:
            watcher = Watcher(debounce=debounce, max_delay=max_delay)
        else:
            watcher = Watcher(debounce=debounce, max_delay=max_delay, accept=accept)
        await watcher.attach(page)
        try:
            yield context, page, watcher
        finally:
            await watcher.close()


async def batches_until(
    watcher: Watcher, found: Callable[[Batch], bool], *, within: float = WAIT
) -> list[Batch]:
    """Batches taken until one for which `found` holds (the last of the list); TimeoutError
    after `within` seconds."""
    seen: list[Batch] = []
    async with asyncio.timeout(within):
        while True:
            seen.append(await watcher.next_batch())
            if found(seen[-1]):
                return seen


def names(store: tuple[str, str]) -> Callable[[Batch], bool]:
    """A condition for `batches_until`: the batch names `store`."""
    return lambda batch: store in batch.stores
