"""OpenAI-compatible audio API: the official `openai` client works unchanged.

Synchronous requests run in the scheduler's interactive lane (ahead of batch jobs) and
are kept in the history like every other transcription.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .. import audio as audio_mod
from .. import output
from ..jobs import user_error
from ..engines.base import check_options
from ..options import build_options
from ..scheduler import INTERACTIVE, Overloaded
from ..transcribe import transcribe
from ..types import AudioError, OptionsError, Transcript, VadOptions
from .auth import Principal, principal
from .errors import ApiError
from .uploads import check_filenames, display_name, remove_stored, store_upload

router = APIRouter(tags=["OpenAI-compatible"])

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


def resolve_model(state, model: str | None) -> str:
    try:
        model_id, _ = state.manager.resolve(model)
        return model_id
    except OptionsError as e:
        raise ApiError(400, str(e), "invalid_request_error", "model", "model_not_found") from e


def verbose_json(t: Transcript, task: str, words: bool) -> dict:
    d = {
        "task": task,
        "language": t.language,
        "duration": t.duration,
        "text": t.text,
        "segments": [
            {
                "id": s.id,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": 0.0,
                "no_speech_prob": s.no_speech_prob,
                **({"tags": s.tags} if getattr(s, "tags", None) else {}),  # SenseVoice: emotion, audio event
            }
            for s in t.segments
        ],
    }
    d["warnings"], d["warning_count"] = t.warnings, len(t.warnings)  # e.g. detected speech that gave no text
    if words:
        d["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end} for s in t.segments for w in (s.words or [])]
    return d


def render_response(t: Transcript, fmt: str, task: str, words: bool) -> Response:
    if fmt == "json":
        return JSONResponse({"text": t.text, **({"warnings": t.warnings} if t.warnings else {})})
    if fmt == "verbose_json":
        return JSONResponse(verbose_json(t, task, words))
    media = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}[fmt]
    return PlainTextResponse(output.render(t, "txt" if fmt == "text" else fmt), media_type=f"{media}; charset=utf-8")


async def _transcribe_upload(request: Request, who: Principal, file: UploadFile, task: str, **form) -> Response:
    state = request.app.state.tx
    fmt = form.pop("response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, not {fmt!r}", param="response_format", code="invalid_value")
    granularities = form.pop("timestamp_granularities") or []
    bad = [g for g in granularities if g not in ("word", "segment")]
    if bad:
        raise ApiError(400, f"timestamp_granularities[] takes word and/or segment, not {bad[0]!r}", param="timestamp_granularities[]")
    words = "word" in granularities
    model_id = resolve_model(state, form.pop("model"))
    decode, vad, text = build_options(task=task, word_timestamps=words, initial_prompt=form.pop("prompt"), **form)
    check_options(await run_in_threadpool(state.manager.spec, model_id), decode)  # what the model cannot do: 400, nothing stored
    sched = state.manager.scheduler(model_id)
    if sched.depth()["interactive"] >= state.settings.interactive_queue_limit:
        raise Overloaded(f"{sched.depth()['interactive']} windows already wait in the interactive lane")
    check_filenames([file])
    job_id, path, size = store_upload(file, state.settings.audio_dir)
    try:  # refuse too-long audio and admit by audio seconds before anything is recorded
        seconds = sched.admit_audio(await run_in_threadpool(audio_mod.check_duration, path, sched.max_audio_s))
    except (AudioError, Overloaded) as e:
        remove_stored(path)
        if isinstance(e, AudioError):
            raise ApiError(getattr(e, "status", 400), f"{display_name(file.filename)}: {e}", param="file",
                           code="audio_too_long" if getattr(e, "status", 400) == 413 else "invalid_audio") from e
        raise
    options = {"language": decode.language, "task": task, "beam_size": decode.beam_size, "hotwords": decode.hotwords,
               "initial_prompt": decode.initial_prompt, "word_timestamps": words, "itn": text.itn, "zh_script": text.zh_script,
               "vad": vad is not None}
    try:
        state.store.create_job(id=job_id, owner=who.key_id, kind="sync", filename=display_name(file.filename), audio_path=str(path),
                               size_bytes=size, model=model_id, options=options)
        state.store.claim_job(job_id, "api")
        t = await run_in_threadpool(transcribe, str(path), sched, decode, vad, text, INTERACTIVE, job_id, None, None, True)
    except BaseException as e:
        # A request answered with an error (over capacity, bad audio, a crash) was refused,
        # not accepted: it leaves no history row and no stored audio.
        _forget(state, job_id, path)
        if isinstance(e, AudioError):
            name = display_name(file.filename)
            reason = user_error(e, path, name)
            message = reason if name in reason else f"{name}: {reason}"
            raise ApiError(getattr(e, "status", 400), message, param="file", code="invalid_audio") from e
        raise
    finally:
        sched.release_audio(seconds)
    state.store.finish_job(job_id, t.to_dict(), t.text, t.language, t.duration, t.processing_time)
    if t.duration:
        state.metrics.rtf.observe(t.processing_time / t.duration)
    resp = render_response(t, fmt, task, words)
    resp.headers["X-Tingxie-Job"] = job_id
    return resp


def _forget(state, job_id: str, path) -> None:
    state.store.delete_job(job_id)
    remove_stored(path)


def _form_fields():
    """The OpenAI fields plus tingxie's extensions, shared by both endpoints."""

    async def fields(
        file: Annotated[UploadFile, File(description="audio or video file")],
        model: Annotated[str, Form()] = "whisper-base",
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
        temperature: Annotated[float, Form()] = 0.0,
        timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
        hotwords: Annotated[str | None, Form(description="comma-separated words that bias recognition")] = None,
        itn: Annotated[bool, Form(description="inverse text normalisation (numbers as digits)")] = True,
        zh_script: Annotated[str, Form(description="hans | hant | keep")] = "hans",
        beam_size: Annotated[int, Form()] = 5,
        vad: Annotated[bool, Form()] = True,
        vad_threshold: Annotated[float, Form()] = VadOptions.threshold,
        vad_min_silence_ms: Annotated[int, Form()] = VadOptions.min_silence_ms,
        vad_speech_pad_ms: Annotated[int, Form()] = VadOptions.speech_pad_ms,
        vad_max_segment_s: Annotated[float, Form()] = VadOptions.max_speech_s,
    ) -> dict:
        return dict(
            file=file, model=model, language=language, prompt=prompt, response_format=response_format, temperature=temperature,
            timestamp_granularities=timestamp_granularities, hotwords=hotwords, itn=itn, zh_script=zh_script, beam_size=beam_size,
            vad=vad, vad_threshold=vad_threshold, vad_min_silence_ms=vad_min_silence_ms, vad_speech_pad_ms=vad_speech_pad_ms,
            vad_max_segment_s=vad_max_segment_s,
        )

    return fields


@router.post("/v1/audio/transcriptions", summary="Transcribe audio (OpenAI-compatible)")
async def transcriptions(request: Request, form: Annotated[dict, Depends(_form_fields())], who: Annotated[Principal, Depends(principal)]):
    file = form.pop("file")
    return await _transcribe_upload(request, who, file, "transcribe", **form)


@router.post("/v1/audio/translations", summary="Translate audio to English (OpenAI-compatible)")
async def translations(request: Request, form: Annotated[dict, Depends(_form_fields())], who: Annotated[Principal, Depends(principal)]):
    file = form.pop("file")
    form["language"] = form.get("language")
    return await _transcribe_upload(request, who, file, "translate", **form)


@router.get("/v1/models", summary="List models (OpenAI-compatible)")
def list_models(request: Request, who: Annotated[Principal, Depends(principal)]):
    state = request.app.state.tx
    data = [
        {"id": m.id, "object": "model", "created": int(time.time()), "owned_by": "tingxie",
         **{k: v for k, v in m.to_dict(with_path=False).items() if k in ("family", "languages", "capabilities", "ready", "error")}}
        for m in state.manager.models()
    ]
    return {"object": "list", "data": data}
