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
        docs_url=None,  # served below from packaged assets: no CDN on an offline network
        redoc_url=None,  # (no offline ReDoc, see _offline_docs)
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
    _offline_docs(app)
    if WEB_DIR.is_dir():
        app.mount("/ui", StaticFiles(directory=WEB_DIR, html=True), name="ui")

        @app.get("/", include_in_schema=False)
        def _root():
            return RedirectResponse("/ui/")

    return app


def _offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) from the assets the `fastapi-offline` package ships, so it loads on
    a network that cannot reach a CDN and sends no request out. No /redoc: its page
    fetches a logo from redoc.ly whatever it is told."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        import fastapi_offline
    except ImportError:  # docs stay off rather than pointing at a CDN
        log.warning("fastapi-offline is not installed: /docs is disabled")
        return
    assets = Path(fastapi_offline.__file__).resolve().parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def _swagger():
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # the validator badge would call swagger.io
        )
