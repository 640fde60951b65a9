"""Initial schema: jobs (with substring search), api_keys, workers.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

# SQLite: an external-content FTS5 table over jobs(text, filename) with the trigram
# tokenizer (substring match, case-insensitive; works for Chinese), kept in sync by
# triggers. Only changes to text/filename touch the index, not progress updates.
_FTS_ROW = "coalesce({p}.text, ''), coalesce({p}.filename, '')"
SQLITE_FTS = [
    "CREATE VIRTUAL TABLE jobs_fts USING fts5(text, filename, content='jobs', content_rowid='rowid', "
    "tokenize='trigram')",
    f"""CREATE TRIGGER jobs_fts_ai AFTER INSERT ON jobs BEGIN
        INSERT INTO jobs_fts(rowid, text, filename) VALUES (new.rowid, {_FTS_ROW.format(p='new')});
    END""",
    f"""CREATE TRIGGER jobs_fts_ad AFTER DELETE ON jobs BEGIN
        INSERT INTO jobs_fts(jobs_fts, rowid, text, filename) VALUES ('delete', old.rowid, {_FTS_ROW.format(p='old')});
    END""",
    f"""CREATE TRIGGER jobs_fts_au AFTER UPDATE OF text, filename ON jobs BEGIN
        INSERT INTO jobs_fts(jobs_fts, rowid, text, filename) VALUES ('delete', old.rowid, {_FTS_ROW.format(p='old')});
        INSERT INTO jobs_fts(rowid, text, filename) VALUES (new.rowid, {_FTS_ROW.format(p='new')});
    END""",
]


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("audio_path", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("language", sa.String(32), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("processing_time", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("callback_state", sa.String(16), nullable=True),
        sa.Column("callback_attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_jobs_batch_id", "jobs", ["batch_id"])
    op.create_index("ix_jobs_created_id", "jobs", ["created_at", "id"])
    op.create_index("ix_jobs_owner_created_id", "jobs", ["owner", "created_at", "id"])
    op.create_index("ix_jobs_state_created", "jobs", ["state", "created_at"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )

    op.create_table(
        "workers",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("info", JSON, nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_workers_last_seen", "workers", ["last_seen"])

    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for stmt in SQLITE_FTS:
            op.execute(stmt)
    elif bind.dialect.name == "postgresql":
        from tingxie.store import ensure_pg_search

        ensure_pg_search(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for name in ("jobs_fts_au", "jobs_fts_ad", "jobs_fts_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS jobs_fts")
    elif bind.dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_jobs_text_trgm")
        op.execute("DROP INDEX IF EXISTS ix_jobs_filename_trgm")
    op.drop_table("workers")
    op.drop_table("api_keys")
    op.drop_table("jobs")
