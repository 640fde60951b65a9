"""Uploads: size limit enforced while the body streams in, and audio stored durably under
a generated name (user file names are display text, never paths) before any job is
acknowledged."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import time
import unicodedata
import uuid
from pathlib import Path

from fastapi import UploadFile

from .errors import ApiError, error_body

PART = ".part"


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
        started = over = False

        async def limited_receive():
            nonlocal seen, over
            if over:
                raise _TooLarge()
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit + 64 * 1024:  # multipart framing overhead allowed
                    over = True
                    raise _TooLarge()
            return msg

        async def tracking_send(msg):
            # The form parser turns any error while reading the body into its own 400
            # ("error parsing the body"); once the limit was crossed, answer 413 instead.
            nonlocal started
            if over:
                if msg["type"] == "http.response.start" and not started:
                    started = True
                    await self._reject(send)
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                started = True
                await self._reject(send)

    async def _reject(self, send):
        import json

        mb = self.max_bytes // (1024 * 1024)
        body = json.dumps(
            error_body(f"upload too large: the limit is {mb} MB", "invalid_request_error", "file", "file_too_large")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
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
    path = target_dir / f"{job_id}.{safe_ext(upload.filename)}"
    tmp = path.with_suffix(path.suffix + PART)
    upload.file.seek(0)
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out:
            # Locked while written: start-up cleanup removes only .part files nobody holds
            # (the lock dies with the process), never another live server's upload.
            fcntl.flock(out.fileno(), fcntl.LOCK_EX)
            shutil.copyfileobj(upload.file, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
            if size:
                os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and (problem := storage_error(e)) is not None:
            raise problem from None  # no path in the message: the caller learns what, not where
        raise
    if size == 0:
        tmp.unlink()
        raise ApiError(
            400, f"{display_name(upload.filename)}: file is empty (0 bytes)", param="file", code="empty_file"
        )
    return job_id, path, size


def storage_error(e: OSError) -> ApiError | None:
    """The answer to an upload the server's storage cannot take: 507 when the disk is
    full (the caller may retry later), 503 when it is read-only or not writable."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return ApiError(
            507,
            "the server's disk is full: the upload was not stored; try again later",
            "server_error",
            None,
            "insufficient_storage",
        )
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ApiError(
            503,
            "the server's storage is not writable: the upload was not stored",
            "server_error",
            None,
            "storage_unavailable",
        )
    return None


def remove_stored(path: str | Path | None) -> None:
    """Delete the stored audio of a request that was refused after storing it."""
    if path:
        Path(path).unlink(missing_ok=True)


def clean_partial_uploads(audio_dir: Path) -> int:
    """Remove `.part` files left by a server killed while writing an upload (start-up).
    A file still locked belongs to a live server sharing the storage and is kept."""
    removed = 0
    for p in Path(audio_dir).rglob(f"*{PART}"):
        try:
            with open(p, "rb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                p.unlink()
                removed += 1
        except OSError:  # locked by a live writer, already gone, or unreadable
            continue
    return removed


MAX_FILENAME_CHARS = 255


def base_name(filename: str | None) -> str:
    """The file's own name as a client sent it: the last part after either separator (a
    Windows client may send its whole path) with control characters removed, so the name
    can never carry a directory into an export's zip entries or break a header or a line."""
    name = re.split(r"[\\/]", filename or "")[-1]
    return "".join(c for c in name if unicodedata.category(c) != "Cc").strip()


def check_filenames(uploads: list[UploadFile]) -> None:
    """Refuse over-long file names before anything is stored: they are display text and
    would otherwise be cut silently."""
    for u in uploads:
        name = base_name(u.filename)
        if len(name) > MAX_FILENAME_CHARS:
            raise ApiError(
                400,
                f"file name too long: {len(name)} characters ({name[:40]!r}…); the maximum is {MAX_FILENAME_CHARS}",
                param="file",
                code="filename_too_long",
            )


def display_name(filename: str | None) -> str:
    name = base_name(filename)
    return name[:MAX_FILENAME_CHARS] if name not in ("", ".", "..") else "audio"


def multipart_header_problem(exc: BaseException) -> ApiError | None:
    """python-multipart refuses a part header over its size limit as "Invalid multipart
    data"; the usual cause is a very long file name, so name that and the maximum."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import DEFAULT_MAX_HEADER_SIZE  # python-multipart >= 0.0.27 (pyproject)

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, MultipartParseError) and "header size" in str(e):
            return ApiError(
                400,
                f"file name too long: a part's header is over {DEFAULT_MAX_HEADER_SIZE} bytes; "
                f"a file name may have at most {MAX_FILENAME_CHARS} characters",
                param="file",
                code="filename_too_long",
            )
        e = e.__cause__ or e.__context__
    return None
