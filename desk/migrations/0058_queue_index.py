"""A covering index for the agents' default ticket list ("open tickets assigned
to me and unassigned ones of my departments") and its count: status and
deleted_at narrow it, updated_at orders it, assignee and department filter it,
all without reading the table (measured in bench/RESULTS.md)."""

NAME = "ticket_status_deleted_at_updated_at_assignee_id_department_id"
COLUMNS = ("status", "deleted_at", "updated_at", "assignee_id", "department_id")


def up(database):
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    database.execute_sql(f'CREATE INDEX IF NOT EXISTS "{NAME}" ON "ticket" ({cols})')


def down(database):
    database.execute_sql(f'DROP INDEX IF EXISTS "{NAME}"')
