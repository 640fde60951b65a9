"""Start a real `tingxie serve` process on a free loopback port for end-to-end tests.

Plain module (not a conftest) so any test file can import it:

    from server_fixture import Server
    with Server(tmp_path, env={...}) as srv:
        httpx.get(srv.url + "/healthz")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MODELS_CACHE = Path(os.environ.get("TINGXIE_TEST_MODELS", Path.home() / ".cache" / "tingxie" / "models"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_models(home: Path) -> None:
    """Reuse one assembled model across test homes (assembling takes seconds)."""
    from tingxie import models

    models.assemble_bundled(MODELS_CACHE)
    (home / "models").mkdir(parents=True, exist_ok=True)
    link = home / "models" / models.BUNDLED
    if not link.exists():
        link.symlink_to(MODELS_CACHE / models.BUNDLED)


class Server:
    def __init__(self, home: Path, args: list[str] | None = None, env: dict | None = None, port: int | None = None, wait_ready: bool = True):
        self.home = Path(home)
        self.port = port or free_port()
        self.args = args or []
        self.env = env or {}
        self.wait_ready = wait_ready
        self.proc: subprocess.Popen | None = None
        self.log = self.home / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        self.home.mkdir(parents=True, exist_ok=True)
        shared_models(self.home)
        env = {**os.environ, "TINGXIE_HOME": str(self.home), "PYTHONUNBUFFERED": "1", **self.env}
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tingxie", "serve", "--port", str(self.port), *self.args],
            env=env, stdout=self._logf, stderr=subprocess.STDOUT, cwd=str(ROOT),
        )
        deadline = time.time() + 120
        path = "/readyz" if self.wait_ready else "/healthz"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready in time:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown handlers run."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_logf", None):
            self._logf.close()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
