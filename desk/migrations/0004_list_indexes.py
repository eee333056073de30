"""Indexes measured in bench/: status counts on My Tickets, and the purge's
look-up of records deleted before the retention cut-off."""

INDEXES = (
    ("ticket_requester_id_deleted_at_status", "ticket", ("requester_id", "deleted_at", "status"), ""),
    # Partial: only recycled rows, so pages of live records never use them.
    ("ticket_deleted_at", "ticket", ("deleted_at",), ' WHERE "deleted_at" IS NOT NULL'),
    ("comment_deleted_at", "comment", ("deleted_at",), ' WHERE "deleted_at" IS NOT NULL'),
)


def up(database):
    for name, table, columns, where in INDEXES:
        cols = ", ".join(f'"{c}"' for c in columns)
        database.execute_sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ({cols}){where}')


def down(database):
    for name, *_ in INDEXES:
        database.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
