"""Uploads: size limit enforced while the body streams in, and audio stored durably under
a generated name (user file names are display text, never paths) before any job is
acknowledged."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

from fastapi import UploadFile

from .errors import ApiError, error_body


class _TooLarge(Exception):
    pass


class UploadLimitMiddleware:
    """Refuse bodies over the limit as soon as they cross it (413), without reading the
    rest — a 10 GB upload costs the server nothing beyond the limit."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        limit = self.max_bytes
        for k, v in scope.get("headers", []):
            if k == b"content-length" and v.isdigit() and int(v) > limit + 64 * 1024:
                return await self._reject(send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit + 64 * 1024:  # multipart framing overhead allowed
                    raise _TooLarge()
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send):
        import json

        mb = self.max_bytes // (1024 * 1024)
        body = json.dumps(error_body(f"upload too large: the limit is {mb} MB", "invalid_request_error", "file", "file_too_large")).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


_SAFE_EXT = re.compile(r"^[a-z0-9]{1,8}$")


def safe_ext(filename: str | None) -> str:
    ext = Path(filename or "").suffix.lower().lstrip(".")
    return ext if _SAFE_EXT.match(ext) else "bin"


def store_upload(upload: UploadFile, audio_dir: Path, job_id: str | None = None) -> tuple[str, Path, int]:
    """Copy an upload to audio_dir/YYYY/MM/DD/<id>.<ext>, fsync'd; returns (id, path, size).
    Empty files are refused here with a message naming the file."""
    job_id = job_id or uuid.uuid4().hex
    day = time.strftime("%Y/%m/%d", time.gmtime())
    target_dir = audio_dir / day
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"{job_id}.{safe_ext(upload.filename)}"
    tmp = path.with_suffix(path.suffix + ".part")
    upload.file.seek(0)
    with open(tmp, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    size = tmp.stat().st_size
    if size == 0:
        tmp.unlink()
        raise ApiError(400, f"{display_name(upload.filename)}: file is empty (0 bytes)", param="file", code="empty_file")
    os.replace(tmp, path)
    return job_id, path, size


def display_name(filename: str | None) -> str:
    name = Path(filename or "audio").name
    return name[:255] or "audio"
