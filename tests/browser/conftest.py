"""Real headless Chromium (Debian's, never a downloaded browser) driven by Playwright against the real product.

Fixtures: `browser` (one Chromium per run), `context` (a fresh, isolated browser profile per test; ask for
`new_context` to get more, e.g. a customer and an agent side by side) and `shot(page, name)`, which saves
a screenshot under var/screenshots/ for the issue's note.
"""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = os.environ.get("KEFU_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "var" / "screenshots"

try:
    from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
except ImportError:  # pragma: no cover - make test installs it
    sync_playwright = None  # type: ignore[assignment]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


# Module scope, not session: Playwright's sync API keeps an event loop running in the main thread while it
# is open, and later tests that call asyncio.run() (broker, WeChat client) must not find one.
@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    if sync_playwright is None:
        _unavailable("playwright is not installed (make test installs it)")
    if not Path(CHROMIUM).exists():
        _unavailable(f"Debian chromium not found at {CHROMIUM} (make test installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser: "Browser") -> Iterator[Callable[..., "BrowserContext"]]:
    contexts: list[BrowserContext] = []

    def make(**kwargs: object) -> "BrowserContext":
        context = browser.new_context(locale="zh-CN", **kwargs)  # type: ignore[arg-type]
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def context(new_context: Callable[..., "BrowserContext"]) -> "BrowserContext":
    return new_context()


@pytest.fixture(scope="session")
def shot() -> Callable[["Page", str], Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page: "Page", name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
