"""Phones and assistive technology: the main pages of a demo help center
(``app.py demo``), at 375 px wide in English and Chinese, screenshotted and
checked by axe-core (npm, pinned in package-lock.json, injected into Debian's
chromium): no violation of a WCAG 2.1 A or AA rule, and no page wider than the
screen. And nothing disappears on
a phone: every action button and checkbox is still there to use."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.browser.conftest import REQUIRE_BROWSER
from tests.serverproc import ROOT
from tests.serverproc import SERVER_ENV
from tests.serverproc import running_server

pytestmark = pytest.mark.browser

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
PHONE = {"width": 375, "height": 812}
LOCALES = {"en": "en-US", "zh": "zh-CN"}
ANONYMOUS_PAGES = ("/", "/login", "/signup", "/privacy")
CUSTOMER_PAGES = ("/my/tickets", "/my/tickets/{ticket}", "/tickets/new", "/my/info")
ADMIN_PAGES = ("/agent/tickets?view=all", "/agent/tickets/{ticket}", "/agent/contacts",
               "/agent/recycle-bin", "/agent/settings", "/agent/settings/roles",
               "/agent/settings/roles/{role}", "/agent/settings/my-info")


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory, browser):
    """The production server on a data folder filled by ``app.py demo``, and the
    accounts it printed."""
    if isinstance(browser, str) and not REQUIRE_BROWSER:
        pytest.skip(browser)
    data_dir = tmp_path_factory.mktemp("a11y") / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    env.update(SERVER_ENV, DESK_DATA_DIR=str(data_dir))
    done = subprocess.run([sys.executable, "app.py", "demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    accounts: dict[str, tuple[str, str]] = {}
    for role, email, password in re.findall(r"^  (Administrator|End user)\s+(\S+)\s+(\S+)",
                                            done.stdout, re.M):
        accounts.setdefault(role, (email, password))
    with running_server(data_dir) as server:
        server.accounts = accounts
        yield server


def axe_violations(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        WCAG21_AA)
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(" ".join(n["target"]) for n in v["nodes"][:5])
            for v in result["violations"]]


def sign_in(page, base: str, email: str, password: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/(agent|my)/tickets$"))


def first_link(page, base: str, path: str, pattern: str) -> str:
    page.goto(base + path)
    href = page.locator(f"main td a[href*='{pattern}']").first.get_attribute("href")
    return re.search(r"(\d+)$", href).group(1)


@pytest.mark.parametrize("language", list(LOCALES))
def test_main_pages_on_a_phone_pass_axe(browser, demo_server, artifacts, language):
    if not AXE.is_file():
        message = f"axe-core is not installed at {AXE} (make test-tools runs npm ci)"
        if REQUIRE_BROWSER:
            pytest.fail(message)
        pytest.skip(message)
    base = demo_server.base_url
    # The checker itself finds what it should (an image without text, no language).
    context = browser.new_context(viewport=PHONE, bypass_csp=True)
    probe = context.new_page()
    probe.set_content("<html><body><main><img src='data:,'></main></body></html>")
    assert {v.split(" ")[0] for v in axe_violations(probe)} >= {"image-alt", "html-has-lang"}
    context.close()
    problems: dict[str, list[str]] = {}
    visited = 0

    def check(page, who: str, paths, **ids) -> None:
        nonlocal visited
        for path in paths:
            url = path.format(**ids)
            response = page.goto(base + url)
            assert response.status == 200, f"{url} answered {response.status}"
            name = re.sub(r"[^a-z0-9]+", "-", f"{who}{url}".lower()).strip("-")
            page.screenshot(path=str(artifacts / f"phone-{language}-{name}.png"), full_page=True)
            found = axe_violations(page)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > PHONE["width"]:  # wide tables scroll in their own box, not the page
                found.append(f"the page is {width} px wide on a {PHONE['width']} px screen")
            visited += 1
            if found:
                problems[url] = found

    def new_tab():
        context = browser.new_context(locale=LOCALES[language], viewport=PHONE, bypass_csp=True)
        context.set_default_timeout(20_000)
        return context, context.new_page()

    context, anonymous = new_tab()
    check(anonymous, "anonymous", ANONYMOUS_PAGES)
    html_lang = anonymous.locator("html").get_attribute("lang")
    assert html_lang == ("zh-Hans" if language == "zh" else "en")
    context.close()

    context, customer = new_tab()
    sign_in(customer, base, *demo_server.accounts["End user"])
    ticket = first_link(customer, base, "/my/tickets", "/my/tickets/")
    check(customer, "customer", CUSTOMER_PAGES, ticket=ticket)
    context.close()

    context, admin = new_tab()
    sign_in(admin, base, *demo_server.accounts["Administrator"])
    ticket = first_link(admin, base, "/agent/tickets?view=all", "/agent/tickets/")
    role = first_link(admin, base, "/agent/settings/roles", "/agent/settings/roles/")
    check(admin, "admin", ADMIN_PAGES, ticket=ticket, role=role)

    # Nothing disappears on a phone: every action and every checkbox is there.
    admin.goto(base + "/agent/recycle-bin?module=tickets")
    for button in admin.locator("main table button").all():
        assert button.is_visible(), button.inner_text()
    assert admin.locator("main table button").count() >= 2
    admin.goto(base + f"/agent/settings/roles/{role}")
    boxes = admin.locator("main input[type=checkbox]")
    assert boxes.count() > 50
    assert all(box.is_visible() for box in boxes.all())
    context.close()

    assert visited == len(ANONYMOUS_PAGES) + len(CUSTOMER_PAGES) + len(ADMIN_PAGES)
    assert not problems, "axe-core found WCAG 2.1 AA violations:\n" + "\n".join(
        f"{url}:\n  " + "\n  ".join(found) for url, found in problems.items())
