"""OpenAI's error shape for every error: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..scheduler import Overloaded
from ..types import AudioError, OptionsError


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code, self.headers = status, message, type_, param, code, headers


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, e: ApiError):
        return JSONResponse(error_body(e.message, e.type, e.param, e.code), status_code=e.status, headers=e.headers)

    @app.exception_handler(AudioError)
    async def _audio(_: Request, e: AudioError):
        return JSONResponse(error_body(f"audio: {e}", "invalid_request_error", "file", "invalid_audio"), status_code=getattr(e, "status", 400))

    @app.exception_handler(OptionsError)
    async def _options(_: Request, e: OptionsError):
        return JSONResponse(error_body(str(e), "invalid_request_error", None, "invalid_option"), status_code=400)

    @app.exception_handler(Overloaded)
    async def _overloaded(_: Request, e: Overloaded):
        return JSONResponse(
            error_body(f"server busy: {e}; retry shortly", "server_busy", None, "overloaded"), status_code=503, headers={"Retry-After": "2"}
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError):
        errs = e.errors()
        first = errs[0] if errs else {}
        param = ".".join(str(x) for x in first.get("loc", [])[1:]) or None
        return JSONResponse(error_body(f"{param or 'request'}: {first.get('msg', 'invalid')}", "invalid_request_error", param, "invalid_value"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException):
        type_ = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 413: "invalid_request_error"}.get(e.status_code, "invalid_request_error")
        return JSONResponse(error_body(str(e.detail), type_, None, None), status_code=e.status_code, headers=getattr(e, "headers", None))
