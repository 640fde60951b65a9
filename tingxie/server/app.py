"""The FastAPI application: wires settings, model manager, store and queue together and
mounts one router per API area. `create_app` is what `tingxie serve` and tests run."""

from __future__ import annotations

import json
import logging
import time
import traceback
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy.exc as sa_exc
from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..manager import ModelManager
from ..reaper import Node, storage_problem
from ..settings import Settings
from . import errors
from .browser import BrowserGuardMiddleware, SecurityHeadersMiddleware
from .errors import error_body
from .metrics import Metrics
from .uploads import (
    UploadLimitMiddleware,
    clean_partial_uploads,
    multipart_header_problem,
)

if TYPE_CHECKING:
    from ..jobs import JobQueue
    from ..store import Store

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


@dataclass
class ServerState:
    settings: Settings
    manager: ModelManager
    store: Store
    queue: JobQueue
    metrics: Metrics
    node: Node  # this process as a job holder: owner tag, heartbeat (reaper.py)
    started: float = field(default_factory=time.time)
    streams: int = 0  # live sessions holding a stream slot
    handshakes: int = 0  # connections accepted, waiting for their first message


def open_store(url: str) -> Store:
    """The store, migrated; a database that cannot be written now (read-only, a full
    disk) does not stop the server: it starts, readiness names the problem, requests
    that need the database get 503, and the schema is brought up to date by the first
    heartbeat that can write (reaper.Node)."""
    from ..store import Store

    store = Store(url, migrate=False)
    try:
        store.upgrade()
    except Exception as e:
        problem = storage_problem(e) or (
            "the database cannot be written" if isinstance(e, OSError | sa_exc.DBAPIError) else None
        )
        if problem is None:
            raise
        log.error("database not usable at start: %s; serving 503 until it is", problem)
        store.needs_upgrade = True
    return store


def create_app(settings: Settings | None = None, start_queue: bool = True) -> FastAPI:
    settings = settings or Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.audio_dir.mkdir(parents=True, exist_ok=True)
    metrics = Metrics()
    manager = ModelManager(settings, on_batch=metrics.observe_batch, warm_up=settings.warm_up)
    store = open_store(settings.db_url)
    base_url = f"http://{settings.host}:{settings.port}"
    node = Node.for_server(store, settings.port, settings.worker_timeout_s)
    queue: JobQueue
    if settings.queue == "celery":
        from ..celery_queue import CeleryQueue

        queue = CeleryQueue(store, settings, node)
    else:
        from ..jobs import LocalQueue
        from ..scheduler import work_in_flight

        concurrency = work_in_flight(manager.choice.batch_size, manager.choice.instances)
        queue = LocalQueue(store, manager, concurrency, base_url, node)
    state = ServerState(settings, manager, store, queue, metrics, node)
    metrics.bind(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from .. import retention

        removed = clean_partial_uploads(settings.audio_dir)
        if removed:
            log.warning("removed %d partial upload(s) left by an earlier crash", removed)
        node.start()  # beats before taking work: its previous life's jobs are reaped at once
        if start_queue:
            queue.start()
        stop_retention = retention.start(store, settings.retention_audio_days, settings.retention_keep_text)
        yield
        stop_retention.set()
        queue.stop()
        node.stop()
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
    _install_internal_errors(app)
    app.add_middleware(BrowserGuardMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)

    from . import funasr_api, jobs_api, openai_api, realtime_api, speakers_api, stream_api, system_api

    app.include_router(openai_api.router)
    app.include_router(jobs_api.router)
    app.include_router(speakers_api.router)
    app.include_router(system_api.router)
    app.include_router(stream_api.router)
    app.include_router(funasr_api.router)
    app.include_router(realtime_api.router)
    _offline_docs(app)
    from .schemas import install_openapi

    install_openapi(app)
    if WEB_DIR.is_dir():
        app.mount("/ui", StaticFiles(directory=WEB_DIR, html=True), name="ui")

        @app.get("/", include_in_schema=False)
        def _root():
            return RedirectResponse("/ui/")

    return app


def _install_internal_errors(app: FastAPI) -> None:
    """No endpoint answers a plain-text 500 or a parser's vague 400: every error has the
    JSON shape of errors.py, and the log names the exception type and where it was
    raised, never its text (which may hold server paths or user data)."""
    from starlette.exceptions import HTTPException as StarletteHTTPException

    base = app.exception_handlers[StarletteHTTPException]

    async def http_error(request, e):
        problem = multipart_header_problem(e)
        if problem is not None:
            return JSONResponse(
                error_body(problem.message, problem.type, problem.param, problem.code), status_code=problem.status
            )
        return await base(request, e)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_middleware(InternalErrorMiddleware)


def _where(e: BaseException) -> str:
    """The innermost tingxie frame, as package-relative file and line (never a full path)."""
    pkg = Path(__file__).resolve().parent.parent
    frames = [(Path(f.filename), f) for f in traceback.extract_tb(e.__traceback__)]
    ours = [(p, f) for p, f in frames if p.is_relative_to(pkg)]
    if not (ours or frames):
        return "?"
    p, f = (ours or frames)[-1]
    return f"{p.relative_to(pkg) if ours else p.name}:{f.lineno} in {f.name}"


class InternalErrorMiddleware:
    """Outermost catch-all: an unhandled exception becomes a JSON 500 (HTTP) or close
    1011 (WebSocket) instead of a plain-text 500 with a traceback in the log."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] in ("http.response.start", "websocket.close", "websocket.http.response.start"):
                started = True
            await send(msg)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as e:  # noqa: BLE001 - the point of this middleware
            log.error(
                "internal error on %s %s: %s at %s",
                scope.get("method", "WEBSOCKET"),
                scope.get("path", ""),
                type(e).__name__,
                _where(e),
            )
            if started:
                return
            if scope["type"] == "websocket":
                try:
                    await send({"type": "websocket.close", "code": 1011, "reason": "internal error"})
                except Exception:  # noqa: BLE001, S110 - the client is gone
                    pass
                return
            body = json.dumps(
                error_body(
                    "internal server error; the server log names the failure", "server_error", None, "internal_error"
                )
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})


def _offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) from the assets the `fastapi-offline` package ships, so it loads on
    a network that cannot reach a CDN and sends no request out. No /redoc: its page
    fetches a logo from redoc.ly whatever it is told."""
    import fastapi_offline  # a dependency: never fall back to a CDN
    from fastapi.openapi.docs import get_swagger_ui_html

    assets = Path(fastapi_offline.__file__).resolve().parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def _swagger():
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # the validator badge would call swagger.io
        )
