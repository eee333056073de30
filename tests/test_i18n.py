"""Languages: the Simplified Chinese catalogue is complete, compiled and used.

The catalogue test extracts the messages from the source as ``make
extract-messages`` does (same babel.cfg, same keywords), so a string marked
for translation but missing from translations/zh_Hans fails here by name.
"""
from __future__ import annotations

import ast
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from desk import audit
from desk.models import MailMessage
from desk.models import User
from tests import factories
from tests.conftest import csrf_token
from tests.conftest import login
from tests.conftest import post_form
from tests.conftest import sign_up

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "translations" / "zh_Hans" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")
# The keywords `pybabel extract -k _l` uses: Babel's defaults plus lazy_gettext as _l.
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None}

ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}
EN = {"Accept-Language": "en-US,en;q=0.9"}


@pytest.fixture(scope="session", autouse=True)
def compiled_catalogue():
    """The .mo is a build product (not in git): compile it from the .po when it
    is missing or older, as `make translations` would, so `pytest` alone works."""
    if not MO.exists() or MO.stat().st_mtime < PO.stat().st_mtime:
        with PO.open("rb") as fh:
            catalog = read_po(fh, locale="zh_Hans")
        # Written beside the target and renamed: parallel workers never see half a file.
        fd, tmp = tempfile.mkstemp(dir=MO.parent, prefix=".messages-", suffix=".mo")
        try:
            with os.fdopen(fd, "wb") as out:
                write_mo(out, catalog, use_fuzzy=True)
            os.replace(tmp, MO)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return MO


def _read_catalogue():
    with PO.open("rb") as fh:
        return read_po(fh, locale="zh_Hans")


def _extract() -> dict[tuple[str | tuple[str, ...], str | None], list[str]]:
    """Every marked string in the source now: {(msgid, context): ["file:line", ...]}."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)

    def directory_filter(dirpath: str) -> bool:
        # Babel's default also skips "_"-prefixed folders, which would hide
        # templates/_macros; skip only hidden folders and byte-code caches.
        name = os.path.basename(dirpath)
        return not name.startswith(".") and name != "__pycache__"

    found: dict = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=KEYWORDS,
            directory_filter=directory_filter):
        found.setdefault((message, context), []).append(f"{filename}:{lineno}")
    return found


PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?[#0 +\-]*\d*(?:\.\d+)?([diouxXeEfFgGcrsa%])")


def _placeholders(text: str) -> Counter:
    return Counter(f"%({name}){kind}" if name else f"%{kind}"
                   for name, kind in PLACEHOLDER.findall(text) if kind != "%")


def test_source_marks_strings_with_names_the_extractor_knows():
    """`from desk.i18n import lazy_gettext` (not `as _l`) would hide its strings
    from `make extract-messages`: every translating import must bind a keyword."""
    translating = {"gettext", "ngettext", "pgettext", "npgettext", "lazy_gettext",
                   "lazy_ngettext", "lazy_pgettext", "lazy_npgettext"}
    unknown = []
    for path in sorted((ROOT / "desk").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in ("flask_babel", "desk.i18n"):
                for alias in node.names:
                    bound = alias.asname or alias.name
                    if alias.name in translating and bound not in KEYWORDS:
                        unknown.append(f"{path.relative_to(ROOT)}:{node.lineno} imports "
                                       f"{alias.name} as {bound}")
    if unknown:
        pytest.fail("not extracted by `make extract-messages` (import it as _l, or use a "
                    "default keyword):\n  " + "\n  ".join(unknown), pytrace=False)


def test_every_marked_string_has_a_chinese_translation():
    catalog = _read_catalogue()
    extracted = _extract()
    assert len(extracted) > 50, "extraction found almost nothing: is babel.cfg right?"
    missing, fuzzy, mismatched = [], [], []
    for (message, context), where in sorted(extracted.items(), key=lambda kv: kv[1][0]):
        msgid = message[0] if isinstance(message, tuple) else message
        entry = catalog.get(msgid, context=context)
        label = f"{msgid!r}  ({', '.join(where)})"
        strings = entry.string if entry is not None else ""
        strings = list(strings) if isinstance(strings, (tuple, list)) else [strings]
        if entry is None or not all(s.strip() for s in strings):
            missing.append(label)
            continue
        if entry.fuzzy:
            fuzzy.append(label)
        originals = list(message) if isinstance(message, tuple) else [message]
        expected = _placeholders(originals[-1])
        for translated in strings:
            if _placeholders(translated) != expected:
                mismatched.append(f"{label}: {translated!r}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} msgid(s) without a zh_Hans msgstr in "
                        f"{PO.relative_to(ROOT)} (run `make extract-messages`, then "
                        "translate):\n  " + "\n  ".join(missing))
    if fuzzy:
        problems.append("fuzzy (needs review, then remove the flag):\n  " + "\n  ".join(fuzzy))
    if mismatched:
        problems.append("placeholders differ from the msgid:\n  " + "\n  ".join(mismatched))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def test_catalogue_passes_babels_format_checks():
    errors = [f"{message.id!r}: {'; '.join(map(str, errs))}"
              for message, errs in _read_catalogue().check()]
    if errors:
        pytest.fail("babel's checks on the zh_Hans catalogue:\n  " + "\n  ".join(errors),
                    pytrace=False)


def test_compiled_catalogue_exists_and_is_current(compiled_catalogue):
    assert compiled_catalogue.is_file()
    assert compiled_catalogue.stat().st_mtime >= PO.stat().st_mtime


def test_browser_language_chooses_the_interface_language(client):
    zh = client.get("/login", headers=ZH).get_data(as_text=True)
    assert '<html lang="zh-Hans">' in zh
    assert "<h1>登录</h1>" in zh and "Sign in" not in zh
    assert "记住我" in zh and "Remember me" not in zh

    en = client.get("/login", headers=EN).get_data(as_text=True)
    assert '<html lang="en">' in en
    assert "<h1>Sign in</h1>" in en and "登录" not in en


def test_a_forced_language_holds_inside_its_block_and_no_further(app):
    """desk.i18n looks the translations up once per request and language: a
    mail written in its recipient's language (force_locale) inside a request
    in another language gets its own strings, and the page after it gets the
    request's again, from Python, lazy labels and templates alike."""
    from flask import render_template_string
    from flask_babel import force_locale

    from desk.i18n import gettext
    from desk.web.labels import STATUS_LABELS

    def strings() -> tuple[str, str, str]:
        return (gettext("Sign in"), str(STATUS_LABELS["closed"]),
                render_template_string("{{ _('Sign in') }}"))

    with app.test_request_context("/", headers=EN):
        assert strings() == ("Sign in", "Closed", "Sign in")
        with force_locale("zh_Hans"):
            assert strings() == ("登录", "已关闭", "登录")
        assert strings() == ("Sign in", "Closed", "Sign in")
    with app.test_request_context("/", headers=ZH):
        assert strings() == ("登录", "已关闭", "登录")
        with force_locale("en"):
            assert strings() == ("Sign in", "Closed", "Sign in")
        assert strings() == ("登录", "已关闭", "登录")


def test_unknown_or_missing_browser_language_falls_back_to_english(client):
    for headers in ({"Accept-Language": "fr-FR,de;q=0.8"}, {}):
        page = client.get("/login", headers=headers).get_data(as_text=True)
        assert '<html lang="en">' in page and "<h1>Sign in</h1>" in page


def test_the_users_own_language_wins_over_the_browser(ctx, client):
    user = factories.end_user(email="ann@example.com")
    audit.update(audit.SYSTEM, user, language="zh_Hans")
    assert User.get_by_id(user.id).language == "zh_Hans"
    login(client, "ann@example.com", factories.PASSWORD)
    page = client.get("/my/tickets", headers=EN).get_data(as_text=True)
    assert '<html lang="zh-Hans">' in page
    assert "<h1>我的工单</h1>" in page and "退出登录" in page
    assert "My Tickets" not in page


def test_footer_language_switch_sets_this_browsers_language(client):
    token = csrf_token(client, "/login")
    resp = client.post("/language", data={"language": "zh_Hans", "next": "/login",
                                          "csrf_token": token}, headers=EN)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
    page = client.get("/login", headers=EN).get_data(as_text=True)
    assert '<html lang="zh-Hans">' in page and "<h1>登录</h1>" in page
    assert '<option value="zh_Hans" selected>' in page

    # An unknown value is ignored: the choice already made stays.
    token = csrf_token(client, "/login")
    client.post("/language", data={"language": "klingon", "next": "/login",
                                   "csrf_token": token}, headers=EN)
    assert "<h1>登录</h1>" in client.get("/login", headers=EN).get_data(as_text=True)

    token = csrf_token(client, "/login")
    client.post("/language", data={"language": "en", "csrf_token": token}, headers=ZH)
    assert "<h1>Sign in</h1>" in client.get("/login", headers=ZH).get_data(as_text=True)


def test_footer_language_switch_ignores_unknown_values_and_missing_tokens(client):
    token = csrf_token(client, "/login")
    resp = client.post("/language", data={"language": "fr", "next": "/login",
                                          "csrf_token": token}, headers=EN)
    assert resp.status_code == 302
    assert "<h1>Sign in</h1>" in client.get("/login", headers=EN).get_data(as_text=True)

    # Without the form's CSRF token the choice is refused (CSRFProtect) and nothing changes.
    resp = client.post("/language", data={"language": "zh_Hans", "next": "/login"}, headers=EN)
    assert resp.status_code == 400
    page = client.get("/login", headers=EN).get_data(as_text=True)
    assert '<html lang="en">' in page and "<h1>Sign in</h1>" in page


def test_form_errors_are_shown_in_chinese(ctx, client):
    fields = {"name": "张伟", "email": "not-an-email", "password": "a good password"}
    resp = post_form(client, "/signup", fields, headers=ZH)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert "请输入有效的邮箱地址。" in page and "Enter a valid email address." not in page
    assert "<h1>创建您的账号</h1>" in page

    # WTForms' own messages come from its bundled zh catalogue.
    resp = post_form(client, "/signup", {**fields, "email": "zw@example.com",
                                         "password": "short"}, headers=ZH)
    assert resp.status_code == 400
    assert "字段长度必须介于 8 到 1024 个字符之间" in resp.get_data(as_text=True)
    assert User.select().count() == 0


def test_service_errors_and_flashes_are_shown_in_chinese(ctx, client):
    factories.end_user(email="ann@example.com")
    token = csrf_token(client, "/login")
    resp = client.post("/login", data={"email": "ann@example.com", "password": "wrong one",
                                       "csrf_token": token}, headers=ZH)
    assert resp.status_code == 400 and "邮箱或密码错误。" in resp.get_data(as_text=True)

    resp = client.get("/my/tickets", headers=ZH, follow_redirects=True)
    assert "请先登录再查看此页面。" in resp.get_data(as_text=True)

    resp = client.get("/no/such/page", headers=ZH)
    assert resp.status_code == 404 and "未找到" in resp.get_data(as_text=True)


def test_sign_up_in_chinese_greets_in_chinese(ctx, client):
    resp = post_form(client, "/signup", {"name": "张伟", "email": "zw@example.com",
                                         "password": "a good password"}, headers=ZH)
    assert resp.status_code == 200 and "请查收邮件" in resp.get_data(as_text=True)
    link = MailMessage.get(MailMessage.recipient == "zw@example.com")
    assert link.subject == "完成创建您的账号" and "24 小时" in link.body
    resp = sign_up(client, "张伟", "zw@example.com", "a good password", headers=ZH)
    assert resp.status_code == 302
    page = client.get("/my/tickets", headers=ZH).get_data(as_text=True)
    assert "欢迎，张伟！您的账号已开通。" in page
    welcome = MailMessage.get(MailMessage.recipient == "zw@example.com", MailMessage.subject_id.is_null(False))
    assert welcome.subject == "欢迎使用帮助中心" and "您的账号已开通" in welcome.body
