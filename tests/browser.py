"""The system Chromium, driven by Playwright, for the report's layout test and the docs'
screenshots (`make screenshots`).

Playwright's own browser download is never used (`playwright install` fetches from outside the
package registry): `make browser` installs Debian's chromium, and a missing one fails the test
naming it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "chromium"
ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class Viewport:
    name: str
    width: int
    height: int


DESKTOP = Viewport("desktop", 1280, 800)
PHONE = Viewport("phone", 390, 844)
VIEWPORTS = (DESKTOP, PHONE)


class ChromiumMissingError(AssertionError):
    """No chromium on PATH: the layout cannot be checked (an assertion error, so the test fails)."""


def chromium_path() -> str:
    found = shutil.which(CHROMIUM)
    if found is None:
        raise ChromiumMissingError(
            "chromium is not installed (no `chromium` on PATH): run `make browser` "
            "(apt-get install chromium) to check the HTML report's layout"
        )
    return found


@contextmanager
def chromium() -> Iterator[Browser]:
    """The system Chromium, headless, for the duration of the block."""
    path = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def opened(browser: Browser, page_file: Path, viewport: Viewport) -> Iterator[Page]:
    """`page_file` laid out at `viewport`'s size. `window.alert` only sets `window.__pwned`, so
    a script smuggled in through certificate text would leave a mark instead of a dialog."""
    context = browser.new_context(viewport={"width": viewport.width, "height": viewport.height})
    try:
        page = context.new_page()
        page.add_init_script("window.alert = () => { window.__pwned = true; };")
        page.goto(page_file.as_uri())
        yield page
    finally:
        context.close()


def screenshot(page: Page, out: Path, start: str = "", height: int = 0) -> Path:
    """The page as a PNG: whole, or `height` pixels from the top of the element `start`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    box = page.locator(start).bounding_box() if start else None
    if box is None:
        page.screenshot(path=str(out), full_page=True)
        return out
    width = page.viewport_size["width"] if page.viewport_size else int(box["width"])
    clip = {"x": 0.0, "y": box["y"], "width": float(width), "height": float(height)}
    page.screenshot(path=str(out), full_page=True, clip=clip)  # type: ignore[arg-type]
    return out
