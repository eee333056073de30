"""The text index: tickets and comments are found by any part of their text
(Chinese too), the index follows every write in the same transaction, and what
is erased or purged can no longer be found."""
from __future__ import annotations

import pytest

from desk import audit
from desk import textindex
from desk.audit import Actor
from desk.db import db
from desk.db import is_sqlite
from desk.models import Comment
from desk.models import Ticket
from desk.services import purge
from desk.services import search
from desk.services import tickets
from tests import factories


@pytest.fixture
def people(ctx):
    return {"customer": factories.end_user(), "agent": factories.agent(role="Administrator")}


def found(q: str, **kw) -> set[int]:
    textindex.check()  # the index matches the rows exactly, after every step
    return search.matching_ticket_ids(q, **kw)


def test_subject_description_and_comment_bodies_are_found_in_any_case(ctx, people):
    a = factories.ticket(people["customer"], subject="Refund for order 77",
                         description="The parcel never arrived")
    b = factories.ticket(people["customer"], subject="Printer", description="paper jam")
    tickets.reply(people["agent"], b.id, "We will send a REFUND voucher")
    factories.ticket(people["customer"], subject="Nothing to see")
    assert found("refund") == {a.id, b.id}
    assert found("PARCEL NEVER") == {a.id}
    assert found("fund vou") == {b.id}  # any part of words, across them
    assert found("refunds") == set()
    assert found("parcel", description=False) == set()
    assert found("voucher", comments="none") == set()


def test_chinese_is_found_by_three_characters_and_by_two(ctx, people):
    a = factories.ticket(people["customer"], subject="退款申请", description="订单号码丢失了")
    b = factories.ticket(people["customer"], subject="打印机", description="卡纸")
    assert found("退款申请") == {a.id}
    assert found("号码丢") == {a.id}
    assert found("退款") == {a.id}  # shorter than a trigram: read the rows instead
    assert found("卡纸") == {b.id}
    assert found("款") == {a.id}


def test_private_and_recycled_comments_are_left_out_when_asked(ctx, people):
    t = factories.ticket(people["customer"], subject="Login trouble")
    tickets.reply(people["agent"], t.id, "internal: check the ledger", public=False)
    gone = tickets.reply(people["agent"], t.id, "the cellar key is under the mat")
    tickets.delete_comment(people["agent"], t.id, gone.id)
    assert found("ledger") == {t.id}
    assert found("ledger", comments="public") == set()
    assert found("cellar key") == set()


def test_changed_text_is_found_by_its_new_words_only(ctx, people):
    t = factories.ticket(people["customer"], subject="Blue screen on start")
    audit.update(audit.SYSTEM, t, subject="Green screen on start", description="since Monday")
    assert found("blue screen") == set()
    assert found("green screen") == {t.id}
    assert found("since monday") == {t.id}


def test_scrubbed_and_purged_text_leaves_the_index(ctx, people):
    t = factories.ticket(people["customer"], subject="Call Ann Example at 555-0101")
    c = tickets.reply(people["agent"], t.id, "Ann Example phoned again")
    other = factories.ticket(people["customer"], subject="Ann Example's second ticket")
    other_c = tickets.reply(people["agent"], other.id, "note for Ann Example")
    audit.update(audit.SYSTEM, Ticket.get_by_id(t.id), action="scrub", redact=True,
                 subject="Call Deleted user at 555-0101")
    assert found("ann example") == {t.id, other.id}  # t still, through its comment
    purge.purge_records(audit.SYSTEM, Ticket, [other.id], ctx.config)
    assert found("ann example") == {t.id}
    purge.purge_records(audit.SYSTEM, Comment, [c.id], ctx.config)
    assert found("ann example") == set()
    assert not Comment.select().where(Comment.id == other_c.id).exists()
    if is_sqlite():  # nothing of the old text is left in the index
        rows = db.execute_sql("SELECT count(*) FROM comment_fts WHERE comment_fts MATCH '\"Ann Example\"'")
        assert rows.fetchone()[0] == 0


def test_a_write_that_fails_leaves_the_index_as_it_was(ctx, people):
    t = factories.ticket(people["customer"], subject="Keyboard sticky")
    with pytest.raises(RuntimeError):
        with audit.transaction():
            audit.update(audit.SYSTEM, t, subject="Mouse sticky")
            audit.create(audit.SYSTEM, Ticket, requester=people["customer"], subject="Mouse too")
            raise RuntimeError("abort")
    assert found("keyboard") == {t.id}
    assert found("mouse") == set()


def test_a_deleted_ticket_takes_its_comments_out_of_the_index(ctx, people):
    t = factories.ticket(people["customer"], subject="Scanner")
    tickets.reply(people["agent"], t.id, "the flux capacitor is loose")
    audit.delete(Actor(), Ticket.get_by_id(t.id))
    assert found("flux capacitor") == set()


def test_candidates_name_the_rows_that_mention_any_term_in_batches(ctx, people):
    rows = [factories.ticket(people["customer"], subject=f"Ticket {n}",
                             description="from jane.roe@example.com" if n % 2 else "other")
            for n in range(6)]
    tickets.reply(people["agent"], rows[0].id, "Jane Roe called; 电话 13800138000")
    terms = ["jane.roe@example.com", "Jane Roe", "13800138000"]
    first = search.candidates(Ticket, terms, limit=2)
    rest = search.candidates(Ticket, terms, after=first[-1].id)
    assert [r.id for r in first + rest] == [r.id for r in rows if "jane" in r.description]
    assert [c.body for c in search.candidates(Comment, terms)] == [
        "Jane Roe called; 电话 13800138000"]
    assert search.candidates(Comment, []) == []
    assert search.candidates(Ticket, ["ja"], limit=10) != []  # short terms still work


def test_hostile_search_text_is_taken_literally(ctx, people):
    t = factories.ticket(people["customer"], subject='He said "NEAR(a b)" OR * and 100%_done')
    assert found('"NEAR(a b)" OR *') == {t.id}
    assert found("100%_done") == {t.id}
    assert found("%") == {t.id}
    assert found("AND") == {t.id}
    assert found("a OR b") == set()
