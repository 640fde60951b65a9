"""Health, readiness, metrics, models and the system page's figures."""

from __future__ import annotations

import os
import resource
import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from .. import __version__
from ..request import VAD_FIELDS, TranscriptionOptions, as_form
from ..types import OptionsError
from . import schemas
from .auth import Principal, admin, keys_required, principal
from .errors import ApiError
from .metrics import gpu_memory

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness", response_model=schemas.Health, response_model_exclude_unset=True)
def healthz():
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the default model is loaded and the database takes writes",
    response_model=schemas.Readiness,
    response_model_exclude_unset=True,
    responses=schemas.READY_RESPONSES,
)
def readyz(request: Request):
    st = request.app.state.tx
    model_id, _ = st.manager.resolve(None)
    loaded = any(m["id"] == model_id and m["loaded"] for m in st.manager.loaded())
    # a write now (the heartbeat): a read-only or full database serves reads but loses work
    problem = None if st.node.beat() else st.node.error
    body = {"ready": loaded and problem is None, "model": model_id}
    if problem:
        body["database"] = problem
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response, responses=schemas.METRICS_RESPONSES)
def metrics(request: Request):
    return Response(request.app.state.tx.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get(
    "/api/models",
    summary="Models: available and loaded",
    response_model=schemas.ModelList,
    response_model_exclude_unset=True,
)
def list_models(request: Request, who: Annotated[Principal, Depends(principal)]):
    st = request.app.state.tx
    loaded = {m["id"]: m for m in st.manager.loaded()}
    out = []
    try:
        default = st.manager.resolve(None)[0]
    except OptionsError:
        default = st.settings.model
    for m in st.manager.models():
        d = m.to_dict(with_path=False)  # where models live is the operator's business (`tingxie models`)
        d["loaded"] = bool(loaded.get(m.id, {}).get("loaded"))
        d["default"] = m.id == default
        out.append(d)
    return {"models": out}


@router.post(
    "/api/models/{model_id}/load",
    summary="Load a model (admin)",
    response_model=schemas.ModelLoaded,
    response_model_exclude_unset=True,
)
async def load_model(request: Request, model_id: str, who: Annotated[Principal, Depends(admin)]):
    st = request.app.state.tx
    try:
        t0 = time.perf_counter()
        await run_in_threadpool(st.manager.load, model_id)
    except OptionsError as e:
        raise ApiError(404, str(e), "not_found_error", "model_id", "model_not_found") from e
    return {"id": model_id, "loaded": True, "seconds": round(time.perf_counter() - t0, 2)}


@router.post(
    "/api/models/{model_id}/unload",
    summary="Unload a model (admin)",
    response_model=schemas.ModelUnloaded,
    response_model_exclude_unset=True,
    responses=schemas.errors(409),
)
def unload_model(request: Request, model_id: str, who: Annotated[Principal, Depends(admin)]):
    st = request.app.state.tx
    try:
        model_id, _ = st.manager.resolve(model_id)
    except OptionsError as e:  # unknown is 404, as for /load; busy (below) is 409
        raise ApiError(404, str(e), "not_found_error", "model_id", "model_not_found") from e
    try:
        was = st.manager.unload(model_id)
    except OptionsError as e:
        raise ApiError(409, str(e), code="model_busy") from e
    return {"id": model_id, "loaded": False, "was_loaded": was}


@router.post(
    "/api/system/empty-cache",
    summary="Free cached GPU memory (admin; a no-op on CPU)",
    response_model=schemas.CacheEmptied,
    response_model_exclude_unset=True,
)
def empty_cache(request: Request, who: Annotated[Principal, Depends(admin)]):
    return request.app.state.tx.manager.empty_cache()


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@router.get(
    "/api/system",
    summary="Device, models, memory, queue, throughput",
    response_model=schemas.SystemInfo,
    response_model_exclude_unset=True,
)
def system(request: Request, who: Annotated[Principal, Depends(principal)]):
    st = request.app.state.tx
    c = st.manager.choice
    loaded = st.manager.loaded()
    audio_s = sum(m["stats"]["audio_seconds"] for m in loaded)
    uptime = time.time() - st.started
    info = {
        "version": __version__,
        "device": c.label,
        "compute_type": c.compute_type,
        "device_note": c.note,
        "instances": c.instances,
        "threads_per_instance": c.threads,
        "max_batch_size": c.batch_size,
        "max_batch_wait_ms": st.settings.max_batch_wait_ms,
        "pipeline": st.settings.pipeline,  # "reference": one request at a time, for comparison
        # no server paths in the API, not even to admins (README): `tingxie models` shows them
        "models": [{k: v for k, v in m.items() if k != "path"} for m in loaded],
        "memory": {"rss_mb": round(_rss_mb(), 1), "gpu_used_bytes": gpu_memory()},
        "queue": {"jobs_waiting": st.queue.depth(), "interactive_limit": st.settings.interactive_queue_limit},
        "streams": {"open": st.streams, "max": st.settings.max_streams},
        "throughput": {"audio_seconds_total": round(audio_s, 1), "uptime_s": round(uptime, 1)},
        "jobs": st.store.stats(owner=who.owner_filter),  # a user key counts its own jobs only
        "keys_required": keys_required(st),
        "queue_backend": st.settings.queue,
    }
    if st.settings.queue == "celery":  # the embedded queue has no separate workers to list
        workers = st.queue.workers()
        info["workers"] = (
            workers
            if who.admin
            else [{k: v for k, v in w.items() if k not in ("jobs_done", "jobs_failed")} for w in workers]
        )
    return info


@router.post(
    "/api/vad",
    summary="Speech segments of a file under given VAD settings (the VAD page)",
    response_model=schemas.VadPreview,
    response_model_exclude_unset=True,
)
async def vad_preview(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    file: Annotated[UploadFile, File()],
    options: Annotated[TranscriptionOptions, Depends(as_form(only=VAD_FIELDS))],
):
    """The VAD's fields as /v1/audio/transcriptions declares them (request.py). Any other
    field is refused by name: a setting the preview silently ignored would show spans that
    the transcription, given the same setting, would not cut."""
    from .. import audio as audio_mod
    from .. import vad as vad_mod

    unknown = sorted(k for k in (await request.form()).keys() if k not in (*VAD_FIELDS, "file"))
    if unknown:
        raise ApiError(
            400,
            f"unknown field(s) {', '.join(map(repr, unknown))}: /api/vad takes file and {', '.join(VAD_FIELDS)}",
            param=unknown[0],
            code="unknown_field",
        )

    _, opts, _ = options.pipeline()
    assert opts is not None  # `vad` (on/off) is not among the fields taken: on
    data = await file.read()
    if not data:
        raise ApiError(400, f"{file.filename or 'file'}: file is empty (0 bytes)", param="file", code="empty_file")

    def run():
        # streamed: only audio near speech is kept, and the duration limit applies here too
        chunks = audio_mod.decode_chunks(data, max_seconds=request.app.state.tx.settings.max_audio_duration_s)
        x, probs = vad_mod.scan(chunks, opts)
        spans = vad_mod.detect_speech(x, opts, probs=probs)
        return x, probs, spans

    x, probs, spans = await run_in_threadpool(run)
    duration = len(x) / 16000
    speech = sum(s.duration for s in spans)
    return {
        "duration": round(duration, 3),
        "segments": [{"start": round(s.start / 16000, 3), "end": round(s.end / 16000, 3)} for s in spans],
        "count": len(spans),
        "speech_seconds": round(speech, 3),
        "speech_ratio": round(speech / duration, 4) if duration else 0.0,
        "frame_seconds": 512 / 16000,
        "probabilities": [round(float(p), 3) for p in probs],
    }
