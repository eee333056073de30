"""Long ticket lists are counted only up to a cap ("More than 1,000 tickets")."""
from __future__ import annotations

import re

from desk.services import tickets
from tests import factories
from tests.conftest import signed_in

AGENT_ROW = re.compile(r'<td><a href="/agent/tickets/(\d+)">')


def rows(resp, pattern=AGENT_ROW) -> set[int]:
    assert resp.status_code == 200
    return {int(n) for n in pattern.findall(resp.get_data(as_text=True))}


def test_a_long_list_is_counted_up_to_the_cap(ctx, monkeypatch):
    monkeypatch.setattr(tickets, "COUNT_CAP", 30)
    admin, ann = factories.admin(), factories.end_user()
    for n in range(32):
        factories.ticket(ann, f"Ticket {n}")
    browser = signed_in(ctx, admin)
    page = browser.get("/agent/tickets?view=all")
    text = page.get_data(as_text=True)
    assert "More than 30 tickets" in text and len(rows(page)) == 25
    assert len(rows(browser.get("/agent/tickets?view=all&page=2"))) == 7  # the last page offered
    assert rows(browser.get("/agent/tickets?view=all&page=9")) == rows(browser.get("/agent/tickets?view=all&page=2"))
    few = browser.get("/agent/tickets?q=Ticket+3").get_data(as_text=True)
    assert "3 tickets" in few and "More than" not in few  # Ticket 3, 30, 31
