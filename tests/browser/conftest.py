"""Browser fixtures: the real server as a subprocess, and headless Debian chromium
driven by Playwright (its own browser download does not work here).

Without chromium or Playwright the browser tests are skipped, unless
DESK_TEST_REQUIRE_BROWSER=1 (as in CI), where they fail with the reason."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.serverproc import ROOT
from tests.serverproc import running_server

CHROMIUM = os.environ.get("DESK_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REQUIRE_BROWSER = os.environ.get("DESK_TEST_REQUIRE_BROWSER") == "1"
ARTIFACTS = ROOT / "test-artifacts"


class BrowserUnavailable:
    """Stands in for the page when the browser is required but missing: the test's
    first use of it fails the test itself (FAILED, not a setup ERROR) with the reason."""

    def __init__(self, reason: str):
        self.reason = reason

    def __getattr__(self, name):
        pytest.fail(f"browser tests are required (DESK_TEST_REQUIRE_BROWSER=1) but {self.reason}",
                    pytrace=False)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium through Playwright, or the reason there is none."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        yield f"Playwright is not installed ({exc})"
        return
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        yield f"chromium not found at {CHROMIUM} (apt-get install chromium)"
        return
    manager = sync_playwright()
    try:
        pw = manager.start()
    except Exception as exc:  # noqa: BLE001 - any failure to start the driver
        yield f"Playwright could not start: {exc}"
        return
    try:
        try:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=CHROMIUM_ARGS)
        except Exception as exc:  # noqa: BLE001 - a browser that will not start
            yield f"chromium at {CHROMIUM} did not start: {exc}"
            return
        yield chromium
        chromium.close()
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture
def page(browser):
    """A fresh browser tab (own cookies); skipped without a browser unless required."""
    if isinstance(browser, str):
        if REQUIRE_BROWSER:
            yield BrowserUnavailable(browser)
            return
        pytest.skip(browser)
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, browser):
    """``python app.py run`` on a free port with a fresh SQLite data folder
    (not started at all when there is no browser to drive it and none is required)."""
    if isinstance(browser, str) and not REQUIRE_BROWSER:
        pytest.skip(browser)
    base = tmp_path_factory.mktemp("live")
    with running_server(base / "instance") as server:
        yield server


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
