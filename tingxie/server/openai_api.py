"""OpenAI-compatible audio API: the official `openai` client works unchanged.

Synchronous requests run in the scheduler's interactive lane (ahead of batch jobs) and
are kept in the history like every other transcription.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from .. import audio as audio_mod
from .. import diarize as diarize_mod
from .. import output
from ..engines.base import WindowResult, check_options
from ..jobs import finish_with, open_sync_job, user_error
from ..request import TranscriptionOptions, as_form
from ..scheduler import INTERACTIVE, Overloaded
from ..text import is_cjk
from ..transcribe import finish_segments, transcribe
from ..types import AudioError, DecodeOptions, OptionsError, TextOptions, Transcript
from . import schemas
from .auth import Principal, principal
from .errors import ApiError, error_body
from .uploads import check_filenames, display_name, remove_stored, store_upload

log = logging.getLogger(__name__)

router = APIRouter(tags=["OpenAI-compatible"])

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
STREAM_FORMATS = ("json", "text")  # what OpenAI streams


def resolve_model(state, model: str | None) -> str:
    try:
        model_id, _ = state.manager.resolve(model)
        return model_id
    except OptionsError as e:
        raise ApiError(400, str(e), "invalid_request_error", "model", "model_not_found") from e


def compression_ratio(text: str) -> float:
    """Whisper's measure of a looping text (engines/whisper/engine.compression_ratio, without
    importing the CTranslate2 engine here)."""
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


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
                # avg_logprob and temperature are left out: the engine scores whole
                # windows (one value for all their segments) and does not record which
                # fallback temperature gave a segment.
                "compression_ratio": round(compression_ratio(s.text), 4),
                "no_speech_prob": s.no_speech_prob,
                **({"tags": s.tags} if getattr(s, "tags", None) else {}),  # SenseVoice: emotion, audio event
                **({"channel": s.channel} if s.channel else {}),  # channels=split
                **({"speaker": s.speaker} if s.speaker else {}),  # diarize
            }
            for s in t.segments
        ],
    }
    if t.channels:
        d["channels"] = [asdict(c) for c in t.channels]
    if t.speakers:
        d["speakers"] = [asdict(sp) for sp in t.speakers]
    d["warnings"], d["warning_count"] = t.warnings, len(t.warnings)  # e.g. detected speech that gave no text
    if words:
        d["words"] = [
            {"word": w.word.strip(), "start": w.start, "end": w.end}
            for s in t.segments
            for w in (s.words or [])
            if w.word.strip()
        ]
    return d


def diarized_json(t: Transcript) -> dict:
    """OpenAI's `diarized_json` (TranscriptionDiarized): the plain text, and segments
    with string ids and the speaker's name (its id, SPEAKER_1…, until renamed)."""
    said = [s for s in t.segments if s.text.strip()]
    return {
        "task": "transcribe",
        "duration": t.duration,
        "text": " ".join(s.text.strip() for s in said)
        if t.language not in ("zh", "ja", "yue")
        else "".join(s.text.strip() for s in said),
        "segments": [
            {
                "type": "transcript.text.segment",
                "id": f"seg_{s.id}",
                "start": s.start,
                "end": s.end,
                "text": s.text.strip(),
                "speaker": t.speaker_name(s.speaker),
            }
            for s in said
        ],
        "speakers": [asdict(sp) for sp in t.speakers],
        "usage": {"type": "duration", "seconds": t.duration},
    }


def render_response(t: Transcript, fmt: str, task: str, words: bool) -> Response:
    if fmt == "diarized_json":
        return JSONResponse(diarized_json(t))
    if fmt == "json":
        return JSONResponse({"text": t.text, **({"warnings": t.warnings} if t.warnings else {})})
    if fmt == "verbose_json":
        return JSONResponse(verbose_json(t, task, words))
    media = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}[fmt]
    return PlainTextResponse(output.render(t, "txt" if fmt == "text" else fmt), media_type=f"{media}; charset=utf-8")


def _run(path, sched, decode, vad, text, job_id: str, **more) -> Transcript:
    """A request's transcription, the one way this API runs it: in the interactive
    lane, owned by its job, admitted by the scheduler's capacity (blocking)."""
    return transcribe(str(path), sched, decode, vad, text, INTERACTIVE, job_id, check_capacity=True, **more)


async def _transcribe_upload(request: Request, who: Principal, file: UploadFile, task: str, **form) -> Response:
    state = request.app.state.tx
    fmt = form.pop("response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(
            400,
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, not {fmt!r}",
            param="response_format",
            code="invalid_value",
        )
    granularities = form.pop("timestamp_granularities") or []
    bad = [g for g in granularities if g not in ("word", "segment")]
    if bad:
        raise ApiError(
            400,
            f"timestamp_granularities[] takes word and/or segment, not {bad[0]!r}",
            param="timestamp_granularities[]",
        )
    words = "word" in granularities
    stream = bool(form.pop("stream", False))
    if stream and fmt not in STREAM_FORMATS:
        raise ApiError(
            400,
            f"stream=true takes response_format json or text, not {fmt!r}",
            param="response_format",
            code="invalid_value",
        )
    if stream and form["opts"].channels == "split":
        # the deltas are one text in window order; split channels are a dialogue in time order
        raise ApiError(400, "stream=true takes channels=mix, not 'split'", param="channels", code="invalid_value")
    references = form.pop("known_speaker_references", None)
    # names with references: those clips; names alone: the caller's enrolled voices (below)
    known = known_speakers(form["opts"].known_speaker_names, references) if references else ()
    if known:
        form["opts"] = form["opts"].model_copy(update={"diarize": True})
    if fmt == "diarized_json" or known or form["opts"].known_speaker_names:
        if form["opts"].channels == "split":
            raise ApiError(400, "diarized_json takes channels=mix, not 'split'", param="channels", code="invalid_value")
        if task != "transcribe":
            raise ApiError(400, "diarized_json is for transcriptions", param="response_format", code="invalid_value")
        form["opts"] = form["opts"].model_copy(update={"diarize": True})
    if stream and form["opts"].diarize:
        # speakers are known only once the whole file has been heard
        raise ApiError(400, "stream=true cannot diarize; send stream=false", param="stream", code="invalid_value")
    include = form.pop("include", None) or []
    if include:
        # Only Whisper's score of a whole window is known, not the log probability of each token.
        raise ApiError(
            400,
            f"include[]={include[0]!r} is not supported: this server returns no token log probabilities",
            param="include[]",
            code="unsupported_value",
        )
    model_id = resolve_model(state, form.pop("model"))
    opts = form.pop("opts").model_copy(update={"task": task, "word_timestamps": words})
    decode, vad, text = opts.pipeline()
    check_options(
        await run_in_threadpool(state.manager.spec, model_id), decode
    )  # what the model cannot do: 400, nothing stored
    if opts.diarize:
        from ..engines.diarization import available

        available(state.settings.models_dir)  # no models: 400 naming how to add them, nothing stored
        if opts.known_speaker_names and not known:  # an unknown name: 400 naming it, nothing stored
            known, _ = await run_in_threadpool(
                diarize_mod.enrolled, state.store, who.key_id, opts.known_speaker_names, state.settings.models_dir
            )
    sched = state.manager.scheduler(model_id)
    if sched.depth()["interactive"] >= state.settings.interactive_queue_limit:
        raise Overloaded(f"{sched.depth()['interactive']} windows already wait in the interactive lane")
    check_filenames([file])
    job_id, path, size = store_upload(file, state.settings.audio_dir)
    try:  # refuse too-long audio and admit by audio seconds before anything is recorded
        split = opts.channels == "split"
        seconds = sched.admit_audio(await run_in_threadpool(audio_mod.check_duration, path, sched.max_audio_s, split))
    except (AudioError, Overloaded) as e:
        remove_stored(path)
        raise _refusal(e, path, file.filename) from e
    options = opts.stored()
    try:
        state.node.take(job_id)  # in this server's hands until it ends (reaper.py)
        open_sync_job(
            state.store,
            job_id,
            state.node.owner,
            owner=who.key_id,
            kind="sync",
            filename=display_name(file.filename),
            audio_path=str(path),
            size_bytes=size,
            model=model_id,
            options=options,
        )
    except BaseException as e:
        sched.release_audio(seconds)
        _forget(state, job_id, path)
        raise _refusal(e, path, file.filename) from e
    if stream:
        return await _stream(
            state, job_id, path, file.filename, sched, decode, vad, text, lambda: sched.release_audio(seconds)
        )
    try:
        t = await run_in_threadpool(
            _run,
            path,
            sched,
            decode,
            vad,
            text,
            job_id,
            channels=opts.channels,
            diarize=replace(d, known=known) if (d := opts.diarization()) else None,
        )
    except BaseException as e:
        # A request answered with an error (over capacity, bad audio, a crash) was refused,
        # not accepted: it leaves no history row and no stored audio.
        _forget(state, job_id, path)
        raise _refusal(e, path, file.filename) from e
    finally:
        sched.release_audio(seconds)
    _finish(state, job_id, t)
    resp = render_response(t, fmt, task, words)
    resp.headers["X-Tingxie-Job"] = job_id
    return resp


def _refusal(e: BaseException, path, filename: str | None) -> BaseException:
    """The error a failed transcription answers with: bad audio is the caller's 400."""
    if isinstance(e, AudioError):
        name = display_name(filename)
        reason = user_error(e, path, name)
        message = reason if name in reason else f"{name}: {reason}"
        status = getattr(e, "status", 400)
        return ApiError(status, message, param="file", code="audio_too_long" if status == 413 else "invalid_audio")
    return e


def _finish(state, job_id: str, t: Transcript) -> None:
    """Keep the result in the history and let the request go. A result the database will
    not take (a full disk) is still the caller's answer; the row stays held by this
    server, out of its hands, so the reaper runs it again once writes succeed."""
    try:
        finish_with(state.store, job_id, t)
    except Exception as e:
        log.warning("job %s: result not saved (%s); it will run again", job_id, type(e).__name__)
    finally:
        state.node.drop(job_id)
    if t.duration:
        state.metrics.rtf.observe(t.processing_time / t.duration)


class Deltas:
    """Windows finished in any order → the transcript's text in order, as deltas.

    Each delta is what the file's text stage (finish_segments) gives for the windows
    finished so far, from the first window after those all sent; the last segment is held
    back, as punctuation reads the pause after it. So the deltas are the final text's
    segments as they will be, and the remainder at the end completes it exactly."""

    def __init__(self, decode: DecodeOptions, text: TextOptions, emit: Callable[[str], None]):
        self.decode, self.text, self.emit = decode, text, emit
        self.results: dict[int, WindowResult] = {}
        self.ready = 0  # windows 0..ready-1 are finished
        self.open = 0  # the first window with a segment not yet sent
        self.last: tuple[int, int] = (-1, -1)  # (window, segment) of the last segment sent
        self.sent = ""
        self.lock = threading.Lock()

    def language(self) -> str:
        return self.decode.language or (self.results[0].language if 0 in self.results else "")

    def add(self, index: int, result: WindowResult) -> None:
        with self.lock:
            self.results[index] = result
            if index != self.ready:
                return
            while self.ready in self.results:
                self.ready += 1
            delta = self._advance()
            if delta:
                self.sent += delta
                self.emit(delta)

    def _advance(self) -> str:
        lo = max(0, self.open - 1)  # one window of context before the first unsent one
        copies = []
        for wi in range(lo, self.ready):
            r = copy.copy(self.results[wi])
            r.segments = []
            for k, seg in enumerate(self.results[wi].segments):
                c = copy.deepcopy(seg)
                c._key = (wi, k)  # type: ignore[attr-defined]
                r.segments.append(c)
            copies.append(r)
        language = self.language()
        segments = finish_segments(copies, language or "en", self.text)
        sep = "" if is_cjk(language) else " "
        delta = ""
        for seg in segments[:-1]:
            key = seg._key  # type: ignore[attr-defined]
            if key <= self.last:
                continue
            self.last = key
            if seg.text.strip():
                delta += (sep if self.sent or delta else "") + seg.text.strip()
        if segments:
            self.open = segments[-1]._key[0]  # type: ignore[attr-defined]
        return delta

    def remainder(self, final: str) -> str:
        with self.lock:
            if not final.startswith(self.sent):
                log.warning("streamed text differs from the final text")  # no content in logs
                return ""
            return final[len(self.sent) :]


_tasks: set[asyncio.Task] = set()  # running streamed transcriptions (kept from garbage collection)


def _sse(event: dict) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


async def _stream(
    state, job_id: str, path, filename: str | None, sched, decode, vad, text, release: Callable[[], None]
) -> Response:
    """OpenAI's server-sent events: transcript.text.delta as windows finish, in order, then
    transcript.text.done. Errors before the first delta are plain JSON errors; the job is
    finished even when the caller goes away mid-stream."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def emit(delta: str) -> None:  # called from the pipeline's threads
        loop.call_soon_threadsafe(queue.put_nowait, ("delta", delta))

    deltas = Deltas(decode, text, emit)

    async def work() -> None:
        try:
            t = await run_in_threadpool(_run, path, sched, decode, vad, text, job_id, on_window=deltas.add)
        except BaseException as e:
            _forget(state, job_id, path)
            queue.put_nowait(("error", e))
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        finally:
            release()  # the admitted audio seconds, whether the caller stayed or not
        _finish(state, job_id, t)
        queue.put_nowait(("done", t))

    task = asyncio.create_task(work())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    first = await queue.get()
    if first[0] == "error":
        raise _refusal(first[1], path, filename) from first[1]

    async def events():
        item = first
        while True:
            kind, value = item
            if kind == "delta":
                yield _sse({"type": "transcript.text.delta", "delta": value})
            elif kind == "done":
                rest = deltas.remainder(value.text)
                if rest:
                    yield _sse({"type": "transcript.text.delta", "delta": rest})
                yield _sse({"type": "transcript.text.done", "text": value.text})
                return
            else:
                yield _sse(_stream_error(_refusal(value, path, filename)))
                return
            item = await queue.get()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"X-Tingxie-Job": job_id, "Cache-Control": "no-cache"}
    )


def _stream_error(e: BaseException) -> dict:
    """An error after the stream began: OpenAI's error event (the client raises it)."""
    if isinstance(e, ApiError):
        return error_body(e.message, e.type, e.param, e.code)
    if isinstance(e, Overloaded):
        return error_body(f"server busy: {e}; retry shortly", "server_busy", None, "overloaded")
    if isinstance(e, OptionsError):
        return error_body(str(e), "invalid_request_error", None, "invalid_option")
    log.error("streamed transcription failed", exc_info=e)
    return error_body("transcription failed", "server_error", None, "internal_error")


def _forget(state, job_id: str, path) -> None:
    """A refused request leaves nothing: its audio first (a file never depends on the
    database), then its row (a full disk may refuse even the delete: the row is then
    no one's, and the reaper runs or fails it)."""
    state.node.drop(job_id)
    remove_stored(path)
    try:
        state.store.delete_job(job_id)
    except Exception as e:
        log.warning("refused request %s: row not deleted (%s)", job_id, type(e).__name__)


def _form_fields():
    """OpenAI's own fields; every transcription option (OpenAI's language, prompt and
    temperature, and tingxie's extensions) comes from the request schema."""

    async def fields(
        opts: Annotated[TranscriptionOptions, Depends(as_form(exclude=("task", "word_timestamps")))],
        file: Annotated[UploadFile, File(description="audio or video file")],
        model: Annotated[
            str | None, Form(description="a served model id; absent: the configured default (TINGXIE_MODEL)")
        ] = None,
        response_format: Annotated[str, Form()] = "json",
        timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
        stream: Annotated[
            bool,
            Form(description="server-sent events: transcript.text.delta as windows finish, then transcript.text.done"),
        ] = False,
        include: Annotated[list[str] | None, Form(alias="include[]")] = None,
        known_speaker_references: Annotated[
            list[str] | None,
            Form(
                alias="known_speaker_references[]",
                description="diarize: 2–10 s of each named speaker's voice, as data: URLs (audio/wav, mp3…)",
            ),
        ] = None,
    ) -> dict:
        return dict(
            opts=opts,
            file=file,
            model=model,
            response_format=response_format,
            timestamp_granularities=timestamp_granularities,
            stream=stream,
            include=include,
            known_speaker_references=known_speaker_references,
        )

    return fields


def known_speakers(names: list[str] | None, references: list[str] | None) -> tuple[tuple[str, Any], ...]:
    """OpenAI's known_speaker_names[] with known_speaker_references[] (data: URLs of
    audio), decoded to 16 kHz; a 400 naming what is wrong. The names come validated
    (count, distinct, trimmed: TranscriptionOptions.known_speaker_names)."""
    import base64
    import binascii

    names, references = names or [], references or []
    if not names and not references:
        return ()
    if len(names) != len(references):
        raise ApiError(
            400,
            f"known_speaker_names[] has {len(names)} names but known_speaker_references[] {len(references)} references",
            param="known_speaker_references[]",
        )
    out = []
    for name, ref in zip(names, references, strict=True):
        head, _, data = ref.partition(",")
        if not head.startswith("data:") or ";base64" not in head:
            raise ApiError(
                400,
                f"the reference of {name[:40]!r} must be a data: URL (data:audio/wav;base64,…)",
                param="known_speaker_references[]",
            )
        try:
            audio = audio_mod.decode(base64.b64decode(data, validate=True), max_seconds=diarize_mod.MAX_ENROL_S)
        except (binascii.Error, ValueError, AudioError) as e:
            raise ApiError(
                400, f"the reference of {name[:40]!r} is not decodable audio: {e}", param="known_speaker_references[]"
            ) from e
        out.append((name, audio))
    return tuple(out)


@router.post(
    "/v1/audio/transcriptions",
    summary="Transcribe audio (OpenAI-compatible)",
    response_class=Response,
    responses=schemas.TRANSCRIPTION_RESPONSES,
)
async def transcriptions(
    request: Request, form: Annotated[dict, Depends(_form_fields())], who: Annotated[Principal, Depends(principal)]
):
    file = form.pop("file")
    return await _transcribe_upload(request, who, file, "transcribe", **form)


@router.post(
    "/v1/audio/translations",
    summary="Translate audio to English (OpenAI-compatible)",
    response_class=Response,
    responses=schemas.TRANSCRIPTION_RESPONSES,
)
async def translations(
    request: Request, form: Annotated[dict, Depends(_form_fields())], who: Annotated[Principal, Depends(principal)]
):
    file = form.pop("file")
    return await _transcribe_upload(request, who, file, "translate", **form)


@router.get(
    "/v1/models",
    summary="List models (OpenAI-compatible)",
    response_model=schemas.OpenAIModelList,
    response_model_exclude_unset=True,
)
def list_models(request: Request, who: Annotated[Principal, Depends(principal)]):
    state = request.app.state.tx
    data = [
        {
            "id": m.id,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "tingxie",
            **{
                k: v
                for k, v in m.to_dict(with_path=False).items()
                if k in ("family", "languages", "capabilities", "ready", "error")
            },
        }
        for m in state.manager.models()
    ]
    return {"object": "list", "data": data}
