"""Browser tests of the pricing page: the real app under granian, Debian's Chromium driven
by Playwright through `executable_path` (nothing downloaded at test time), screenshots in
`.data/artifacts/admin_page/`."""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.core.settings import ROOT
from tests.servers import granian_app

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / ".data" / "artifacts" / "admin_page"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

LAPTOP: ViewportSize = {"width": 1366, "height": 900}
TABLET: ViewportSize = {"width": 820, "height": 1180}


def _missing() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (make test installs it)"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (make test runs `apt-get install -y chromium`)"
    return None


@pytest.fixture(scope="session")
def chromium(pytestconfig: pytest.Config) -> str:
    reason = _missing()
    if reason:
        message = f"BROWSER TESTS SKIPPED: {reason}"
        # past output capture, on the terminal itself: this must not go unnoticed
        terminal = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
        if terminal is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                terminal.write_line(f"\n{'!' * 78}\n{message}\n{'!' * 78}", red=True, bold=True)
        pytest.skip(message)
    return CHROMIUM


@dataclass
class Console:
    """What the page said. Console errors and uncaught exceptions fail a test; answers of
    400 and more are kept apart (`http`), because Chromium also logs every 4xx the page
    expects and handles (a 422 with validation errors) as a console error."""

    errors: list[str] = field(default_factory=list)
    http: list[tuple[int, str]] = field(default_factory=list)

    def _console(self, m: Any) -> None:
        if m.type != "error":
            return
        if m.text.startswith("Failed to load resource: the server responded with a status of 4"):
            return  # counted in `http`, with its URL
        self.errors.append(f"console.{m.type}: {m.text}")

    def _response(self, r: Any) -> None:
        if r.status >= 400:
            self.http.append((r.status, r.url.split("?")[0]))

    def watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("response", self._response)


@pytest.fixture
async def live(db_url: str, redis_url: str) -> AsyncIterator[str]:
    """The app in granian (one worker) on the test's database."""
    # its own Redis namespace: login throttling must not see other tests' attempts
    env = {"REDIS_NAMESPACE": f"pg{uuid.uuid4().hex[:10]}"}
    async with granian_app(db_url, redis_url, workers=1, env=env) as base:
        yield base


@pytest.fixture
async def browser(chromium: str, tmp_path: Path) -> AsyncIterator[Any]:
    """A Chromium context with a new, empty profile directory."""
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        async with async_playwright() as p:
            context = await p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=chromium,
                headless=True,
                args=FLAGS,
                viewport=LAPTOP,
                locale="en-GB",
                timezone_id="Europe/Berlin",
            )
            try:
                yield context
            finally:
                await context.close()


async def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path
