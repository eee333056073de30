"""Browser fixtures: the real server as a subprocess, and headless Debian chromium
driven by Playwright (its own browser download does not work here).

Without chromium or Playwright the browser tests are skipped, unless
DESK_TEST_REQUIRE_BROWSER=1 (as in CI), where they fail with the reason."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serverproc import ROOT
from tests.serverproc import mailed_link
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


@pytest.fixture
def new_page(browser):
    """A factory of fresh browser tabs, each in its own context (own cookies): one
    per person in a journey with several people. All are closed after the test."""
    contexts = []

    def make():
        if isinstance(browser, str):
            if REQUIRE_BROWSER:
                return BrowserUnavailable(browser)
            pytest.skip(browser)
        context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800},
                                      accept_downloads=True)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


class DeskCommand:
    """``python app.py COMMAND ...`` running in the background against a running
    server's data, with the same environment (DESK_DATA_DIR and all) the server
    subprocess was started with."""

    def __init__(self, server, args):
        self.args = list(args)
        self.proc = subprocess.Popen([sys.executable, "app.py", *self.args], cwd=ROOT,
                                     env=server._environment(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float = 60.0) -> str:
        """Its stdout, once it has ended well (the test fails otherwise)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"app.py {self.args[0]} still running after {timeout}s\n{out}\n{err}")
        assert self.proc.returncode == 0, \
            f"app.py {self.args[0]} exited with {self.proc.returncode}\n{out}\n{err}"
        return out


@pytest.fixture
def desk_cli():
    """``desk_cli(server, "send-mail")`` runs a command and returns its stdout;
    ``desk_cli.start(server, ...)`` starts it in the background (``.wait()`` for it).
    Commands still running at the end of the test are ended."""
    started: list[DeskCommand] = []

    def start(server, *args: str) -> DeskCommand:
        command = DeskCommand(server, args)
        started.append(command)
        return command

    def run(server, *args: str, timeout: float = 60.0) -> str:
        return start(server, *args).wait(timeout)

    run.start = start
    yield run
    for command in started:
        if command.proc.poll() is None:
            command.proc.kill()
            command.proc.communicate()


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


def sign_up_in_browser(page, server, name: str, email: str, password: str) -> None:
    """Sign up as a person does: the form, the link from the mail, the password
    again; ends signed in on My Tickets."""
    from playwright.sync_api import expect
    base = server.base_url
    page.goto(base + "/signup")
    page.fill("input[name=name]", name)
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.locator("main form").get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    page.goto(base + mailed_link(server.data_dir / "desk.db", email))
    expect(page.get_by_role("heading", name="Finish creating your account")).to_be_visible()
    page.fill("input[name=password]", password)
    page.locator("main form").get_by_role("button", name="Create my account").click()
    expect(page).to_have_url(base + "/my/tickets")
    expect(page.locator("header .who")).to_have_text(name)
