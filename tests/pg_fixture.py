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

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ENV = "TINGXIE_TEST_PG_URL"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _install() -> str:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "PostgreSQL binaries not found (apt-get install postgresql)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        r = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
            capture_output=True, text=True, timeout=300, env=env,
        )
    except subprocess.TimeoutExpired:
        return "apt-get install postgresql timed out"
    return "" if r.returncode == 0 else f"apt-get install postgresql failed: {r.stderr.strip()[-300:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster() -> tuple[str, Callable[[], None]]:
    """Returns (server url, stop function) or raises RuntimeError with the reason."""
    bindir = _pg_bin()
    if bindir is None:
        reason = _install()
        bindir = _pg_bin()
        if bindir is None:
            raise RuntimeError(reason or "PostgreSQL binaries not found after install")
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and there is no `postgres` user to run the server as") from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise RuntimeError("running as root and `runuser` is missing")
        prefix = [runuser, "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="tingxie-pg-"))
    data, sock, logf = base / "data", base / "sock", base / "log"
    sock.mkdir()
    if as_root:
        os.chmod(base, 0o755)
        for p in (base, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)

    def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout, cwd=base)

    def stop() -> None:
        run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], timeout=60)
        shutil.rmtree(base, ignore_errors=True)

    common = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8"]
    r = run([*common, "--locale=C.UTF-8"])
    if r.returncode != 0:  # no C.UTF-8 locale on this system
        shutil.rmtree(data, ignore_errors=True)
        r = run([*common, "--no-locale"])
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {(r.stderr or r.stdout).strip()[-300:]}")
    port = _free_port()
    opts = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
    )
    r = run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logf), "-o", opts, "-w", "-t", "60", "start"])
    if r.returncode != 0:
        log = logf.read_text(errors="replace")[-300:] if logf.exists() else ""
        stop()
        raise RuntimeError(f"pg_ctl start failed: {(r.stderr or r.stdout).strip()[-300:]} {log}")
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop


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
