"""The audit log page filtered by action, newest first, at millions of
entries: an index on (action, id) walks one action's entries backwards by id
without reading the others (measured in bench/RESULTS.md, "Audit log page")."""

NAME = "audit_entry_action_id"


def up(database):
    database.execute_sql(f'CREATE INDEX IF NOT EXISTS "{NAME}" ON "audit_entry" ("action", "id")')


def down(database):
    database.execute_sql(f'DROP INDEX IF EXISTS "{NAME}"')
