"""Persistence: jobs (history + queue state), API keys, worker heartbeats and enrolled
voices.

One schema, one set of Alembic migrations (`tingxie/migrations`) for SQLite (the
default, a file under $TINGXIE_HOME) and PostgreSQL (scale-out). Every method returns
plain JSON-ready dicts (datetimes as ISO-8601 UTC strings) so callers never hold ORM
objects across threads or processes.

Why it is built this way:
- State changes are single guarded UPDATEs (`... WHERE state = 'queued'`), so a job is
  claimed once and finished once even when a queue redelivers it or two workers race.
- SQLite writes open with BEGIN IMMEDIATE (and a 30 s busy timeout, WAL): a deferred
  transaction that reads first and writes later can fail at once with "database is
  locked" instead of waiting its turn.
- History is paged by keyset (created_at, id), so page 2000 costs what page 1 costs.
- Search is substring search (Chinese has no spaces to split words on): SQLite FTS5
  with the trigram tokenizer, PostgreSQL pg_trgm GIN indexes under ILIKE. Terms shorter
  than three characters cannot use trigrams and fall back to LIKE.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool

from .types import OptionsError

log = logging.getLogger(__name__)

KINDS = ("file", "batch_item", "sync", "stream")
STATES = ("queued", "running", "done", "failed", "cancelled")
UNFINISHED = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")
CALLBACK_STATES = ("pending", "delivered", "failed")
MAX_PAGE = 10_000
MAX_SPEAKERS = 100  # enrolled voices per owner: a bound on what one key can store
PREVIEW_CHARS = 80
_PG_MIGRATION_LOCK = 0x74696E67786965  # "tingxie": one advisory lock key for upgrades
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


# --------------------------------------------------------------------------- schema


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Naive UTC in the database (same on SQLite and PostgreSQL), aware UTC in Python.

    SQLite keeps datetimes as fixed-width text, so string order is time order and the
    keyset comparison on (created_at, id) stays correct."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


JSONType = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_created_id", "created_at", "id"),
        sa.Index("ix_jobs_owner_created_id", "owner", "created_at", "id"),
        sa.Index("ix_jobs_state_created", "state", "created_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(64), default="")
    kind: Mapped[str] = mapped_column(sa.String(16))
    batch_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    filename: Mapped[str] = mapped_column(sa.Text, default="")
    audio_path: Mapped[str | None] = mapped_column(sa.Text)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    duration: Mapped[float | None] = mapped_column(sa.Float)
    model: Mapped[str] = mapped_column(sa.String(255), default="")
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    state: Mapped[str] = mapped_column(sa.String(16))
    progress: Mapped[float] = mapped_column(sa.Float, default=0.0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    language: Mapped[str | None] = mapped_column(sa.String(32))
    text: Mapped[str | None] = mapped_column(sa.Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    processing_time: Mapped[float | None] = mapped_column(sa.Float)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    worker: Mapped[str | None] = mapped_column(sa.String(255))
    callback_url: Mapped[str | None] = mapped_column(sa.Text)
    callback_state: Mapped[str | None] = mapped_column(sa.String(16))
    callback_attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, default="")
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    admin: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Worker(Base):
    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    device: Mapped[str] = mapped_column(sa.String(64), default="")
    instances: Mapped[int] = mapped_column(sa.Integer, default=0)
    info: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class EnrolledSpeaker(Base):
    """A voice enrolled by name (POST /api/speakers): its voice print, never shown; the
    audio only when the user asked to keep it. One owner's names are theirs alone."""

    __tablename__ = "speakers"

    owner: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    embedding: Mapped[bytes] = mapped_column(sa.LargeBinary)  # float32, the embedding model's dimension
    model: Mapped[str] = mapped_column(
        sa.String(255)
    )  # the embedding model's file name: prints of another do not compare
    seconds: Mapped[float] = mapped_column(sa.Float)  # of speech the print was made from
    audio_path: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def _name_taken(name: str) -> OptionsError:
    return OptionsError(f"a voice named {name!r} is already enrolled; delete it first or choose another name", "name")


def _refuse_enrolment(held: list[str], name: str, limit: int) -> None:
    """OptionsError (400) for a name the owner already uses, or an owner holding `limit`."""
    if name in held:
        raise _name_taken(name)
    if len(held) >= limit:
        raise OptionsError(f"at most {limit} enrolled voices per key; delete one first", "name")


# Declarative `__table__` is typed FromClause in SQLAlchemy's stubs; it is a Table.
JOBS: sa.Table = Job.__table__  # type: ignore[assignment]
KEYS: sa.Table = ApiKey.__table__  # type: ignore[assignment]
WORKERS: sa.Table = Worker.__table__  # type: ignore[assignment]
SPEAKERS: sa.Table = EnrolledSpeaker.__table__  # type: ignore[assignment]
_JOB_FIELDS = frozenset(c.name for c in JOBS.columns)
_LIST_COLUMNS = [c for c in JOBS.columns if c.name not in ("result", "text")]


# --------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | str | None, name: str) -> datetime | None:
    """Accept aware or naive (taken as UTC) datetimes or ISO strings."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise OptionsError(f"{name} must be an ISO-8601 datetime, got {value!r}") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _row(row: sa.Row) -> dict[str, Any]:
    return {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in row._mapping.items()}


def _encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([_iso(created_at), job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, job_id = json.loads(raw)
        return _utc(datetime.fromisoformat(at), "cursor"), str(job_id)  # type: ignore[return-value]
    except (ValueError, TypeError, AttributeError):
        raise OptionsError("invalid cursor: pass back the next_cursor of a previous page") from None


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _check(value: str | None, allowed: tuple[str, ...], name: str) -> None:
    if value is not None and value not in allowed:
        raise OptionsError(f"{name} must be one of {', '.join(allowed)}; got {value!r}", param=name)


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a history page, count or export covers; None means any. `q`: every
    whitespace-separated term occurs in the text or the file name. Times: aware or naive
    (taken as UTC) datetimes or ISO strings; `until` is exclusive."""

    owner: str | None = None
    q: str | None = None
    state: str | None = None
    kind: str | None = None
    batch_id: str | None = None
    since: datetime | str | None = None
    until: datetime | str | None = None


def normalize_url(url: str) -> str:
    """`postgres://` and `postgresql://` mean psycopg 3 (the driver tingxie ships with)."""
    for plain in ("postgres://", "postgresql://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def make_engine(url: str) -> Engine:
    """An engine tuned per dialect (see the module docstring for why)."""
    u = make_url(normalize_url(url))
    if u.get_backend_name() == "sqlite":
        memory = u.database in (None, "", ":memory:")
        if not memory:
            Path(str(u.database)).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        kw: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if memory:  # one shared connection, or every checkout would see a new empty db
            kw["poolclass"] = StaticPool
        else:
            kw.update(pool_size=5, max_overflow=20)
        engine = sa.create_engine(u, **kw)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 30000")
            if not memory:
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("tingxie_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if u.get_backend_name() == "postgresql":
        return sa.create_engine(u, pool_size=5, max_overflow=10, pool_pre_ping=True)
    raise OptionsError(
        f"unsupported database url {u.render_as_string(hide_password=True)!r}: use sqlite:/// or postgresql://"
    )


# --------------------------------------------------------------------------- migrations


def alembic_config(connection: Connection) -> Any:
    """An Alembic Config for the packaged migrations, bound to `connection` (no ini
    file, so it works from an installed wheel)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def ensure_pg_search(conn: Connection) -> bool:
    """Create pg_trgm (if permitted) and its GIN indexes on jobs.text / jobs.filename.

    Called by the first migration and after every upgrade, so an operator who installs
    the extension later (`CREATE EXTENSION pg_trgm` as superuser) gets the indexes with
    the next `tingxie db upgrade`. Without it search still works (ILIKE), unindexed."""
    if conn.dialect.name != "postgresql":
        return False
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as e:
        log.warning("pg_trgm not available (%s); job search will not be indexed", type(e.orig).__name__)
    schema = conn.exec_driver_sql(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
    ).scalar()
    if schema is None:
        return False
    ops = f'"{schema}".gin_trgm_ops'
    for column in ("text", "filename"):
        conn.exec_driver_sql(f'CREATE INDEX IF NOT EXISTS ix_jobs_{column}_trgm ON jobs USING gin ("{column}" {ops})')
    return True


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: BEGIN IMMEDIATE in the migration still serialises
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _upgrade_engine(engine: Engine) -> None:
    from alembic import command

    if engine.dialect.name == "sqlite":
        db = engine.url.database
        lock = contextlib.nullcontext() if db in (None, "", ":memory:") else _file_lock(Path(f"{db}.migrate.lock"))
        with lock, engine.connect() as conn:
            conn.execution_options(tingxie_write=True)
            command.upgrade(alembic_config(conn), "head")
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        conn.commit()
        try:
            command.upgrade(alembic_config(conn), "head")
            if conn.in_transaction():
                conn.commit()
            with conn.begin():
                ensure_pg_search(conn)
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()


def upgrade(url: str) -> None:
    """`alembic upgrade head` for `url` (the `tingxie db upgrade` command). Safe to run
    from several processes at once: a file lock (SQLite) or pg_advisory_lock serialises
    them and the later ones find the schema current."""
    engine = make_engine(url)
    try:
        _upgrade_engine(engine)
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- store


class Store:
    """All database access of the server. Thread-safe; one per process."""

    def __init__(self, url: str, migrate: bool = True) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self.dialect = self.engine.dialect.name
        self.needs_upgrade = False  # the schema could not be brought up to date yet (a read-only database)
        if migrate:
            self.upgrade()

    def upgrade(self) -> None:
        _upgrade_engine(self.engine)
        self.needs_upgrade = False

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if write:
                conn.execution_options(tingxie_write=True)
            with conn.begin():
                yield conn

    def _update(self, job_id: str, where: Any, **values: Any) -> bool:
        values["updated_at"] = _now()
        stmt = sa.update(JOBS).where(JOBS.c.id == job_id)
        if where is not None:
            stmt = stmt.where(where)
        with self._tx(write=True) as conn:
            return conn.execute(stmt.values(**values)).rowcount == 1

    # ---- jobs

    def create_job(self, **fields: Any) -> dict[str, Any]:
        unknown = set(fields) - _JOB_FIELDS
        if unknown:
            raise OptionsError(f"unknown job field(s): {', '.join(sorted(unknown))}")
        now = _now()
        row: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "owner": "",
            "kind": "file",
            "filename": "",
            "size_bytes": 0,
            "model": "",
            "options": {},
            "state": "queued",
            "progress": 0.0,
            "attempts": 0,
            "callback_attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        row.update({k: v for k, v in fields.items() if v is not None or k not in row})
        if row.get("callback_url") and "callback_state" not in fields:
            row["callback_state"] = "pending"
        _check(row["kind"], KINDS, "kind")
        _check(row["state"], STATES, "state")
        _check(row.get("callback_state"), CALLBACK_STATES, "callback_state")
        with self._tx(write=True) as conn:
            conn.execute(sa.insert(JOBS).values(**row))
            return _row(conn.execute(sa.select(JOBS).where(JOBS.c.id == row["id"])).one())

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self._tx() as conn:
            r = conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).first()
        return _row(r) if r else None

    def claim_job(self, job_id: str, worker: str = "") -> bool:
        """queued → running, exactly once however many workers race for it."""
        now = _now()
        return self._update(
            job_id,
            JOBS.c.state == "queued",
            state="running",
            started_at=now,
            worker=worker or None,
            attempts=JOBS.c.attempts + 1,
        )

    def hold_job(self, job_id: str, holder: str) -> bool:
        """A queued job nobody holds → held by `holder` (the process whose in-memory queue
        has it), so the reaper knows whose death leaves it stranded."""
        return self._update(job_id, (JOBS.c.state == "queued") & JOBS.c.worker.is_(None), worker=holder)

    def adopt_job(self, job_id: str, holder: str | None, new_holder: str | None) -> bool:
        """queued or running, held by `holder` (None: by nobody) → queued, held by
        `new_holder` (None: by nobody, for a broker to deliver). One guarded UPDATE, so of
        two reapers only one adopts the job of a dead process."""
        held = JOBS.c.worker.is_(None) if holder is None else JOBS.c.worker == holder
        return self._update(
            job_id, JOBS.c.state.in_(UNFINISHED) & held, state="queued", worker=new_holder, progress=0.0
        )

    def requeue_job(self, job_id: str) -> bool:
        """running → queued (a worker gave the job back or died)."""
        return self._update(job_id, JOBS.c.state == "running", state="queued", worker=None, progress=0.0)

    def retry_job(self, job_id: str) -> bool:
        """failed or cancelled → queued, as a fresh run (error and timings cleared,
        callback due again); the caller resubmits it to the queue."""
        return self._update(
            job_id,
            JOBS.c.state.in_(("failed", "cancelled")),
            state="queued",
            error=None,
            progress=0.0,
            worker=None,
            started_at=None,
            finished_at=None,
            callback_state=sa.case((JOBS.c.callback_url.is_not(None), "pending"), else_=None),
            callback_attempts=0,
        )

    def set_progress(self, job_id: str, progress: float) -> bool:
        p = min(1.0, max(0.0, float(progress)))
        return self._update(job_id, JOBS.c.state.in_(UNFINISHED), progress=p)

    def finish_job(
        self,
        job_id: str,
        result: dict[str, Any],
        text: str,
        language: str,
        duration: float,
        processing_time: float,
    ) -> bool:
        """Store the result once. False when the job was already finished, cancelled or
        deleted, so a redelivered job never produces a second result."""
        now = _now()
        return self._update(
            job_id,
            JOBS.c.state.in_(UNFINISHED),
            state="done",
            result=result,
            text=text,
            language=language,
            duration=duration,
            processing_time=processing_time,
            progress=1.0,
            error=None,
            finished_at=now,
        )

    def set_result(self, job_id: str, result: dict[str, Any], text: str) -> bool:
        """Replace a finished job's result and text (renamed speakers); the search
        index follows the text."""
        return self._update(job_id, JOBS.c.state == "done", result=result, text=text)

    def fail_job(self, job_id: str, error: str) -> bool:
        return self._update(job_id, JOBS.c.state.in_(UNFINISHED), state="failed", error=error, finished_at=_now())

    def cancel_job(self, job_id: str) -> bool:
        return self._update(job_id, JOBS.c.state.in_(UNFINISHED), state="cancelled", finished_at=_now())

    def take_over_job(self, job_id: str, holder: str | None, new_holder: str) -> bool:
        """running (held by `holder`; None: by nobody) → running held by `new_holder`, as
        a fresh attempt. One guarded UPDATE: of two processes taking over the same job,
        only one succeeds."""
        held = JOBS.c.worker.is_(None) if holder is None else JOBS.c.worker == holder
        return self._update(
            job_id,
            (JOBS.c.state == "running") & held,
            worker=new_holder,
            started_at=_now(),
            progress=0.0,
            attempts=JOBS.c.attempts + 1,
        )

    def give_back_job(self, job_id: str, holder: str | None) -> bool:
        """running (held by `holder`; None: by nobody) → queued, guarded on the holder."""
        held = JOBS.c.worker.is_(None) if holder is None else JOBS.c.worker == holder
        return self._update(job_id, (JOBS.c.state == "running") & held, state="queued", worker=None, progress=0.0)

    def delete_job(self, job_id: str) -> dict[str, Any] | None:
        """Delete and return the row, so the caller can remove its audio file."""
        with self._tx(write=True) as conn:
            r = conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).first()
            if r is None:
                return None
            conn.execute(sa.delete(JOBS).where(JOBS.c.id == job_id))
        return _row(r)

    def set_callback_state(self, job_id: str, state: str | None, attempts: int) -> bool:
        _check(state, CALLBACK_STATES, "callback_state")
        return self._update(job_id, None, callback_state=state, callback_attempts=attempts)

    def pending_callbacks(self) -> list[dict[str, Any]]:
        """Finished (done or failed) jobs whose callback is still due: to resume after a restart."""
        stmt = (
            sa.select(JOBS.c.id, JOBS.c.callback_attempts)
            .where(
                JOBS.c.state.in_(("done", "failed")),
                JOBS.c.callback_state == "pending",
                JOBS.c.callback_url.is_not(None),
            )
            .order_by(JOBS.c.finished_at)
        )
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt).all()]

    def _filters(self, f: JobFilter) -> list[Any]:
        _check(f.state, STATES, "state")
        _check(f.kind, KINDS, "kind")
        conds: list[Any] = []
        if f.owner is not None:
            conds.append(JOBS.c.owner == f.owner)
        if f.state is not None:
            conds.append(JOBS.c.state == f.state)
        if f.kind is not None:
            conds.append(JOBS.c.kind == f.kind)
        if f.batch_id is not None:
            conds.append(JOBS.c.batch_id == f.batch_id)
        if (s := _utc(f.since, "since")) is not None:
            conds.append(JOBS.c.created_at >= s)
        if (u := _utc(f.until, "until")) is not None:
            conds.append(JOBS.c.created_at < u)
        conds.extend(self._search(f.q))
        return conds

    def _search(self, q: str | None) -> list[Any]:
        """Every whitespace-separated term must occur (as a substring, case-insensitive)
        in the transcript text or the filename."""
        terms = (q or "").split()[:16]
        conds: list[Any] = []
        if self.dialect == "sqlite":
            long = [t for t in terms if len(t) >= 3]
            if long:
                match = " AND ".join('"' + t.replace('"', '""') + '"' for t in long)
                conds.append(
                    sa.text("jobs.rowid IN (SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH :fts_q)").bindparams(
                        fts_q=match
                    )
                )
            terms = [t for t in terms if len(t) < 3]  # trigrams need 3 characters
        for t in terms:
            pattern = f"%{_escape_like(t)}%"
            like = "like" if self.dialect == "sqlite" else "ilike"  # SQLite LIKE ignores ASCII case
            conds.append(
                sa.or_(
                    getattr(JOBS.c.text, like)(pattern, escape="\\"),
                    getattr(JOBS.c.filename, like)(pattern, escape="\\"),
                )
            )
        return conds

    def list_jobs(
        self, where: JobFilter | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first. Returns (rows, next_cursor); next_cursor is None on the last
        page. Rows omit `text` and `result` and carry `preview` (first 80 characters)."""
        if not 1 <= int(limit) <= MAX_PAGE:
            raise OptionsError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        conds = self._filters(where or JobFilter())
        if cursor:
            at, cid = _decode_cursor(cursor)
            after = sa.tuple_(sa.literal(at, UTCDateTime()), sa.literal(cid, sa.String()))
            conds.append(sa.tuple_(JOBS.c.created_at, JOBS.c.id) < after)
        preview = sa.func.substr(JOBS.c.text, 1, PREVIEW_CHARS).label("preview")
        stmt = (
            sa.select(*_LIST_COLUMNS, preview)
            .where(*conds)
            .order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc())
            .limit(int(limit) + 1)
        )
        with self._tx() as conn:
            rows = conn.execute(stmt).all()
        more = len(rows) > limit
        rows = rows[:limit]
        out = [_row(r) for r in rows]
        for d in out:
            d["preview"] = d["preview"] or ""
        nxt = _encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return out, nxt

    def job_texts(self, ids: list[str]) -> dict[str, str]:
        """Transcript texts of some jobs (a history page's search snippets), without results."""
        if not ids:
            return {}
        stmt = sa.select(JOBS.c.id, JOBS.c.text).where(JOBS.c.id.in_(ids))
        with self._tx() as conn:
            return {i: t or "" for i, t in conn.execute(stmt).all()}

    def count_jobs(self, where: JobFilter | None = None) -> int:
        conds = self._filters(where or JobFilter())
        with self._tx() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(JOBS).where(*conds)).scalar_one())

    def count_unfinished(self, owner: str) -> int:
        """Queued + running jobs of one owner (the per-key queue limit)."""
        stmt = sa.select(sa.func.count()).select_from(JOBS).where(JOBS.c.owner == owner, JOBS.c.state.in_(UNFINISHED))
        with self._tx() as conn:
            return int(conn.execute(stmt).scalar_one())

    def stats(self, owner: str | None = None) -> dict[str, int]:
        """Job counts per state (every state present) plus `total`."""
        stmt = sa.select(JOBS.c.state, sa.func.count()).group_by(JOBS.c.state)
        if owner is not None:
            stmt = stmt.where(JOBS.c.owner == owner)
        with self._tx() as conn:
            counts = dict.fromkeys(STATES, 0) | {s: int(n) for s, n in conn.execute(stmt).all()}
        counts["total"] = sum(counts.values())
        return counts

    def unfinished_jobs(self) -> list[dict[str, Any]]:
        """Queued or running jobs, oldest first (to resubmit after a restart)."""
        stmt = sa.select(JOBS).where(JOBS.c.state.in_(UNFINISHED)).order_by(JOBS.c.created_at, JOBS.c.id)
        with self._tx() as conn:
            return [_row(r) for r in conn.execute(stmt).all()]

    def reset_running(self) -> int:
        """running → queued for every job: crash recovery at startup of a single server.
        (With remote workers, use requeue_job on jobs whose worker is gone instead.)"""
        stmt = (
            sa.update(JOBS)
            .where(JOBS.c.state == "running")
            .values(state="queued", worker=None, progress=0.0, updated_at=_now())
        )
        with self._tx(write=True) as conn:
            return conn.execute(stmt).rowcount

    def purge_audio(self, before: datetime) -> list[str]:
        """Forget the audio of jobs finished before `before`; returns the paths so the
        caller deletes the files (the row and its transcript stay)."""
        cut = _utc(before, "before")
        where = sa.and_(JOBS.c.state.in_(FINISHED), JOBS.c.finished_at < cut, JOBS.c.audio_path.is_not(None))
        with self._tx(write=True) as conn:
            rows = conn.execute(sa.select(JOBS.c.id, JOBS.c.audio_path).where(where)).all()
            ids = [r.id for r in rows]
            for i in range(0, len(ids), 500):
                conn.execute(
                    sa.update(JOBS).where(JOBS.c.id.in_(ids[i : i + 500])).values(audio_path=None, updated_at=_now())
                )
        return [r.audio_path for r in rows]

    def purge_text(self, before: datetime) -> int:
        """Clear transcript text and result of jobs finished before `before`."""
        cut = _utc(before, "before")
        stmt = (
            sa.update(JOBS)
            .where(
                JOBS.c.state.in_(FINISHED),
                JOBS.c.finished_at < cut,
                sa.or_(JOBS.c.text.is_not(None), JOBS.c.result.is_not(None)),
            )
            .values(text=None, result=None, updated_at=_now())
        )
        with self._tx(write=True) as conn:
            return conn.execute(stmt).rowcount

    def rebuild_search(self) -> None:
        """Rebuild the SQLite full-text index from the jobs table (after a manual
        restore or a table rebuild that renumbered rowids). No-op on PostgreSQL."""
        if self.dialect == "sqlite":
            with self._tx(write=True) as conn:
                conn.exec_driver_sql("INSERT INTO jobs_fts(jobs_fts) VALUES('rebuild')")

    # ---- API keys

    @staticmethod
    def _key(r: sa.Row[Any]) -> dict[str, Any]:
        d = _row(r)
        d.pop("key_hash", None)
        return d

    def create_key(self, name: str, admin: bool = False) -> tuple[dict[str, Any], str]:
        """Returns (key row, secret). Only the sha256 of the secret is stored, so the
        secret is shown once and never again."""
        secret = "tx-" + secrets.token_urlsafe(32)
        row = {
            "id": secrets.token_hex(4),
            "name": name,
            "key_hash": hashlib.sha256(secret.encode()).hexdigest(),
            "prefix": secret[:8],
            "admin": bool(admin),
            "created_at": _now(),
        }
        with self._tx(write=True) as conn:
            conn.execute(sa.insert(KEYS).values(**row))
            r = conn.execute(sa.select(KEYS).where(KEYS.c.id == row["id"])).one()
        return self._key(r), secret

    def verify_key(self, secret: str | None) -> dict[str, Any] | None:
        if not secret or not isinstance(secret, str):
            return None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        with self._tx() as conn:
            r = conn.execute(sa.select(KEYS).where(KEYS.c.key_hash == digest, KEYS.c.revoked_at.is_(None))).first()
        if r is None or not hmac.compare_digest(r.key_hash, digest):
            return None
        return self._key(r)

    def list_keys(self) -> list[dict[str, Any]]:
        with self._tx() as conn:
            return [self._key(r) for r in conn.execute(sa.select(KEYS).order_by(KEYS.c.created_at, KEYS.c.id)).all()]

    def revoke_key(self, key_id: str) -> bool:
        stmt = sa.update(KEYS).where(KEYS.c.id == key_id, KEYS.c.revoked_at.is_(None)).values(revoked_at=_now())
        with self._tx(write=True) as conn:
            return conn.execute(stmt).rowcount == 1

    def has_keys(self) -> bool:
        with self._tx() as conn:
            return conn.execute(sa.select(KEYS.c.id).where(KEYS.c.revoked_at.is_(None)).limit(1)).first() is not None

    def keys_ever_created(self) -> bool:
        """True once any key exists, revoked or not: revoking the last key must not turn
        authentication off (see server/auth.py)."""
        with self._tx() as conn:
            return conn.execute(sa.select(KEYS.c.id).limit(1)).first() is not None

    # ---- enrolled voices

    def add_speaker(
        self,
        owner: str,
        name: str,
        embedding: bytes,
        model: str,
        seconds: float,
        audio_path: str | None = None,
        limit: int = MAX_SPEAKERS,
    ) -> dict[str, Any]:
        """Enrol a voice; OptionsError (400) for a name the owner already uses or an
        owner at `limit` (`check_enrolment`), so nothing refused is stored."""
        row = {
            "owner": owner,
            "name": name,
            "embedding": embedding,
            "model": model,
            "seconds": float(seconds),
            "audio_path": audio_path,
            "created_at": _now(),
        }
        try:
            with self._tx(write=True) as conn:
                _refuse_enrolment(self._speaker_names(conn, owner), name, limit)
                conn.execute(sa.insert(SPEAKERS).values(**row))
        except sa.exc.IntegrityError:  # the same name enrolled at the same moment (PostgreSQL)
            raise _name_taken(name) from None
        return self._speaker(row)

    def check_enrolment(self, owner: str, name: str, limit: int = MAX_SPEAKERS) -> None:
        """The refusals `add_speaker` would give, before the work of making a print."""
        with self._tx() as conn:
            _refuse_enrolment(self._speaker_names(conn, owner), name, limit)

    @staticmethod
    def _speaker_names(conn: Any, owner: str) -> list[str]:
        return list(conn.execute(sa.select(SPEAKERS.c.name).where(SPEAKERS.c.owner == owner)).scalars().all())

    @staticmethod
    def _speaker(row: Any) -> dict[str, Any]:
        m = row if isinstance(row, dict) else row._mapping
        created = m["created_at"]
        return {
            "name": m["name"],
            "created_at": _iso(created) if isinstance(created, datetime) else created,
            "seconds": round(float(m["seconds"]), 2),
            "has_audio": m["audio_path"] is not None,
        }

    def list_speakers(self, owner: str) -> list[dict[str, Any]]:
        """The owner's enrolled voices by name (never the prints)."""
        cols = [SPEAKERS.c.name, SPEAKERS.c.created_at, SPEAKERS.c.seconds, SPEAKERS.c.audio_path]
        stmt = sa.select(*cols).where(SPEAKERS.c.owner == owner).order_by(SPEAKERS.c.name)
        with self._tx() as conn:
            return [self._speaker(r) for r in conn.execute(stmt).all()]

    def speaker_prints(self, owner: str, names: list[str]) -> dict[str, tuple[bytes, str]]:
        """name → (voice print, embedding model) of those of `names` the owner enrolled."""
        if not names:
            return {}
        stmt = sa.select(SPEAKERS.c.name, SPEAKERS.c.embedding, SPEAKERS.c.model).where(
            SPEAKERS.c.owner == owner, SPEAKERS.c.name.in_(list(names))
        )
        with self._tx() as conn:
            return {r.name: (bytes(r.embedding), r.model) for r in conn.execute(stmt).all()}

    def delete_speaker(self, owner: str, name: str) -> dict[str, Any] | None:
        """Delete and return the row (its audio_path for the caller to remove), or None."""
        where = (SPEAKERS.c.owner == owner) & (SPEAKERS.c.name == name)
        with self._tx(write=True) as conn:
            r = conn.execute(sa.select(SPEAKERS.c.name, SPEAKERS.c.audio_path).where(where)).first()
            if r is None:
                return None
            conn.execute(sa.delete(SPEAKERS).where(where))
        return dict(r._mapping)

    # ---- workers

    def heartbeat(self, name: str, device: str, instances: int, info: dict[str, Any] | None = None) -> None:
        values = {"device": device, "instances": int(instances), "info": info or {}, "last_seen": _now()}
        ins = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(WORKERS)
        stmt = ins.values(name=name, **values).on_conflict_do_update(index_elements=[WORKERS.c.name], set_=values)
        with self._tx(write=True) as conn:
            conn.execute(stmt)

    def live_workers(self, max_age_s: float = 30) -> list[dict[str, Any]]:
        cut = _now() - timedelta(seconds=max_age_s)
        stmt = sa.select(WORKERS).where(WORKERS.c.last_seen >= cut).order_by(WORKERS.c.name)
        with self._tx() as conn:
            return [_row(r) for r in conn.execute(stmt).all()]


__all__ = ["Store", "upgrade", "make_engine", "normalize_url", "alembic_config", "ensure_pg_search", "KINDS", "STATES"]
