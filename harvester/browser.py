"""Finding and launching Chromium, and opening a target page until it is ready to be read."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from playwright.async_api import (
    Browser,
    BrowserContext,
    Dialog,
    Page,
    Playwright,
    Response,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import sync_playwright
from pydantic import SecretStr

from harvester.config import BrowserSettings, TargetSettings
from harvester.config.models.target import AuthStep
from harvester.errors import BrowserError, BrowserNotFoundError, PageError

log = logging.getLogger(__name__)

PATH_NAMES: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome")
BASE_ARGS: tuple[str, ...] = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
INSTALL_HINT = (
    "install one with `python -m playwright install chromium` (or `apt-get install chromium`), "
    "or set browser.executable_path"
)
# A browser that has not closed in this long is hung; stopping Playwright's driver kills it.
CLOSE_TIMEOUT = timedelta(seconds=10)

# Starting (or reaching) a browser is not a page action: a short page_timeout must not fail it.
LAUNCH_TIMEOUT = timedelta(seconds=60)

WaitUntil = Literal["commit", "domcontentloaded", "load", "networkidle"]


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@functools.lru_cache(maxsize=4)
def _managed_chromium(browsers_path: str | None) -> Path:
    """Where Playwright keeps (or would install) its own Chromium.

    Cached per `$PLAYWRIGHT_BROWSERS_PATH` (passed in only as the cache key), as asking costs a
    driver start; failures raise and so are asked again next time. The sync API runs in its own
    thread because the caller may be inside an event loop, where the sync API refuses to start.
    """

    def ask() -> str:
        with sync_playwright() as playwright:
            return playwright.chromium.executable_path

    with ThreadPoolExecutor(max_workers=1) as pool:
        return Path(pool.submit(ask).result())


def find_chromium(configured: Path | None = None) -> Path:
    """The Chromium to launch: the configured path, Playwright's managed one, then PATH."""
    if configured is not None:
        # A configured path that is wrong must fail loudly, not quietly run another browser.
        if not configured.exists():
            raise BrowserNotFoundError(
                f"browser.executable_path {configured} does not exist; {INSTALL_HINT}"
            )
        if not _is_executable(configured):
            raise BrowserNotFoundError(
                f"browser.executable_path {configured} is not an executable file; {INSTALL_HINT}"
            )
        return configured
    tried: list[str] = []
    try:
        managed = _managed_chromium(os.environ.get("PLAYWRIGHT_BROWSERS_PATH"))
    except Exception as exc:  # a driver that cannot start just means "no managed Chromium known"
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        tried.append(f"Playwright's managed Chromium (Playwright could not say where: {problem})")
    else:
        if _is_executable(managed):
            return managed
        tried.append(f"Playwright's managed Chromium at {managed} (not installed)")
    for name in PATH_NAMES:
        found = shutil.which(name)
        if found is not None:
            return Path(found)
        tried.append(f"`{name}` on PATH")
    raise BrowserNotFoundError(f"no Chromium found; tried {', '.join(tried)}; {INSTALL_HINT}")


def launch_args(extra: Sequence[str] = ()) -> list[str]:
    """Chromium flags: ours, `--no-sandbox` only as root (the sandbox cannot start there), extra."""
    args = list(BASE_ARGS)
    # os.geteuid does not exist on Windows, where there is no root to worry about.
    if getattr(os, "geteuid", lambda: -1)() == 0:
        args.append("--no-sandbox")
    args.extend(extra)
    return args


@dataclass(frozen=True)
class TargetSession:
    """An open target: its main page, the context holding it, and the page's origin.

    `remote`: the browser is reached at `browser.connect_url`, so what is read crosses a network.
    """

    page: Page
    context: BrowserContext
    origin: str
    remote: bool = False


def _ms(duration: timedelta) -> float:
    return duration.total_seconds() * 1000


# Playwright prefixes its errors with the API call ("Page.goto: net::ERR_… at http://…").
_API_PREFIX = re.compile(r"^\w+\.\w+: ")


def _first_line(exc: PlaywrightError) -> str:
    """Playwright's error line without the API name or its call log."""
    lines = (exc.message or str(exc)).splitlines()
    return _API_PREFIX.sub("", lines[0]) if lines else type(exc).__name__


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def origin_of(url: str) -> str:
    """The origin (`scheme://host:port`) of `url`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _goto(
    page: Page, url: str, *, wait_until: WaitUntil, timeout_ms: float, what: str
) -> None:
    try:
        response: Response | None = await page.goto(url, wait_until=wait_until, timeout=timeout_ms)
    except PlaywrightTimeoutError as exc:
        raise PageError(
            f"{what}: {url} did not reach '{wait_until}' within {timeout_ms / 1000:g}s"
        ) from exc
    except PlaywrightError as exc:
        message = f"{what}: {_first_line(exc)}"
        if "ERR_INVALID_AUTH_CREDENTIALS" in message:
            message += " (the site asks for HTTP authentication: see auth.http_credentials)"
        raise PageError(message) from exc
    if response is not None and response.status >= 400:
        raise PageError(f"{what}: {url} answered HTTP {response.status} {response.status_text}")


def _given(value: str | None, where: str, name: str) -> str:
    # The config's validators require it for this action: a None is a bug, said plainly.
    if value is None:
        raise PageError(f"{where}: no {name} given")
    return value


async def run_steps(page: Page, steps: Sequence[tuple[str, AuthStep]], timeout_ms: float) -> None:
    """Run each `(where, step)` on `page` in order, each within `timeout_ms`; a step that fails
    is a PageError whose message starts with its `where` (auth.steps, `watch --click`)."""
    # A message names the step by `where` only, never by its value: that is usually a password.
    for where, step in steps:
        try:
            match step.action:
                case "goto":
                    url = _given(step.url, where, "url")
                    await _goto(page, url, wait_until="load", timeout_ms=timeout_ms, what=where)
                case "click":
                    await page.click(_given(step.selector, where, "selector"), timeout=timeout_ms)
                case "fill":
                    selector = _given(step.selector, where, "selector")
                    await page.fill(selector, _secret(step.value), timeout=timeout_ms)
                case "press":
                    if step.selector:
                        await page.press(step.selector, _secret(step.value), timeout=timeout_ms)
                    else:
                        await page.keyboard.press(_secret(step.value))
                case "wait_for":
                    if step.selector:
                        await page.wait_for_selector(step.selector, timeout=timeout_ms)
                    else:
                        await page.wait_for_url(_given(step.url, where, "url"), timeout=timeout_ms)
        except PlaywrightTimeoutError as exc:
            within = f"{where} did not finish within {timeout_ms / 1000:g}s"
            raise PageError(within + await _unmatched(page, step.selector)) from exc
        except PlaywrightError as exc:
            raise PageError(f"{where}: {_first_line(exc)}") from exc


async def _unmatched(page: Page, selector: str | None) -> str:
    """Why a step on `selector` timed out, when the cause is that nothing matches it."""
    # A selector that matches nothing is the usual mistake; one that matches a hidden or
    # disabled element is another, and Playwright's timeout alone does not tell them apart.
    if selector:
        with suppress(PlaywrightError):
            if await page.locator(selector).count() == 0:
                return ": no element matches its selector"
    return ""


async def _run_auth_steps(page: Page, target: TargetSettings, timeout_ms: float) -> None:
    steps = [
        (f"target {target.name}: auth.steps[{index}] ({step.action})", step)
        for index, step in enumerate(target.auth.steps)
    ]
    await run_steps(page, steps, timeout_ms)


# How often ready.function is asked while it does not hold.
READY_POLL = timedelta(milliseconds=100)


def ready_expression(function: str) -> str:
    """The script evaluated for `ready.function`: an expression, or a function to call, awaited
    inside an async arrow function (check-config compiles the same text)."""
    # The newline ends a `//` comment that `function` may close with.
    return (
        "(async () => { const v = (" + function + "\n);"
        " return !!(await (typeof v === 'function' ? v() : v)); })()"
    )


async def _poll_function(page: Page, function: str) -> None:
    """Wait until `function` (an expression, or a function to call) is truthy in the page.

    Asked over CDP rather than with `page.wait_for_function`: Playwright's helper runs in the
    page's world on the page's `Promise`, `JSON` and `Array.prototype`, which a page may have
    replaced; a bare `Runtime.evaluate` needs nothing of the page but `function` itself.
    """
    params = {"expression": ready_expression(function), "awaitPromise": True, "returnByValue": True}
    session = await page.context.new_cdp_session(page)
    try:
        while True:
            try:
                reply = await session.send("Runtime.evaluate", params)
            except PlaywrightError:
                if page.is_closed():
                    # The page, its context or the whole browser is gone: asking again
                    # would only wait out page_timeout.
                    raise
                # No page context for a moment (the app navigated on its own): ask again.
                await asyncio.sleep(READY_POLL.total_seconds())
                continue
            if "exceptionDetails" in reply:
                details = reply["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                raise PlaywrightError(str(text).splitlines()[0])
            if reply["result"].get("value") is True:
                return
            await asyncio.sleep(READY_POLL.total_seconds())
    finally:
        with suppress(PlaywrightError):
            await session.detach()


async def _wait_ready(page: Page, target: TargetSettings, timeout_ms: float) -> None:
    ready = target.ready
    who = f"target {target.name}"
    within = f"within {timeout_ms / 1000:g}s"
    await _goto(page, str(target.url), wait_until=ready.wait_until, timeout_ms=timeout_ms, what=who)
    if ready.selector:
        try:
            await page.wait_for_selector(ready.selector, timeout=timeout_ms)
        except PlaywrightTimeoutError as exc:
            raise PageError(
                f"{who}: ready.selector {ready.selector!r} did not appear {within}"
            ) from exc
        except PlaywrightError as exc:
            raise PageError(
                f"{who}: ready.selector {ready.selector!r}: {_first_line(exc)}"
            ) from exc
    if ready.function:
        try:
            await asyncio.wait_for(_poll_function(page, ready.function), timeout_ms / 1000)
        except TimeoutError as exc:
            raise PageError(
                f"{who}: ready.function {ready.function!r} did not hold {within}"
            ) from exc
        except PlaywrightError as exc:
            raise PageError(
                f"{who}: ready.function {ready.function!r} failed: {_first_line(exc)}"
            ) from exc
    if ready.settle > timedelta(0):
        await asyncio.sleep(ready.settle.total_seconds())


async def _dismiss(dialog: Dialog) -> None:
    # A dialog left open blocks the page's script, and with it every read.
    with suppress(PlaywrightError):
        await dialog.dismiss()


async def _close_popup(page: Page) -> None:
    with suppress(PlaywrightError):
        await page.close()


def _context_options(target: TargetSettings) -> dict[str, Any]:
    """Playwright's context options for the target's TLS, HTTP authentication and headers."""
    auth = target.auth
    options: dict[str, Any] = {"ignore_https_errors": target.ignore_https_errors}
    if auth.http_credentials is not None:
        options["http_credentials"] = {
            "username": auth.http_credentials.username,
            "password": auth.http_credentials.password.get_secret_value(),
        }
    if auth.extra_http_headers:
        options["extra_http_headers"] = {
            name: value.get_secret_value() for name, value in auth.extra_http_headers.items()
        }
    return options


_PROTOCOLS = {"cdp": "CDP", "playwright": "a Playwright server"}


async def _disconnected(browser: Browser, within: float = 1.0) -> bool:
    """Whether the connection to a remote `browser` is lost (or is lost `within` seconds: a
    page's error can come before the connection's)."""
    deadline = asyncio.get_running_loop().time() + within
    while browser.is_connected():
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def connect_protocol(settings: BrowserSettings) -> Literal["cdp", "playwright"]:
    """How `browser.connect_url` is spoken to (see `browser.connect_protocol`)."""
    if settings.connect_protocol != "auto":
        return settings.connect_protocol
    parts = urlsplit(settings.connect_url or "")
    if parts.scheme in ("http", "https") or parts.path.startswith("/devtools/"):
        return "cdp"
    return "playwright"


async def _open_context(
    playwright: Playwright, target: TargetSettings, settings: BrowserSettings
) -> tuple[BrowserContext, Browser | None]:
    """The context the target runs in, and the browser to close after it (None: the context's)."""
    auth = target.auth
    context_options = _context_options(target)
    # Settings reject profile_dir together with connect_url or storage_state.
    if settings.connect_url:
        url, protocol = settings.connect_url, connect_protocol(settings)
        try:
            if protocol == "cdp":
                browser = await playwright.chromium.connect_over_cdp(
                    url, timeout=_ms(LAUNCH_TIMEOUT)
                )
            else:
                browser = await playwright.chromium.connect(url, timeout=_ms(LAUNCH_TIMEOUT))
        except PlaywrightError as exc:
            raise BrowserError(
                f"cannot connect to browser.connect_url {url} ({_PROTOCOLS[protocol]}): "
                f"{_first_line(exc)}"
            ) from exc
    else:
        executable = await asyncio.to_thread(find_chromium, settings.executable_path)
        options: dict[str, Any] = {
            "executable_path": executable,
            "headless": settings.headless,
            "args": launch_args(settings.args),
            "timeout": _ms(LAUNCH_TIMEOUT),
        }
        try:
            if auth.profile_dir:
                # The profile holds the user's session: keep it private.
                auth.profile_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                context = await playwright.chromium.launch_persistent_context(
                    auth.profile_dir, **options, **context_options
                )
                return context, None
            browser = await playwright.chromium.launch(**options)
        except PlaywrightError as exc:
            raise BrowserError(f"cannot launch Chromium {executable}: {_first_line(exc)}") from exc
    try:
        context = await browser.new_context(storage_state=auth.storage_state, **context_options)
    except BaseException as exc:
        await _bounded(browser.close(), "browser")
        if isinstance(exc, PlaywrightError):
            raise BrowserError(
                f"target {target.name}: cannot open a browser context with auth.storage_state "
                f"{auth.storage_state}: {_first_line(exc)}"
            ) from exc
        raise
    return context, browser


async def _bounded(closing: Awaitable[object], what: str) -> bool:
    """Await a close for at most CLOSE_TIMEOUT; False when it hung or failed."""
    try:
        await asyncio.wait_for(closing, CLOSE_TIMEOUT.total_seconds())
    except TimeoutError:
        log.warning("closing the %s took over %s; killing it", what, CLOSE_TIMEOUT)
        return False
    except PlaywrightError as exc:
        log.warning("closing the %s failed: %s", what, _first_line(exc))
        return False
    return True


@asynccontextmanager
async def open_target(
    target: TargetSettings, browser: BrowserSettings
) -> AsyncIterator[TargetSession]:
    """Open `target` in Chromium, logged in and ready; close everything on exit."""
    timeout_ms = _ms(target.limits.page_timeout)
    playwright = await async_playwright().start()
    try:
        context, owned_browser = await _open_context(playwright, target, browser)
        remote = owned_browser if browser.connect_url else None
        try:
            context.set_default_timeout(timeout_ms)
            context.on("dialog", _dismiss)
            page = context.pages[0] if context.pages else await context.new_page()
            # Registered after the main page exists, so that only popups are closed.
            context.on("page", _close_popup)
            await _run_auth_steps(page, target, timeout_ms)
            await _wait_ready(page, target, timeout_ms)
            yield TargetSession(
                page=page, context=context, origin=origin_of(page.url), remote=remote is not None
            )
        except Exception as exc:
            if remote is not None and await _disconnected(remote):
                # What failed is the page's symptom of it: name the cause.
                raise BrowserError(
                    f"target {target.name}: the browser at browser.connect_url "
                    f"{browser.connect_url} went away during the run; the next run connects "
                    "again"
                ) from exc
            raise
        finally:
            closed = await _bounded(context.close(), "browser context")
            if closed and owned_browser is not None:
                await _bounded(owned_browser.close(), "browser")
    finally:
        # Stopping the driver kills whatever browser it launched that is still alive.
        await _bounded(playwright.stop(), "Playwright driver")
