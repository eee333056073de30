"""The text index over tickets and comments, declared beside the tables.

SQLite: FTS5 tables with external content (they keep only the index; the text
stays in ``ticket`` and ``comment``) and the trigram tokenizer, so a search finds
any part of a word in any script, Chinese included. desk.textindex keeps them in
step with every write, in the same transaction.

PostgreSQL: pg_trgm GIN indexes on the columns themselves, which serve
``ILIKE '%…%'``; PostgreSQL keeps them in step by itself.
"""
from __future__ import annotations

from peewee import PostgresqlDatabase

# table -> the columns of its text that are indexed
INDEXED: dict[str, tuple[str, ...]] = {
    "ticket": ("subject", "description"),
    "comment": ("body",),
}


def fts_table(table: str) -> str:
    """The SQLite FTS5 table indexing ``table``."""
    return f"{table}_fts"


def trigram_index(table: str, column: str) -> str:
    """The PostgreSQL GIN index on ``table.column``."""
    return f"{table}_{column}_trgm"


def ddl(database) -> list[str]:
    """The statements that create the index objects on ``database``."""
    if isinstance(database, PostgresqlDatabase):
        statements = ["CREATE EXTENSION IF NOT EXISTS pg_trgm"]
        for table, columns in INDEXED.items():
            statements += [f'CREATE INDEX IF NOT EXISTS "{trigram_index(table, c)}" '
                           f'ON "{table}" USING gin ("{c}" gin_trgm_ops)' for c in columns]
        return statements
    return [f'CREATE VIRTUAL TABLE IF NOT EXISTS "{fts_table(table)}" USING fts5('
            f'{", ".join(columns)}, content=\'{table}\', content_rowid=\'id\', tokenize=\'trigram\')'
            for table, columns in INDEXED.items()]


def create(database) -> None:
    """Create the index objects (after the tables), as migration 0008 does."""
    for statement in ddl(database):
        database.execute_sql(statement)
