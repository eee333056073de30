"""The shared CSV writer and the cursor it reads from, on both databases."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json

from flask_babel import force_locale
from flask_babel import lazy_gettext as _l

from desk.db import stream_rows
from desk.models import Ticket
from desk.services import csv_export
from desk.services.csv_export import BOOL
from desk.services.csv_export import PLAIN
from desk.services.csv_export import TEXT
from desk.services.csv_export import TIME
from desk.services.csv_export import Column
from tests import factories

HOSTILE = ["=cmd|' /C calc'!A0", "+1+1", "-2", "@SUM(A1)", "\tindent", "\rreturn",
           "引号 \"quoted\", comma", "line one\nline two\r\nthree", "emoji 🎉👩‍💻", "", "plain"]


def parse(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 byte order mark first"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_text_round_trips_and_formulas_are_guarded():
    columns = [Column("id", "Id", PLAIN), Column("text", "Text", TEXT)]
    rows = [(i, value) for i, value in enumerate(HOSTILE)]
    parsed = parse(b"".join(csv_export.write_csv(columns, rows, keys=True)))
    assert parsed[0] == ["id", "text"]
    assert len(parsed) == len(HOSTILE) + 1
    for (i, value), (out_id, out_text) in zip(rows, parsed[1:]):
        assert out_id == str(i)
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            assert out_text == "'" + value
        else:
            assert out_text == value


def test_times_are_iso_utc_and_booleans_the_same_everywhere():
    columns = [Column("at", "At", TIME), Column("flag", "Flag", BOOL)]
    aware = dt.datetime(2026, 12, 1, 16, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    rows = [(dt.datetime(2026, 12, 1, 14, 30, 5, 123456), True),
            ("2026-12-01 14:30:05.123456", 0),  # SQLite's stored text
            (aware, 1), (None, None)]
    parsed = parse(b"".join(csv_export.write_csv(columns, rows, keys=True)))
    assert parsed[1:] == [["2026-12-01T14:30:05Z", "true"], ["2026-12-01T14:30:05Z", "false"],
                          ["2026-12-01T14:30:05Z", "true"], ["", ""]]


def test_header_is_translated_or_machine_names(app):
    columns = [Column("subject", _l("Subject")), Column("status", _l("Status"), PLAIN)]
    with app.test_request_context():
        with force_locale("zh_Hans"):
            zh = parse(b"".join(csv_export.write_csv(columns, [])))[0]
        with force_locale("en"):
            en = parse(b"".join(csv_export.write_csv(columns, [])))[0]
    assert en == ["Subject", "Status"]
    assert zh != en and all(zh)
    assert parse(b"".join(csv_export.write_csv(columns, [], keys=True)))[0] == ["subject", "status"]


def test_convert_runs_before_the_guard():
    columns = [Column("secret", "Secret", TEXT, convert=lambda v: "=" + v)]
    assert parse(b"".join(csv_export.write_csv(columns, [("x",)], keys=True)))[1] == ["'=x"]


def test_chunks_stay_small_for_many_rows():
    columns = [Column("n", "N", PLAIN), Column("t", "T")]
    rows = ((i, "x" * 50) for i in range(10_000))
    chunks = list(csv_export.write_csv(columns, rows, keys=True))
    assert len(chunks) > 10 and max(len(c) for c in chunks) < 100_000
    assert len(parse(b"".join(chunks))) == 10_001


def test_json_lines_carry_the_same_values_unguarded():
    columns = [Column("id", "Id", PLAIN), Column("text", "Text"), Column("at", "At", TIME),
               Column("flag", "Flag", BOOL)]
    rows = [(1, "=cmd 引号\n🎉", dt.datetime(2026, 1, 2, 3, 4, 5), 1)]
    lines = b"".join(csv_export.write_jsonl(columns, rows)).decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": 1, "text": "=cmd 引号\n🎉", "at": "2026-01-02T03:04:05Z", "flag": True}]


def test_stream_rows_reads_plain_tuples_from_the_cursor(ctx, backend):
    requester = factories.end_user()
    made = [factories.ticket(requester, subject=f"Ticket {i} 工单") for i in range(25)]
    query = Ticket.select(Ticket.id, Ticket.subject, Ticket.created_at).order_by(Ticket.id)
    rows = list(stream_rows(query, batch=7))
    assert [r[0] for r in rows] == [t.id for t in made]
    assert all(type(r) is tuple for r in rows)
    assert rows[3][1] == "Ticket 3 工单"
    parsed = parse(b"".join(csv_export.write_csv(
        [Column("id", "Id", PLAIN), Column("subject", "Subject"), Column("created_at", "Created", TIME)],
        stream_rows(query), keys=True)))
    assert parsed[1][2] == made[0].created_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_stream_rows_can_stop_early_and_the_connection_still_works(ctx, backend):
    requester = factories.end_user()
    for i in range(10):
        factories.ticket(requester, subject=f"T{i}")
    rows = stream_rows(Ticket.select(Ticket.id).order_by(Ticket.id), batch=3)
    next(rows)
    rows.close()
    assert Ticket.select().count() == 10
    assert len(list(stream_rows(Ticket.select(Ticket.id), batch=3))) == 10
