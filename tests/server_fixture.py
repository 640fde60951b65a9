"""Start a real `tingxie serve` process on a free loopback port for end-to-end tests.

Plain module (not a conftest) so any test file can import it:

    from server_fixture import Server
    with Server(tmp_path, env={...}) as srv:
        httpx.get(srv.url + "/healthz")
"""

from __future__ import annotations

import os
from pathlib import Path

from tingxie.bench import LocalServer, link_bundled_model

ROOT = Path(__file__).resolve().parent.parent
MODELS_CACHE = Path(os.environ.get("TINGXIE_TEST_MODELS", Path.home() / ".cache" / "tingxie" / "models"))


def shared_models(home: Path) -> None:
    """Reuse one assembled model across test homes (assembling takes seconds)."""
    link_bundled_model(Path(home), MODELS_CACHE)


class Server(LocalServer):
    """The bench's local server with a given home; `wait_ready=False` waits for
    /healthz only (for servers whose model may not be loaded yet)."""

    def __init__(self, home: Path, args: list[str] | None = None, env: dict | None = None, port: int | None = None, wait_ready: bool = True):
        super().__init__(args, models_dir=MODELS_CACHE, home=Path(home), env=env, port=port,
                         ready_path="/readyz" if wait_ready else "/healthz")

    def start(self, timeout: float = 120) -> "Server":
        super().start(timeout)
        return self
