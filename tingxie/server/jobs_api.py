"""Jobs: asynchronous and batch transcription, and the history.

`POST /api/jobs` answers only after every upload is on disk and its row is committed, so
an acknowledged job survives a crash; the queue picks it up again at the next start.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import tempfile
import unicodedata
import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import IO, Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Body, Depends, File, Form, Header, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse

from .. import audio as audio_mod
from .. import output
from ..audio import AudioTooLong
from ..engines.base import check_options
from ..jobs import check_callback_url
from ..request import TranscriptionOptions, as_form
from ..store import STATES, JobFilter
from ..types import AudioError, OptionsError, Transcript
from . import schemas
from .auth import Principal, principal
from .errors import ApiError, public_job
from .openai_api import resolve_model
from .uploads import check_filenames, display_name, remove_stored, store_upload

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["jobs and history"])

# The request a job's callback_url receives (docs/webhooks.md), documented in OpenAPI.
callbacks = APIRouter()


@callbacks.post(
    "{$request.body#/callback_url}",
    name="job_ended",
    summary="A job ended (done or failed): POSTed to its callback_url, at least once",
    status_code=204,
    response_class=Response,
    responses={"2XX": {"description": "received; any other answer (or none) is retried with backoff"}},
)
def job_ended(
    body: schemas.CallbackBody,
    webhook_id: Annotated[str, Header(description="one per event: a redelivery repeats it, drop duplicates")],
    webhook_timestamp: Annotated[str, Header(description="when this attempt was sent, Unix seconds")],
    webhook_signature: Annotated[
        str, Header(description='"v1," + base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}"')
    ],
) -> None:
    """Standard Webhooks: verify the signature with the secret from `tingxie webhooks
    secret`, then handle each webhook-id once."""


def _owned(state, who: Principal, job_id: str) -> dict:
    job = state.store.get_job(job_id)
    if job is None or (who.owner_filter is not None and job["owner"] != who.owner_filter):
        raise ApiError(404, f"no job {job_id!r}", "not_found_error", "id", "job_not_found")
    return job


def check_queue_room(state, who: Principal, adding: int) -> None:
    """One key may hold at most `max_queued_jobs_per_key` queued + running jobs, so it
    cannot fill the queue for everyone; a request that would exceed it is refused whole."""
    limit = state.settings.max_queued_jobs_per_key
    if limit <= 0:
        return
    held = state.store.count_unfinished(owner=who.key_id)
    if held + adding > limit:
        advice = "send the files in smaller requests" if adding > limit else "retry when some have finished"
        raise ApiError(
            429,
            f"too many unfinished jobs for this key: {held} queued or running, {adding} more requested, the limit is {limit}; {advice}",
            "rate_limit_error",
            "files",
            "too_many_jobs",
            headers={"Retry-After": "30"},
        )


def _since(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise ApiError(400, f"{name} must be an ISO-8601 date or time, not {value!r}", param=name) from e


@router.post(
    "/jobs",
    status_code=202,
    summary="Submit one or many files for transcription",
    response_model=schemas.JobsCreated,
    response_model_exclude_unset=True,
    responses=schemas.errors(429),
    callbacks=callbacks.routes,
)
async def create_jobs(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    files: Annotated[list[UploadFile], File(description="one or more audio/video files")],
    opts: Annotated[TranscriptionOptions, Depends(as_form())],
    model: Annotated[
        str | None, Form(description="a served model id; absent: the configured default (TINGXIE_MODEL)")
    ] = None,
    batch_id: Annotated[str | None, Form(description="add to an existing batch")] = None,
    callback_url: Annotated[
        str | None,
        Form(description="POSTed {id, state, error, result_url}, signed, when each job ends (docs/webhooks.md)"),
    ] = None,
):
    state = request.app.state.tx
    model_id = resolve_model(state, model)
    options = opts.stored()
    decode, _, _ = opts.pipeline()
    check_options(await run_in_threadpool(state.manager.spec, model_id), decode)  # and what the model cannot do
    if opts.diarize:
        from ..engines.diarization import available

        available(state.settings.models_dir)  # no models: 400 naming how to add them
        if opts.known_speaker_names:  # enrolled by this key, or a 400 naming the name; looked up again when run
            from ..diarize import enrolled

            await run_in_threadpool(
                enrolled, state.store, who.key_id, opts.known_speaker_names, state.settings.models_dir
            )
    if callback_url:
        try:
            await run_in_threadpool(
                check_callback_url, callback_url, state.settings.callback_allow, state.settings.port
            )
        except OptionsError as e:
            raise ApiError(400, str(e), param="callback_url", code="invalid_callback_url") from e
    if not files:
        raise ApiError(400, "no files uploaded", param="files")
    check_filenames(files)
    check_queue_room(state, who, len(files))  # no await from here on: the check and the inserts are one step
    batch_id = batch_id or (uuid.uuid4().hex if len(files) > 1 else None)
    jobs = []
    stored = []
    try:
        for f in files:
            job_id, path, size = store_upload(f, state.settings.audio_dir)
            stored.append((job_id, f, path, size))
        seconds: dict[str, float] = {}
        for job_id, f, path, _ in stored:  # a file over the duration limit refuses the request whole
            try:
                # known from the start, so a batch's progress and time left count audio seconds
                seconds[job_id] = audio_mod.check_duration(path, state.settings.max_audio_duration_s)
            except AudioTooLong as e:
                raise ApiError(413, f"{display_name(f.filename)}: {e}", param="files", code="audio_too_long") from e
            except AudioError:
                pass  # other damage fails that file's job, with its reason
        for job_id, f, path, size in stored:
            state.store.create_job(
                id=job_id,
                owner=who.key_id,
                kind="batch_item" if batch_id else "file",
                batch_id=batch_id,
                filename=display_name(f.filename),
                audio_path=str(path),
                size_bytes=size,
                duration=round(seconds[job_id], 3) if seconds.get(job_id) else None,
                model=model_id,
                options=options,
                callback_url=callback_url,
            )
            jobs.append({"id": job_id, "filename": display_name(f.filename), "state": "queued"})
    except BaseException:  # one bad file (or a failed insert) refuses the request whole: nothing stays
        for _, _, path, _ in stored:  # files first: a full disk may refuse even the deletes below
            remove_stored(path)
        for j in jobs:
            try:
                state.store.delete_job(j["id"])
            except Exception:  # its audio is gone: if it runs, it fails naming that
                log.warning("refused upload: job row %s not deleted", j["id"])
        raise
    for j in jobs:
        state.queue.submit(j["id"])
    return {"batch_id": batch_id, "jobs": jobs}


def job_filter(
    who: Annotated[Principal, Depends(principal)],
    q: str | None = None,
    state: str | None = None,
    kind: str | None = None,
    batch_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> JobFilter:
    """The history filters, the same for a page and for an export; a key sees only its
    own jobs (the admin key all)."""
    return JobFilter(who.owner_filter, q or None, state, kind, batch_id, _since(since, "since"), _since(until, "until"))


@router.get(
    "/jobs",
    summary="History: list, search and page through jobs",
    response_model=schemas.JobPage,
    response_model_exclude_unset=True,
)
def list_jobs(
    request: Request,
    where: Annotated[JobFilter, Depends(job_filter)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
):
    # a bad state, kind or cursor raises OptionsError in the store: the app answers 400 naming it
    store = request.app.state.tx.store
    rows, nxt = store.list_jobs(where, limit=limit, cursor=cursor)
    jobs = [public_job(r) for r in rows]
    if where.q:  # each hit shows where the searched words are, not the transcript's start
        texts = store.job_texts([j["id"] for j in jobs])
        for j in jobs:
            j["snippet"] = snippet(texts.get(j["id"]) or "", where.q)
    return {"jobs": jobs, "next_cursor": nxt}


SNIPPET_BEFORE, SNIPPET_AFTER = 24, 56


def snippet(text: str, q: str) -> dict | None:
    """The first searched term in its context: {before, match, after} (the UI marks
    `match`), or None when only the file name matched. Search is case-insensitive."""
    low = text.lower()
    hits = [(i, len(t)) for t in q.split() if (i := low.find(t.lower())) >= 0]
    if not hits:
        return None
    i, n = min(hits)
    a, b = max(0, i - SNIPPET_BEFORE), min(len(text), i + n + SNIPPET_AFTER)
    return {
        "before": ("…" if a else "") + text[a:i],
        "match": text[i : i + n],
        "after": text[i + n : b] + ("…" if b < len(text) else ""),
    }


# An export's zip and its CSV summary stay in memory up to this size, then go to an
# unnamed temporary file (gone when closed): a thousand long transcripts cost disk, not RAM.
EXPORT_SPOOL_BYTES = 16 << 20


def _export_zip(
    load: Callable[[str], dict | None], job_ids: list[str], lang: str = "en", tz: tzinfo | None = None
) -> IO[bytes]:
    """The export as a zip, read back from the start. Jobs are loaded one at a time by
    `load` (None: deleted meanwhile, left out; it may raise to refuse the export), so
    memory holds one job's result however many are exported."""
    out = tempfile.SpooledTemporaryFile(max_size=EXPORT_SPOOL_BYTES)
    try:
        _write_export(out, load, job_ids, lang, tz)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: a leading = + - @ (or tab, CR) would make
    Excel or LibreOffice evaluate a file name or a transcript as a formula — also in its
    full-width or other compatibility form (＝1+1), which spreadsheets fold to ASCII."""
    first = unicodedata.normalize("NFKC", text[:4])[:1]
    return "'" + text if first in ("=", "+", "-", "@", "\t", "\r") else text


# What Windows refuses in a file name (besides control characters), and the device names
# it reserves whatever the extension ("con.txt" too; COM¹-³ and LPT¹-³ count as digits).
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_WINDOWS_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[1-9¹²³]|lpt[1-9¹²³])")
_STEM_CHARS = 150  # entry names well within every file system's 255


def _entry_stem(filename: str, fallback: str) -> str:
    """A zip entry stem that unpacks as itself on Windows, macOS and Linux: NFC (macOS
    would store a decomposed name as one anyway), no character Windows refuses, no
    trailing dot or space, no reserved device name, not hidden."""
    stem = unicodedata.normalize("NFC", Path(filename).stem)
    stem = _WINDOWS_FORBIDDEN.sub("_", stem).lstrip(". ")[:_STEM_CHARS].rstrip(". ")
    if _WINDOWS_RESERVED.fullmatch(stem.split(".")[0].rstrip(" ")):
        stem = "_" + stem
    return stem or fallback


def _unique(stem: str, used: set[str]) -> str:
    """A zip entry stem not used yet in this export ("a", "a-2", … even when a file is
    itself called "a-2"): entries with one name overwrite each other when unpacked, and
    on Windows and macOS "A" is "a" and a composed "é" is a decomposed one."""

    def key(name: str) -> str:
        return unicodedata.normalize("NFC", name).casefold()

    name, n = stem, 1
    while key(name) in used:
        n += 1
        name = f"{stem}-{n}"
    used.add(key(name))
    return name


# summary.csv in the reader's language: the web UI asks with `lang` (its own choice); other
# callers get English unless Accept-Language prefers Chinese. The reasons are the stable
# phrases of tingxie/audio.py and tingxie/jobs.py (the UI's i18n.js matches the same ones).
_CSV_HEADER = {
    "en": ["id", "filename", "state", "language", "duration_s", "processing_s", "error", "created_at", "text"],
    "zh": ["编号", "文件名", "状态", "语言", "时长（秒）", "处理用时（秒）", "错误", "创建时间", "文本"],
}
_ZH_STATES = {"queued": "排队", "running": "识别中", "done": "完成", "failed": "失败", "cancelled": "已取消"}
_ZH_REASONS = [
    (audio_mod.NOT_AUDIO, "不是音频文件，或格式无法读取。"),
    (audio_mod.CORRUPT, "音频已损坏或不完整。"),
    (audio_mod.EMPTY, "文件为空（0 字节）。"),
    ("no audio stream", "没有音轨（是否为无声视频？）。"),
    (audio_mod.NO_SAMPLES, "文件中没有音频采样。"),
    (audio_mod.NOT_FOUND, "找不到文件。"),
    ("audio file is missing from storage", "上传的音频在存储中丢失。"),
    ("audio is", "音频超过了服务器允许的最长时长。"),
    ("internal error", "服务器内部错误，重试可能有效。"),
    ("infrastructure unavailable", "服务器内部错误，重试可能有效。"),
]


def _export_lang(lang: str | None, accept: str | None) -> str:
    if lang:
        if lang not in _CSV_HEADER:
            raise ApiError(400, f"lang must be one of {', '.join(_CSV_HEADER)}, not {lang!r}", param="lang")
        return lang
    first = (accept or "").split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def _export_tz(tz: str | None) -> tzinfo | None:
    """The reader's time zone (an IANA name, as the browser's Intl gives it); None: the server's local time."""
    if not tz:
        return None
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ApiError(400, f"unknown time zone {tz!r}; use an IANA name such as Asia/Shanghai", param="tz") from e


def _export_error(error: str, lang: str) -> str:
    if lang != "zh" or not error:
        return error
    low = error.lower()
    return next((zh for phrase, zh in _ZH_REASONS if phrase in low), f"错误：{error}")


def _export_time(at: datetime | str, tz: tzinfo | None) -> str:
    """Local time, as a spreadsheet reads it: 2026-03-12 15:30:05."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _write_export(
    out: IO[bytes], load: Callable[[str], dict | None], job_ids: list[str], lang: str = "en", tz: tzinfo | None = None
) -> None:
    with tempfile.SpooledTemporaryFile(max_size=EXPORT_SPOOL_BYTES, mode="w+", encoding="utf-8", newline="") as summary:
        w = csv.writer(summary)
        w.writerow(_CSV_HEADER[lang])
        used: set[str] = set()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for job_id in job_ids:
                j = load(job_id)
                if not j:
                    continue
                w.writerow(
                    [
                        j["id"],
                        _cell(j["filename"]),
                        _ZH_STATES.get(j["state"], j["state"]) if lang == "zh" else j["state"],
                        j.get("language") or "",
                        j.get("duration") or "",
                        j.get("processing_time") or "",
                        _cell(_export_error(j.get("error") or "", lang)),
                        _export_time(j["created_at"], tz),
                        _cell((j.get("text") or "")[:32000]),
                    ]
                )
                if j["state"] != "done" or not j.get("result"):
                    continue
                stem = _unique(_entry_stem(j["filename"], j["id"]), used)
                t = Transcript.from_dict(j["result"])
                for fmt in ("txt", "srt", "json"):
                    z.writestr(f"{stem}.{fmt}", output.render(t, fmt))
            summary.seek(0)
            with z.open("summary.csv", "w") as f:
                f.write("\ufeff".encode())  # a BOM: Excel then reads the CSV as UTF-8
                while chunk := summary.read(1 << 16):
                    f.write(chunk.encode("utf-8"))


def _read_and_close(f: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := f.read(1 << 16):
            yield chunk
    finally:
        f.close()


@router.get(
    "/jobs/export",
    summary="Zip of results (txt, srt, json per file) and a CSV summary",
    response_class=Response,
    responses=schemas.EXPORT_RESPONSES | schemas.errors(404),
)
def export_jobs(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    where: Annotated[JobFilter, Depends(job_filter)],
    ids: str | None = Query(None, description="comma-separated job ids; otherwise the filters"),
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    lang: str | None = Query(None, description="summary.csv's language: en or zh (default: Accept-Language)"),
    tz: str | None = Query(None, description="summary.csv's times in this IANA time zone (default: the server's)"),
):
    st = request.app.state.tx
    language, zone = _export_lang(lang, request.headers.get("accept-language")), _export_tz(tz)
    if ids:
        job_ids = [i.strip() for i in ids.split(",") if i.strip()]
        # another's id: 404, no export
        data = _export_zip(lambda job_id: _owned(st, who, job_id), job_ids, language, zone)
    else:
        rows, _ = st.store.list_jobs(where, limit=limit)
        data = _export_zip(st.store.get_job, [r["id"] for r in rows], language, zone)
    size = data.seek(0, os.SEEK_END)
    data.seek(0)
    return StreamingResponse(
        _read_and_close(data),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="tingxie-export.zip"', "Content-Length": str(size)},
    )


@router.get(
    "/jobs/{job_id}",
    summary="A job: state, progress, timings and result",
    response_model=schemas.Job,
    response_model_exclude_unset=True,
)
def get_job(request: Request, job_id: str, who: Annotated[Principal, Depends(principal)]):
    return public_job(_owned(request.app.state.tx, who, job_id))


@router.get(
    "/jobs/{job_id}/result",
    summary="A finished job's result as txt, json, srt or vtt",
    response_class=Response,
    responses=schemas.RESULT_RESPONSES | schemas.errors(409),
)
def get_result(request: Request, job_id: str, who: Annotated[Principal, Depends(principal)], format: str = "json"):
    job = _owned(request.app.state.tx, who, job_id)
    if format not in output.FORMATS:
        raise ApiError(400, f"format must be one of {', '.join(output.FORMATS)}", param="format")
    if job["state"] != "done":
        raise ApiError(
            409,
            f"job is {job['state']}, not done" + (f": {job['error']}" if job.get("error") else ""),
            code="job_not_done",
        )
    t = Transcript.from_dict(job["result"])
    if format == "json":
        return JSONResponse(t.to_dict())
    name = (Path(job["filename"]).stem or job_id) + "." + output.EXTENSIONS[format]
    return PlainTextResponse(
        output.render(t, format), headers={"Content-Disposition": f"inline; filename*=UTF-8''{_quote(name)}"}
    )


SPEAKER_NAME_MAX = 100


@router.put("/jobs/{job_id}/speakers", summary="Rename a diarized job's speakers (used by every export)")
def rename_speakers(
    request: Request,
    job_id: str,
    who: Annotated[Principal, Depends(principal)],
    names: Annotated[dict[str, str], Body(examples=[{"SPEAKER_1": "张三", "SPEAKER_2": "李四"}])],
):
    """`{"SPEAKER_1": "张三", …}`: the names are stored in the job's result, so its text,
    exports and `GET` show them; an empty name gives the speaker back its id. Answers the
    job's `speakers`."""

    st = request.app.state.tx
    job = _owned(st, who, job_id)
    if job["state"] != "done" or not job.get("result"):
        raise ApiError(409, f"job is {job['state']}, not done", code="job_not_done")
    t = Transcript.from_dict(job["result"])
    if not t.speakers:
        raise ApiError(400, "this job was not diarized: it has no speakers to rename", param="speakers")
    known = {sp.id for sp in t.speakers}
    for sid, name in names.items():
        if sid not in known:
            raise ApiError(400, f"unknown speaker {sid[:40]!r}; this job has {', '.join(sorted(known))}", param=sid)
        if not isinstance(name, str) or len(name.strip()) > SPEAKER_NAME_MAX or "\n" in name:
            raise ApiError(
                400, f"the name of {sid} must be one line of at most {SPEAKER_NAME_MAX} characters", param=sid
            )
    for sp in t.speakers:
        if sp.id in names:
            sp.name = names[sp.id].strip() or sp.id
    st.store.set_result(job_id, t.to_dict(), t.text)
    return {"speakers": [{"id": sp.id, "name": sp.name} for sp in t.speakers]}


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s)


@router.get(
    "/jobs/{job_id}/audio",
    summary="The stored audio of a job (for the player)",
    response_class=Response,
    responses=schemas.AUDIO_RESPONSES,
)
def get_audio(request: Request, job_id: str, who: Annotated[Principal, Depends(principal)]):
    job = _owned(request.app.state.tx, who, job_id)
    # not a regular file (deleted, replaced by a directory, unreadable): gone, as far as a caller can tell
    path = Path(job["audio_path"]) if job.get("audio_path") else None
    if path is None or not path.is_file() or not os.access(path, os.R_OK):
        raise ApiError(404, "the audio of this job is no longer available", "not_found_error", code="audio_gone")
    return FileResponse(path)


@router.post(
    "/jobs/{job_id}/retry",
    status_code=202,
    summary="Run a failed or cancelled job again",
    response_model=schemas.JobRequeued,
    response_model_exclude_unset=True,
    responses=schemas.errors(409, 429),
)
def retry_job(request: Request, job_id: str, who: Annotated[Principal, Depends(principal)]):
    st = request.app.state.tx
    job = _owned(st, who, job_id)
    if job["state"] not in ("failed", "cancelled"):
        raise ApiError(409, f"only failed or cancelled jobs can be retried; this one is {job['state']}")
    check_queue_room(st, who, 1)
    if not st.store.retry_job(job_id):
        raise ApiError(409, "job changed state meanwhile; try again")
    st.queue.submit(job_id)
    return {"id": job_id, "state": "queued"}


@router.delete(
    "/jobs/{job_id}",
    summary="Cancel a job and delete its audio and text",
    response_model=schemas.JobDeleted,
    response_model_exclude_unset=True,
)
def delete_job(request: Request, job_id: str, who: Annotated[Principal, Depends(principal)]):
    st = request.app.state.tx
    _owned(st, who, job_id)
    st.store.cancel_job(job_id)
    st.queue.cancel(job_id)
    row = st.store.delete_job(job_id)
    if row and row.get("audio_path"):
        Path(row["audio_path"]).unlink(missing_ok=True)
    return {"id": job_id, "deleted": True}


@router.get(
    "/batches/{batch_id}",
    summary="Progress of a batch: states, audio done, ETA",
    response_model=schemas.BatchStatus,
    response_model_exclude_unset=True,
)
def batch_status(request: Request, batch_id: str, who: Annotated[Principal, Depends(principal)]):
    st = request.app.state.tx
    rows: list[dict] = []
    cursor = None
    while True:
        page, cursor = st.store.list_jobs(JobFilter(who.owner_filter, batch_id=batch_id), limit=500, cursor=cursor)
        rows += page
        if not cursor:
            break
    if not rows:
        raise ApiError(404, f"no batch {batch_id!r}", "not_found_error", "batch_id")
    counts = {s: sum(1 for r in rows if r["state"] == s) for s in STATES}
    done_audio = sum(r.get("duration") or 0 for r in rows if r["state"] == "done")
    proc = sum(r.get("processing_time") or 0 for r in rows if r["state"] == "done")
    finished = counts["done"] + counts["failed"] + counts["cancelled"]
    # Progress in audio seconds (each file's duration is known from its upload; a running
    # file counts the windows decoded so far), so one long file weighs what it lasts.
    # Files whose duration is unknown (unreadable) count as the mean of the others.
    known = [float(r["duration"]) for r in rows if r.get("duration")]
    mean = sum(known) / len(known) if known else 1.0
    total_s = decoded_s = 0.0
    for r in rows:
        secs = r.get("duration") or mean
        total_s += secs
        ended = r["state"] in ("done", "failed", "cancelled")
        decoded_s += secs if ended else secs * (r.get("progress") or 0)
    progress = decoded_s / total_s if total_s else 1.0
    return {
        "batch_id": batch_id,
        "total": len(rows),
        "counts": counts,
        "finished": finished,
        "progress": round(progress, 4),
        "audio_seconds_total": round(total_s, 1),
        "audio_seconds_decoded": round(decoded_s, 1),
        "audio_seconds_done": round(done_audio, 1),
        "processing_seconds": round(proc, 1),
        "jobs": [public_job(r) for r in rows],
    }
