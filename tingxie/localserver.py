"""Local servers for tests and benchmarks: `tingxie serve` on a free loopback port with a
throw-away home, a throw-away Redis and PostgreSQL, and a scale-out cluster (API node +
Celery workers) over them. Not used by the server itself."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


# -- tingxie serve -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def link_bundled_model(home: Path, models_dir: Path | None = None) -> None:
    """Give `home` the bundled model by a link to an assembled copy (no copy, no re-join)."""
    from . import models as models_mod
    from .settings import Settings

    src_dir = Path(models_dir or Settings().models_dir)
    models_mod.assemble_bundled(src_dir)
    (home / "models").mkdir(parents=True, exist_ok=True)
    link = home / "models" / models_mod.BUNDLED
    if not link.exists():
        link.symlink_to(src_dir.resolve() / models_mod.BUNDLED)


class LocalServer:
    """`python -m tingxie serve` on a free loopback port with a throw-away TINGXIE_HOME
    whose models dir links the already assembled model (tests' `Server` and the
    benches start theirs through this)."""

    def __init__(
        self,
        args: list[str] | None = None,
        models_dir: Path | None = None,
        home: Path | None = None,
        env: dict | None = None,
        port: int | None = None,
        ready_path: str = "/readyz",
    ):
        self.args = args or []
        self.home = Path(home or tempfile.mkdtemp(prefix="tingxie-local-home-"))
        self.models_dir = models_dir
        self.env = env or {}
        self.port = port or free_port()
        self.ready_path = ready_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> LocalServer:
        import httpx

        self.home.mkdir(parents=True, exist_ok=True)
        link_bundled_model(self.home, self.models_dir)
        inherited = {k: v for k, v in os.environ.items() if k != "TINGXIE_DATABASE_URL"}  # never the caller's database
        env = {**inherited, "TINGXIE_HOME": str(self.home), "PYTHONUNBUFFERED": "1", **self.env}
        self.log = self.home / "server.log"
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tingxie", "serve", "--port", str(self.port), *self.args],
            env=env,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout:.0f} s:\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown handlers run."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_logf", None):
            self._logf.close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- Redis and PostgreSQL ------------------------------------------------------------------
class RedisServer:
    """A throw-away redis-server. Persistent on purpose (`--appendonly yes` in a temp dir)
    so `restart()` keeps the queue, as a production Redis with AOF would."""

    def __init__(self, binary: str):
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tingxie-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--dir",
            str(self.dir),
            "--protected-mode",
            "no",
        ]
        self.proc = subprocess.Popen(args, stdout=open(self.dir / "redis.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("redis-server did not answer PING")

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def pg_bin() -> Path | None:
    """The directory of PostgreSQL's initdb/pg_ctl (Debian's newest first), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def start_postgres() -> tuple[str, Callable[[], None]]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (a free port, its socket in a temp
    dir; run as the `postgres` user when we are root). Returns (server url, stop
    function) or raises RuntimeError with the reason."""
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries not found (apt-get install postgresql)")
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
    port = free_port()
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


# -- a scale-out cluster -------------------------------------------------------------------
class Cluster:
    """API node + Celery workers as separate processes sharing Redis, PostgreSQL and
    storage. `models_dir`: an assembled model to link into each process's home."""

    def __init__(self, tmp: Path, broker: str, db: str, models_dir: Path | None = None, worker_timeout_s: float = 8):
        import sqlalchemy as sa

        self.tmp, self.broker, self.db, self.models_dir = Path(tmp), broker, db, models_dir
        self.storage = self.tmp / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.env = {
            "TINGXIE_QUEUE": "celery",
            "TINGXIE_BROKER_URL": broker,
            "TINGXIE_DATABASE_URL": db,
            "TINGXIE_STORAGE": str(self.storage),
            "TINGXIE_WORKER_TIMEOUT_S": str(worker_timeout_s),
            "TINGXIE_DEVICE": "cpu",
        }
        self.api: LocalServer | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.offsets: dict[str, int] = {}
        self.engine = sa.create_engine(db, poolclass=sa.pool.NullPool)

    def start_api(self) -> None:
        self.api = LocalServer(
            ["--instances", "1", "--threads-per-instance", "1"],
            models_dir=self.models_dir,
            home=self.tmp / "api",
            env=self.env,
        ).start(120)

    def start_worker(self, name: str, instances: int = 1) -> None:
        home = self.tmp / name
        link_bundled_model(home, self.models_dir)
        env = {**os.environ, **self.env, "TINGXIE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        logf = home / "worker.log"
        self.offsets[name] = logf.stat().st_size if logf.exists() else 0
        log = open(logf, "ab")
        self.workers[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tingxie",
                "worker",
                "--name",
                name,
                "--instances",
                str(instances),
                "--threads-per-instance",
                "1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_workers(self, names: list[str], timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for n in names:
                if self.workers[n].poll() is not None:
                    raise RuntimeError(f"worker {n} exited:\n{self.worker_log(n)[-3000:]}")
            if all(" ready." in self.worker_log(n)[self.offsets[n] :] for n in names):
                return
            time.sleep(0.5)
        raise RuntimeError("workers not ready:\n" + "\n".join(self.worker_log(n)[-1500:] for n in names))

    def worker_log(self, name: str) -> str:
        p = self.tmp / name / "worker.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def kill_worker(self, name: str) -> None:
        p = self.workers[name]
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def stop_worker(self, name: str) -> None:
        p = self.workers.pop(name)
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def submit(self, items: list[dict], **form) -> list[str]:
        """POST `items` (dicts with a `path`) as one batch to /api/jobs; their job ids."""
        import httpx

        assert self.api is not None, "start_api first"
        files = [
            ("files", (f"{i:03d}-{Path(it['path']).name}", Path(it["path"]).read_bytes())) for i, it in enumerate(items)
        ]
        r = httpx.post(self.api.url + "/api/jobs", files=files, data={"language": "auto", **form}, timeout=120)
        if r.status_code != 202:
            raise RuntimeError(f"submit: HTTP {r.status_code}: {r.text[:500]}")
        return [j["id"] for j in r.json()["jobs"]]

    def rows(self, ids: list[str]) -> dict[str, dict]:
        import sqlalchemy as sa

        with self.engine.connect() as c:
            rs = c.execute(
                sa.text(
                    "SELECT id, state, attempts, worker, text, error, result IS NOT NULL AS has_result FROM jobs WHERE id = ANY(:ids)"
                ),
                {"ids": ids},
            )
            return {r.id: dict(r._mapping) for r in rs}

    def wait_done(self, ids: list[str], timeout: float) -> dict[str, dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            rows = self.rows(ids)
            if len(rows) == len(ids) and all(r["state"] in ("done", "failed", "cancelled") for r in rows.values()):
                return rows
            time.sleep(0.2)
        states: dict[str, int] = {}
        for r in self.rows(ids).values():
            states[r["state"]] = states.get(r["state"], 0) + 1
        raise RuntimeError(
            f"jobs not finished in {timeout}s: {states}\n" + "\n".join(self.worker_log(n)[-1500:] for n in self.workers)
        )

    def heartbeats(self) -> dict[str, dict]:
        import sqlalchemy as sa

        with self.engine.connect() as c:
            return {
                r.name: json.loads(r.info) if isinstance(r.info, str) else r.info
                for r in c.execute(sa.text("SELECT name, info FROM workers"))
            }

    def close(self) -> None:
        for n in list(self.workers):
            self.stop_worker(n)
        if self.api:
            self.api.stop()
        self.engine.dispose()
