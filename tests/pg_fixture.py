"""A real PostgreSQL for tests (import the fixtures into a test module to use them).

    from pg_fixture import pg_db_url, pg_server_url  # noqa: F401

`pg_server_url` (session): `$TINGXIE_TEST_PG_URL` when set, else a throwaway cluster
started from Debian's binaries (installed with apt-get when missing and possible),
listening on 127.0.0.1 on a free port with its unix socket in a temp dir; run as the
`postgres` user when the tests run as root. Skips with the reason when impossible.

`pg_db_url` (function): a fresh empty database on that server, dropped afterwards, so
every test starts from an empty schema.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from tingxie.localserver import pg_bin, start_postgres

ENV = "TINGXIE_TEST_PG_URL"


def _install() -> str:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "PostgreSQL binaries not found (apt-get install postgresql)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        r = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return "apt-get install postgresql timed out"
    return "" if r.returncode == 0 else f"apt-get install postgresql failed: {r.stderr.strip()[-300:]}"


def _start_cluster() -> tuple[str, Callable[[], None]]:
    """tingxie.localserver.start_postgres, installing Debian's postgresql first when
    its binaries are missing (and we may)."""
    if pg_bin() is None:
        reason = _install()
        if pg_bin() is None:
            raise RuntimeError(reason or "PostgreSQL binaries not found after install")
    return start_postgres()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL server URL whose role may CREATE DATABASE."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    url = os.environ.get(ENV)
    if url:
        yield url
        return
    try:
        url, stop = _start_cluster()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"no PostgreSQL: set {ENV} or make Debian's postgresql usable ({e})")
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def pg_db_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    import sqlalchemy as sa

    from tingxie.store import normalize_url

    server = sa.engine.make_url(normalize_url(pg_server_url))
    name = f"tingxie_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.DBAPIError as e:
        admin.dispose()
        pytest.skip(f"cannot CREATE DATABASE on {server.render_as_string(hide_password=True)}: {e.orig}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
