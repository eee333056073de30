"""The text index for searching tickets and comments (see desk/models/search.py):
FTS5 trigram tables with external content on SQLite, built here from the rows
already stored; pg_trgm GIN indexes on PostgreSQL."""
from peewee import PostgresqlDatabase

INDEXED = (("ticket", ("subject", "description")), ("comment", ("body",)))


def up(database):
    if isinstance(database, PostgresqlDatabase):
        database.execute_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for table, columns in INDEXED:
            for c in columns:
                database.execute_sql(f'CREATE INDEX IF NOT EXISTS "{table}_{c}_trgm" '
                                     f'ON "{table}" USING gin ("{c}" gin_trgm_ops)')
        return
    for table, columns in INDEXED:
        database.execute_sql(
            f'CREATE VIRTUAL TABLE IF NOT EXISTS "{table}_fts" USING fts5('
            f'{", ".join(columns)}, content=\'{table}\', content_rowid=\'id\', tokenize=\'trigram\')')
        database.execute_sql(f"INSERT INTO \"{table}_fts\"(\"{table}_fts\") VALUES ('rebuild')")  # nosec B608


def down(database):
    if isinstance(database, PostgresqlDatabase):
        for table, columns in INDEXED:
            for c in columns:
                database.execute_sql(f'DROP INDEX IF EXISTS "{table}_{c}_trgm"')
        return  # the extension stays: other databases' objects may use it
    for table, _columns in INDEXED:
        database.execute_sql(f'DROP TABLE IF EXISTS "{table}_fts"')
