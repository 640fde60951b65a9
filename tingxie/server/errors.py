"""OpenAI's error shape for every error: {"error": {"message", "type", "param", "code"}};
and what the API may show of a job: never a server path or a storage name."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import sqlalchemy.exc as sa_exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..reaper import storage_problem
from ..scheduler import Overloaded
from ..types import AudioError, OptionsError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code, self.headers = (
            status,
            message,
            type_,
            param,
            code,
            headers,
        )


# Server directories whose paths must never reach a caller (filled by install()).
_PRIVATE_DIRS: set[str] = set()
# A stored upload's name: <32 hex>.<ext>[.part] (uploads.store_upload).
_STORAGE_NAME = re.compile(r"\b[0-9a-f]{32}\.[A-Za-z0-9]{1,8}(?:\.part)?\b")


def redact(message: str) -> str:
    """Last line of defence for every error message: server paths → "…", storage file
    names → "the uploaded file". (Callers name the user's file themselves.)"""
    for d in sorted(_PRIVATE_DIRS, key=len, reverse=True):
        message = re.sub(re.escape(d) + r"[^\s'\"),;]*", "…", message)
    return _STORAGE_NAME.sub("the uploaded file", message)


# Job fields that are the server's business: where its audio is stored.
_HIDDEN_JOB_FIELDS = ("audio_path",)


def public_job(job: dict) -> dict:
    """A job row as the API shows it: no storage path (`has_audio` says whether the
    audio is still kept), error messages redacted."""
    out = {k: v for k, v in job.items() if k not in _HIDDEN_JOB_FIELDS}
    out["has_audio"] = bool(job.get("audio_path"))
    if out.get("error"):
        out["error"] = redact(out["error"])
    return out


# A stable `code` for every error, so clients (the web UI's translations) need not parse
# English messages; specific codes set where the error is raised win over these.
STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "file_too_large",
    422: "invalid_value",
    429: "rate_limited",
    503: "overloaded",
    507: "insufficient_storage",
}


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": redact(message), "type": type_, "param": param, "code": code}}


def install(app: FastAPI) -> None:
    settings = getattr(getattr(app.state, "tx", None), "settings", None)
    if settings is not None:
        for d in (settings.home, settings.audio_dir, settings.models_dir):
            _PRIVATE_DIRS.update({str(d), str(Path(d).resolve())})

    @app.exception_handler(ApiError)
    async def _api(_: Request, e: ApiError):
        return JSONResponse(
            error_body(e.message, e.type, e.param, e.code or STATUS_CODES.get(e.status)),
            status_code=e.status,
            headers=e.headers,
        )

    @app.exception_handler(AudioError)
    async def _audio(_: Request, e: AudioError):
        return JSONResponse(
            error_body(f"audio: {e}", "invalid_request_error", "file", "invalid_audio"),
            status_code=getattr(e, "status", 400),
        )

    @app.exception_handler(OptionsError)
    async def _options(_: Request, e: OptionsError):
        return JSONResponse(error_body(str(e), "invalid_request_error", e.param, "invalid_option"), status_code=400)

    @app.exception_handler(Overloaded)
    async def _overloaded(_: Request, e: Overloaded):
        return JSONResponse(
            error_body(f"server busy: {e}; retry shortly", "server_busy", None, "overloaded"),
            status_code=503,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(sa_exc.DBAPIError)
    async def _database(_: Request, e: sa_exc.DBAPIError):
        # a machine problem, named for the caller without the driver's text: a full disk
        # (507: retry later), a read-only or unreachable database (503)
        problem = storage_problem(e)
        if problem is None and not _unavailable(e):
            log.error("database error: %s (%s)", type(e).__name__, type(getattr(e, "orig", e)).__name__)
            return JSONResponse(
                error_body(
                    "internal server error; the server log names the failure", "server_error", None, "internal_error"
                ),
                status_code=500,
            )
        problem = problem or "the database is unavailable"
        status, code = (507, "insufficient_storage") if "disk is full" in problem else (503, "database_unavailable")
        return JSONResponse(
            error_body(f"{problem}: nothing was saved; try again later", "server_error", None, code),
            status_code=status,
            headers={"Retry-After": "30"},
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError):
        errs = e.errors()
        first = errs[0] if errs else {}
        param = ".".join(str(x) for x in first.get("loc", [])[1:]) or None
        msg = str(first.get("msg", "invalid"))
        if "Expected UploadFile" in msg:  # a part without a file name reaches FastAPI as text
            msg = "expected an uploaded file (a multipart part with a file name), got a text field"
        return JSONResponse(
            error_body(f"{param or 'request'}: {msg}", "invalid_request_error", param, "invalid_value"),
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException):
        type_ = {
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            413: "invalid_request_error",
        }.get(e.status_code, "invalid_request_error")
        return JSONResponse(
            error_body(str(e.detail), type_, None, STATUS_CODES.get(e.status_code)),
            status_code=e.status_code,
            headers=getattr(e, "headers", None),
        )


# SQLite reports a broken schema or statement as an OperationalError too, like a lock or a
# lost connection; those are the server's own faults (500), not a database to wait for.
_SCHEMA_FAULTS = ("no such table", "no such column", "has no column", "syntax error")


def _unavailable(e: Exception) -> bool:
    """A database that cannot be reached or used right now (503: try again later)."""
    if not isinstance(e, sa_exc.OperationalError | sa_exc.InterfaceError):
        return False
    text = str(getattr(e, "orig", None) or e).lower()
    return not any(fault in text for fault in _SCHEMA_FAULTS)
