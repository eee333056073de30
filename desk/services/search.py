"""Text search over tickets and comments through the database's own index
(desk/models/search.py): the agent list and My Tickets search with it, and the
erasure scrub finds the rows that mention a person with it.

A search finds text that contains the words as typed (any part of a word, any
script, case-insensitive), like ``LIKE '%…%'``, without reading every row: FTS5
trigram on SQLite, pg_trgm on PostgreSQL. Terms shorter than three characters
have no trigram to look up; they fall back to ``LIKE`` and read the rows.
"""
from __future__ import annotations

from functools import reduce
from operator import or_

from peewee import SQL
from peewee import Expression
from peewee import NodeList

from desk.db import is_sqlite
from desk.models import Comment
from desk.models import Ticket
from desk.models.search import INDEXED
from desk.models.search import fts_table

TRIGRAM = 3
COLUMNS = {Ticket: INDEXED["ticket"], Comment: INDEXED["comment"]}


def _phrase(term: str) -> str:
    """An FTS5 string: the term as one phrase, quotes doubled."""
    return '"' + term.replace('"', '""') + '"'


def _fts_ids(model, terms: list[str], columns: tuple[str, ...]) -> Expression:
    """``model.id IN (rows whose ``columns`` contain any of ``terms``)`` through FTS5."""
    fts = fts_table(model._meta.table_name)
    target = fts if columns == COLUMNS[model] else "{" + " ".join(columns) + "}"
    query = " OR ".join(_phrase(t) for t in terms)
    if target != fts:
        query = f"{target} : ({query})"
    subquery = SQL(f'SELECT rowid FROM "{fts}" WHERE "{fts}" MATCH ?', [query])  # nosec B608
    return model.id.in_(NodeList((subquery,), parens=True))


def mentions(model, terms: list[str], columns: tuple[str, ...] | None = None) -> Expression:
    """A condition on ``model`` (Ticket or Comment): its text (or only ``columns``)
    contains at least one of ``terms``. No terms: a condition that is never true."""
    columns = columns or COLUMNS[model]
    terms = sorted({t for t in (t.strip() for t in terms) if t})
    if not terms:
        return model.id.is_null()
    short = [t for t in terms if len(t) < TRIGRAM]
    indexed = [t for t in terms if len(t) >= TRIGRAM]
    parts = [getattr(model, c).contains(t) for t in (terms if not is_sqlite() else short)
             for c in columns]
    if indexed and is_sqlite():
        parts.append(_fts_ids(model, indexed, columns))
    return reduce(or_, parts)


def ticket_ids(q: str, description: bool = True, comments: str = "all"):
    """A subquery of the ids of tickets whose subject (and ``description``) or
    a live comment's body contains ``q``. ``comments``: "all", "public" (what
    a requester sees) or "none"."""
    columns = ("subject", "description") if description else ("subject",)
    direct = Ticket.select(Ticket.id).where(mentions(Ticket, [q], columns))
    if comments == "none":
        return direct
    in_comments = Comment.select(Comment.ticket).where(mentions(Comment, [q]),
                                                       Comment.deleted_at.is_null())
    if comments == "public":
        in_comments = in_comments.where(Comment.is_public == True)  # noqa: E712
    return direct | in_comments


def matching_ticket_ids(q: str, description: bool = True, comments: str = "all") -> set[int]:
    """The ids of ``ticket_ids`` as a set."""
    return {row[0] for row in ticket_ids(q, description, comments).tuples()}


def candidates(model, terms: list[str], after: int = 0, limit: int = 200) -> list:
    """Rows of ``model`` (Ticket or Comment), live or recycled, whose text
    contains any of ``terms``, in id order after ``after``: the rows the erasure
    scrub must look at, a batch at a time."""
    return list(model.select().where(mentions(model, terms), model.id > after)
                .order_by(model.id).limit(limit))
