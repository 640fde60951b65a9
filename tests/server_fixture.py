"""Start a real `tingxie serve` process on a free loopback port for end-to-end tests.

Plain module (not a conftest) so any test file can import it:

    from server_fixture import Server
    with Server(tmp_path, env={...}) as srv:
        httpx.get(srv.url + "/healthz")
"""

from __future__ import annotations

from pathlib import Path

from helpers import MODELS as MODELS_CACHE
from helpers import ROOT

from tingxie.localserver import LocalServer, link_bundled_model

__all__ = ["MODELS_CACHE", "ROOT", "Server", "shared_models"]


def shared_models(home: Path) -> None:
    """Reuse one assembled model across test homes (assembling takes seconds)."""
    link_bundled_model(Path(home), MODELS_CACHE)


class Server(LocalServer):
    """tingxie.localserver's server with a given home; `wait_ready=False` waits for
    /healthz only (for servers whose model may not be loaded yet)."""

    def __init__(
        self,
        home: Path,
        args: list[str] | None = None,
        env: dict | None = None,
        port: int | None = None,
        wait_ready: bool = True,
    ):
        super().__init__(
            args,
            models_dir=MODELS_CACHE,
            home=Path(home),
            # no noise warm-up: the suite starts many servers, and what the warm-up buys
            # (a first request without the first-shape cost) no test measures
            env={"TINGXIE_WARM_UP": "0", **(env or {})},
            port=port,
            ready_path="/readyz" if wait_ready else "/healthz",
        )

    def start(self, timeout: float = 120) -> Server:
        super().start(timeout)
        return self
