"""Partial indexes of what lies in the recycle bin, by deletion time: the purge
finds the tickets and comments past retention (and the bin lists them newest
first) without reading every live row. Only deleted rows are in them, so they
stay small and cost live writes nothing."""

INDEXES = {"ticket_recycled": "ticket", "comment_recycled": "comment"}


def up(database):
    for name, table in INDEXES.items():
        database.execute_sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("deleted_at", "id") '
                             f'WHERE "deleted_at" IS NOT NULL')


def down(database):
    for name in INDEXES:
        database.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
