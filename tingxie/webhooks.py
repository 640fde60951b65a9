"""What makes a job callback trustworthy to its receiver: the Standard Webhooks headers
(https://www.standardwebhooks.com/). Delivery is at-least-once — a callback sent just
before a crash, whose success was not yet saved, is sent again after the restart — so
each delivery carries an id that is the same for every attempt of one event (a receiver
drops the second), a timestamp, and an HMAC-SHA256 signature over both and the body (a
receiver knows it came from this server and was not altered). docs/webhooks.md has a
receiver that checks all of it.

The signing key is `TINGXIE_WEBHOOK_SECRET` (`whsec_` + base64 of 24–64 random bytes),
or, when unset, one generated once and kept in `$TINGXIE_HOME/webhook-secret` (0600);
`tingxie webhooks secret` prints it for the operator to give to receivers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any

PREFIX = "whsec_"
SECRET_FILE = "webhook-secret"
SECRET_BYTES = (24, 64)  # what the spec asks of a secret


def parse_secret(value: str) -> bytes:
    """The HMAC key of a `whsec_…` secret; ValueError naming what is wrong (never the
    value itself: it is a secret)."""
    if not value.startswith(PREFIX):
        raise ValueError(f"a webhook secret starts with {PREFIX!r} followed by base64")
    try:
        key = base64.b64decode(value[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a webhook secret is {PREFIX!r} followed by valid base64") from None
    lo, hi = SECRET_BYTES
    if not lo <= len(key) <= hi:
        raise ValueError(f"a webhook secret's key is {lo} to {hi} bytes, not {len(key)}")
    return key


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret(settings) -> str:
    """The signing secret in `whsec_` form: the setting, else the one kept under the home
    (created on first use, atomically, so an API server and a worker sharing the home
    starting at once agree on one)."""
    if settings.webhook_secret:
        return settings.webhook_secret
    path = Path(settings.home) / SECRET_FILE
    try:
        value = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(new_secret() + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # fails if another process made one first: theirs wins
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
        value = path.read_text(encoding="ascii").strip()
    parse_secret(value)  # a damaged file is named, not used
    return value


def signing_key(settings) -> bytes:
    return parse_secret(secret(settings))


def message_id(job_id: str, state: str, finished_at: datetime | str | None) -> str:
    """`webhook-id`: the same for every attempt to tell of one end of one job (retries,
    restarts, another worker resuming it), a new one when the job is run again and ends
    anew (POST /api/jobs/{id}/retry)."""
    ended = finished_at.isoformat() if isinstance(finished_at, datetime) else str(finished_at or "")
    digest = hashlib.sha256(f"{job_id}\n{state}\n{ended}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def body_bytes(body: dict[str, Any]) -> bytes:
    """The exact bytes sent and signed (a receiver verifies these, before parsing)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def headers(key: bytes, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (timestamp: when it is sent)."""
    ts = int(time.time() if now is None else now)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(key, msg_id, ts, body),
    }
