"""The FastAPI application: wires settings, model manager, store and queue together and
mounts one router per API area. `create_app` is what `tingxie serve` and tests run."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..manager import ModelManager
from ..settings import Settings
from . import errors
from .metrics import Metrics
from .uploads import UploadLimitMiddleware

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


@dataclass
class ServerState:
    settings: Settings
    manager: ModelManager
    store: object
    queue: object
    metrics: Metrics
    started: float = field(default_factory=time.time)
    streams: int = 0


def create_app(settings: Settings | None = None, start_queue: bool = True) -> FastAPI:
    from ..store import Store

    settings = settings or Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.audio_dir.mkdir(parents=True, exist_ok=True)
    metrics = Metrics()
    manager = ModelManager(settings, on_batch=metrics.observe_batch)
    store = Store(settings.db_url)
    base_url = f"http://{settings.host}:{settings.port}"
    if settings.queue == "celery":
        from ..celery_queue import CeleryQueue

        queue = CeleryQueue(store, settings)
    else:
        from ..jobs import LocalQueue

        concurrency = max(2, manager.choice.batch_size * manager.choice.instances * 2)
        queue = LocalQueue(store, manager, concurrency, base_url, settings.callback_retries)
    state = ServerState(settings, manager, store, queue, metrics)
    metrics.bind(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from .. import retention

        if start_queue:
            queue.start()
        stop_retention = retention.start(store, settings.retention_audio_days, settings.retention_keep_text)
        yield
        stop_retention.set()
        queue.stop()
        manager.close()

    app = FastAPI(
        title="tingxie",
        version=__version__,
        description="Self-hosted speech recognition: OpenAI-compatible transcription, jobs, history, real-time streaming.",
        lifespan=lifespan,
    )
    app.state.tx = state
    errors.install(app)
    app.add_middleware(UploadLimitMiddleware, max_bytes=settings.max_upload_mb * 1024 * 1024)
    metrics.install(app)

    from . import jobs_api, openai_api, system_api

    app.include_router(openai_api.router)
    app.include_router(jobs_api.router)
    app.include_router(system_api.router)
    try:
        from . import stream_api

        app.include_router(stream_api.router)
    except ImportError:  # the real-time lane ships separately
        pass
    if WEB_DIR.is_dir():
        app.mount("/ui", StaticFiles(directory=WEB_DIR, html=True), name="ui")

        @app.get("/", include_in_schema=False)
        def _root():
            return RedirectResponse("/ui/")

    return app
