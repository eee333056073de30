"""Indexes measured in bench/: status counts on My Tickets, and the purge's
look-up of records deleted before the retention cut-off."""

INDEXES = (
    ("ticket_requester_id_deleted_at_status", "ticket", ("requester_id", "deleted_at", "status")),
    ("ticket_deleted_at", "ticket", ("deleted_at",)),
    ("comment_deleted_at", "comment", ("deleted_at",)),
)


def up(database):
    for name, table, columns in INDEXES:
        cols = ", ".join(f'"{c}"' for c in columns)
        database.execute_sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ({cols})')


def down(database):
    for name, _, _ in INDEXES:
        database.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
