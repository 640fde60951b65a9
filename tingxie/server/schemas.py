"""What the API answers, as OpenAPI sees it (`/openapi.json`, `/docs`): a response model
per route, the error shape every error has, and the non-JSON bodies (text, zip, audio,
server-sent events). tests/test_schema.py fuzzes the live server against this schema
with schemathesis, so the two cannot drift apart.

Models allow extra fields: a field added to a response is no break for clients, and
the schema names what clients may rely on. Routes answer with
`response_model_exclude_unset`: a model never adds a null field a route did not send.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from ..store import CALLBACK_STATES, STATES


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- errors -----------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    message: str = Field(description="what is wrong, in English; names the parameter or file")
    type: str = Field(description="OpenAI's error type, e.g. invalid_request_error, authentication_error")
    param: str | None = Field(description="the request parameter at fault, when one is")
    code: str | None = Field(description="a stable code to branch on, e.g. invalid_value, job_not_found")


class Error(BaseModel):
    """Every error, whatever its status (OpenAI's shape)."""

    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# Errors any operation may answer, and why (the body is always `Error`).
_ANY = {
    403: "refused: a browser request from another site's page, or an action that needs an admin key",
    500: "internal error (the server log names where)",
    503: "busy (Retry-After) or not able to serve now",
}
_WITH_KEY = {401: "no API key, or one that is invalid or revoked"}
_WITH_INPUT = {400: "invalid request: a parameter, field or file is wrong (the message and `param` name it)"}
_WITH_PATH = {404: "no such job, batch, model or enrolled voice (or not this key's)"}
_WITH_BODY = {
    413: "the upload or its audio is over the server's limit (the message names it)",
    507: "the server's disk is full: nothing of the request was kept",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Route-specific error statuses, for a route's `responses=`."""
    named = {
        404: "no such job among those named (or not this key's)",
        409: "conflict: the job or model is not in a state that allows this",
        429: "too many unfinished jobs for this key (Retry-After)",
    }
    return {c: _error(named[c]) for c in codes}


def _needs_key(route: APIRoute) -> bool:
    from .auth import admin, principal

    todo, seen = list(route.dependant.dependencies), set()
    while todo:
        d = todo.pop()
        if d.call in (principal, admin):
            return True
        if id(d) not in seen:
            seen.add(id(d))
            todo.extend(d.dependencies)
    return False


def install_openapi(app: FastAPI) -> None:
    """One place decides how errors are documented. FastAPI documents validation errors
    as 422 with its own body, but this server answers 400 with `Error` (errors.py); and
    it knows nothing of the statuses middleware and dependencies answer. So each
    operation gets, besides what its route declares: 400 when it takes input, 401 when
    it needs a key, 404 when its path names something, 413 and 507 when it takes a body, and
    403, 500, 503 — all with the `Error` body."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Error, Transcription):  # referenced by content types FastAPI does not model
            _add(components, model)
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        keyed = {
            (r.path, m.lower())
            for r in app.routes
            if isinstance(r, APIRoute) and _needs_key(r)
            for m in r.methods or ()
        }
        for path, path_item in schema.get("paths", {}).items():
            for method, op in path_item.items():
                responses = op.setdefault("responses", {})
                responses.pop("422", None)
                extra = dict(_ANY)
                params = op.get("parameters") or []
                if params or op.get("requestBody"):
                    extra |= _WITH_INPUT
                if (path, method) in keyed:
                    extra |= _WITH_KEY
                if any(p.get("in") == "path" for p in params):
                    extra |= _WITH_PATH
                if op.get("requestBody"):
                    extra |= _WITH_BODY
                for code, why in sorted(extra.items()):
                    responses.setdefault(str(code), _error(why))
                for cb in op.get("callbacks", {}).values():  # a receiver's answers are its own business
                    for cb_item in cb.values():
                        for cb_op in cb_item.values():
                            cb_op.get("responses", {}).pop("422", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add(components: dict[str, Any], model: type[BaseModel]) -> None:
    s = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(s.pop("$defs", {}))
    components[model.__name__] = s


# -- non-JSON bodies ----------------------------------------------------------------------------
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_TEXT = {"schema": {"type": "string"}}


def content(description: str, **media: dict) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": media}}


# -- jobs ---------------------------------------------------------------------------------------
# The states as the store declares them (store.STATES decides; the schema lists them)
JobState = Annotated[str, Field(json_schema_extra={"enum": list(STATES)})]


class Job(_Open):
    """A job as the API shows it (errors.public_job): never a server path."""

    id: str
    kind: str = Field(description="file, batch_item, sync (a synchronous request) or stream")
    state: JobState
    filename: str = Field(description="the name the file was uploaded with")
    batch_id: str | None = None
    model: str | None = None
    options: dict[str, Any] | None = None
    progress: float | None = None
    error: str | None = None
    language: str | None = None
    text: str | None = None
    result: dict[str, Any] | None = Field(None, description="the transcript (as GET …/result?format=json)")
    duration: float | None = None
    processing_time: float | None = None
    size_bytes: int | None = None
    attempts: int | None = None
    callback_url: str | None = None
    callback_state: Annotated[str | None, Field(json_schema_extra={"enum": [*CALLBACK_STATES, None]})] = None
    callback_attempts: int | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    has_audio: bool = Field(description="whether the job's audio is still kept (GET …/audio)")


class CreatedJob(BaseModel):
    id: str
    filename: str
    state: JobState


class JobsCreated(BaseModel):
    batch_id: str | None = Field(description="set when several files were sent, or batch_id was given")
    jobs: list[CreatedJob]


class JobPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class JobDeleted(BaseModel):
    id: str
    deleted: bool


class JobRequeued(BaseModel):
    id: str
    state: JobState


class BatchStatus(_Open):
    batch_id: str
    total: int
    counts: dict[str, int]
    finished: int
    progress: float
    audio_seconds_done: float
    processing_seconds: float
    jobs: list[Job]


class CallbackBody(BaseModel):
    """What a job's callback POSTs when it ends (docs/webhooks.md). Signed with the
    Standard Webhooks headers webhook-id (one per event: a redelivery repeats it),
    webhook-timestamp and webhook-signature."""

    id: str = Field(description="the job's id")
    state: Literal["done", "failed"]
    error: str | None = Field(description="why it failed; null when done")
    result_url: str = Field(description="GET it with your API key for the transcript")


# -- models and system ------------------------------------------------------------------------
class ModelInfo(_Open):
    id: str
    ready: bool
    bundled: bool
    size_mb: float
    loaded: bool
    default: bool
    family: str | None = None
    languages: list[str] | None = None
    capabilities: dict[str, Any] | None = None
    error: str | None = None


class ModelList(BaseModel):
    models: list[ModelInfo]


class ModelLoaded(BaseModel):
    id: str
    loaded: bool
    seconds: float


class ModelUnloaded(BaseModel):
    id: str
    loaded: bool
    was_loaded: bool


class CacheEmptied(_Open):
    device: str
    freed: bool
    message: str


class SystemInfo(_Open):
    version: str
    device: str
    compute_type: str
    instances: int
    max_batch_size: int
    pipeline: str
    models: list[dict[str, Any]]
    memory: dict[str, Any]
    queue: dict[str, Any]
    streams: dict[str, Any]
    throughput: dict[str, Any]
    jobs: dict[str, int]
    keys_required: bool
    queue_backend: str


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    model: str
    database: str | None = Field(
        None, description="why the database takes no writes (read-only, full); absent when it does"
    )


class VadSegment(BaseModel):
    start: float
    end: float


class VadPreview(BaseModel):
    duration: float
    segments: list[VadSegment]
    count: int
    speech_seconds: float
    speech_ratio: float
    frame_seconds: float
    probabilities: list[float]


# -- enrolled voices ----------------------------------------------------------------------------
class EnrolledVoice(BaseModel):
    """A voice enrolled by name; its print is never shown."""

    name: str
    created_at: str
    seconds: float = Field(description="seconds of speech the voice print was made from")
    has_audio: bool = Field(description="the audio was kept (keep_audio=true)")


class EnrolledVoices(BaseModel):
    speakers: list[EnrolledVoice]


class EnrolledVoiceDeleted(BaseModel):
    name: str
    deleted: bool


# -- OpenAI-compatible --------------------------------------------------------------------------
class OpenAIModel(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"]
    data: list[OpenAIModel]


class Transcription(_Open):
    """response_format json (`text`, and `warnings` when there are any) or verbose_json
    (also language, duration, segments, words…)."""

    text: str


TRANSCRIPTION_RESPONSES: dict[int | str, dict[str, Any]] = content(
    "the transcript in the requested response_format; with stream=true, server-sent events",
    **{
        "application/json": {"schema": _ref("Transcription")},
        "text/plain": _TEXT,
        "application/x-subrip": _TEXT,
        "text/vtt": _TEXT,
        "text/event-stream": _TEXT,
    },
)
RESULT_RESPONSES = content(
    "the transcript: json, or txt/srt/vtt as text",
    **{"application/json": {"schema": {"type": "object"}}, "text/plain": _TEXT},
)
EXPORT_RESPONSES = content("a zip: txt, srt and json per finished job, and summary.csv", **{"application/zip": _BINARY})
AUDIO_RESPONSES = content(
    "the stored audio as uploaded (its type follows the file)",
    **{"audio/*": _BINARY, "video/*": _BINARY, "application/octet-stream": _BINARY},
)
METRICS_RESPONSES = content("Prometheus text format", **{"text/plain": _TEXT})
READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "not ready: the default model is not loaded, or the database takes no writes",
        "model": Readiness,
    }
}
