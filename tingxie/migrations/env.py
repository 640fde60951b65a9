"""Alembic environment for tingxie. Runs only on a connection handed over by
`tingxie.store.upgrade()` / `Store.upgrade()` (which also take the migration lock), so
no alembic.ini is needed and it works from an installed package.

New revision (developers), against a database already at head:

    from alembic import command
    from tingxie.store import Store, alembic_config
    with Store("sqlite:///dev.db").engine.connect() as conn:
        command.revision(alembic_config(conn), "what changed", autogenerate=True)

On SQLite, a migration that rebuilds `jobs` (batch mode) drops the full-text triggers
and may renumber rowids: recreate the triggers and run
`INSERT INTO jobs_fts(jobs_fts) VALUES('rebuild')` in that migration.
"""

from __future__ import annotations

from alembic import context

from tingxie.store import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `tingxie db upgrade` or tingxie.store.upgrade(url)")


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Leave objects the ORM does not model to the migrations: the FTS5 table and its
    shadow tables (SQLite) and the pg_trgm indexes (PostgreSQL)."""
    if name and type_ == "table" and name.startswith("jobs_fts"):
        return False
    if name and type_ == "index" and name.endswith("_trgm"):
        return False
    return True


context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    include_name=include_name,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
