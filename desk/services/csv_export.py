"""The CSV writer every export shares: module exports, the bulk export, the
audit log, the API and a person's own data.

``write_csv(columns, rows)`` turns plain tuples (straight from a database
cursor, see ``desk.db.stream_rows``) into bytes, a chunk at a time:

- UTF-8 with a byte order mark, so spreadsheet programs show Chinese correctly;
- a header row of translated column names (the reader's language), or the
  stable machine names with ``keys=True`` (``?header=keys``);
- times as ISO 8601 in UTC (``2026-12-01T14:34:16Z``);
- free text guarded against formula injection: a cell starting with
  ``= + - @``, a tab or a carriage return gets a leading apostrophe.

Per-cell work happens only where a column needs it (its ``kind``): ids and
stored codes are written as the driver returns them.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

BOM = "\ufeff"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(FORMULA_START)

TEXT = "text"    # free text anyone could have typed: guarded
PLAIN = "plain"  # ids, numbers, stored codes: written as they are
TIME = "time"    # a timestamp (UTC): ISO 8601
BOOL = "bool"    # true / false, the same on every database
KINDS = (TEXT, PLAIN, TIME, BOOL)

CHUNK_ROWS = 500


@dataclass(frozen=True)
class Column:
    """One column of an export: its stable ``key`` (machine header), its
    ``label`` (str or lazy string, translated when the header is written), its
    ``kind``, and an optional ``convert`` applied to each value first (for
    values only Python can produce, such as opened sealed values)."""

    key: str
    label: Any
    kind: str = TEXT
    convert: Callable[[Any], Any] | None = None


def header(columns: Sequence[Column], keys: bool = False) -> list[str]:
    """The header row: machine names, or labels in the current language."""
    return [c.key if keys else str(c.label) for c in columns]


def guard(value: Any) -> Any:
    """A cell a spreadsheet will not run as a formula (text only)."""
    if value.__class__ is str:
        return "'" + value if value[:1] in _FORMULA_FIRST else value
    return safe_cell(value)


def safe_cell(value: Any) -> str:
    """Any value as guarded text (dates in ISO 8601, objects as JSON)."""
    if value is None:
        return ""
    if isinstance(value, (dt.datetime, dt.date)):
        return iso_time(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False) \
        if isinstance(value, (dict, list)) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def iso_time(value: Any) -> str:
    """ISO 8601 in UTC, to the second. Naive datetimes are UTC (as stored);
    SQLite hands back its stored text ("2026-12-01 14:34:16.123456")."""
    if value is None or value == "":
        return ""
    if value.__class__ is str:
        return f"{value[:10]}T{value[11:19]}Z" if len(value) >= 19 else value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="seconds") + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _bool(value: Any) -> str:
    return "" if value is None else "true" if value else "false"


_BY_KIND = {TEXT: guard, PLAIN: None, TIME: iso_time, BOOL: _bool}


def _cell_fixer(column: Column) -> Callable[[Any], Any] | None:
    by_kind = _BY_KIND[column.kind]
    if column.convert is None:
        return by_kind
    if by_kind is None:
        return column.convert
    convert = column.convert
    return lambda value: by_kind(convert(value))


def row_fixer(columns: Sequence[Column]) -> Callable[[Sequence], Sequence] | None:
    """One function turning a cursor row into a CSV row; None when no column
    needs any work (then rows go to the writer untouched). The function is
    generated for the columns (``lambda r: (r[0], f1(r[1]), ...)``), so a row
    costs one call per column that needs work and nothing else."""
    fixers = [_cell_fixer(c) for c in columns]
    if not any(fixers):
        return None
    names = {f"f{i}": f for i, f in enumerate(fixers) if f}
    cells = ", ".join(f"f{i}(r[{i}])" if f else f"r[{i}]" for i, f in enumerate(fixers))
    return eval(f"lambda r: ({cells},)", names)  # noqa: S307 (built from column indexes only)  # nosec B307


def write_csv(columns: Sequence[Column], rows: Iterable[Sequence], keys: bool = False,
              bom: bool = True, lineterminator: str = "\r\n") -> Iterator[bytes]:
    """The CSV file as bytes, header first, ``CHUNK_ROWS`` rows per chunk, in
    constant memory. ``rows`` hold one value per column, in column order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=lineterminator)

    def take() -> bytes:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text.encode("utf-8")

    writer.writerow(header(columns, keys))
    yield (BOM.encode("utf-8") if bom else b"") + take()
    fix = row_fixer(columns)
    batch: list = []
    for row in rows:
        batch.append(fix(row) if fix else row)
        if len(batch) >= CHUNK_ROWS:
            writer.writerows(batch)
            batch.clear()
            yield take()
    if batch:
        writer.writerows(batch)
        yield take()


def write_jsonl(columns: Sequence[Column], rows: Iterable[Sequence]) -> Iterator[bytes]:
    """The same rows as JSON Lines: one object per row keyed by machine names,
    values unguarded (JSON is not run by spreadsheets), times in ISO 8601."""
    keys = [c.key for c in columns]
    fixers = [_json_fixer(c) for c in columns]
    dumps = json.JSONEncoder(ensure_ascii=False, default=str).encode
    lines: list[str] = []
    for row in rows:
        lines.append(dumps({k: (f(v) if f else v) for k, f, v in zip(keys, fixers, row)}))
        if len(lines) >= CHUNK_ROWS:
            yield ("\n".join(lines) + "\n").encode("utf-8")
            lines.clear()
    if lines:
        yield ("\n".join(lines) + "\n").encode("utf-8")


def _json_fixer(column: Column) -> Callable[[Any], Any] | None:
    by_kind = {TIME: lambda v: iso_time(v) or None, BOOL: lambda v: None if v is None else bool(v)}.get(column.kind)
    if column.convert is None:
        return by_kind
    convert = column.convert
    return (lambda v: by_kind(convert(v))) if by_kind else convert
