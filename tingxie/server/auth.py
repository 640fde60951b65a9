"""API keys. Required once any key has ever been created (revoking the last one does not
open the server again), always on a non-loopback bind, and never only when the operator
says so explicitly (TINGXIE_AUTH=off, logged at start, and refused on a public bind). Without keys a loopback-only install serves its local user as admin. A request
sends its key as `Authorization: Bearer <key>`, `X-API-Key`, or `?api_key=` (browser
downloads and WebSockets). A key sees only its own jobs unless it is an admin key."""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import Request, WebSocket

from .errors import ApiError


@dataclass(frozen=True)
class Principal:
    key_id: str
    admin: bool
    name: str

    @property
    def owner_filter(self) -> str | None:
        """None = may see every owner's jobs."""
        return None if self.admin else self.key_id


LOCAL = Principal("", True, "local")


def _token(headers, query) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key") or query.get("api_key")


def keys_required(state) -> bool:
    if getattr(state, "public_bind", False):
        return True  # never anonymous on a non-loopback address, whatever the setting
    mode = state.settings.auth
    if mode in ("on", "off"):
        return mode == "on"
    now = time.monotonic()
    cached = getattr(state, "_keys_cache", None)
    if cached and now - cached[0] < 2.0:
        return cached[1]
    required = state.store.keys_ever_created()
    state._keys_cache = (now, required)
    return required


def authenticate(state, headers, query) -> Principal:
    if not keys_required(state):
        return LOCAL
    token = _token(headers, query)
    if not token:
        raise ApiError(
            401, "missing API key: send Authorization: Bearer <key>", "authentication_error", None, "missing_api_key"
        )
    key = state.store.verify_key(token)
    if key is None:
        raise ApiError(401, "invalid or revoked API key", "authentication_error", None, "invalid_api_key")
    return Principal(key["id"], bool(key["admin"]), key["name"])


def principal(request: Request) -> Principal:
    return authenticate(request.app.state.tx, request.headers, request.query_params)


def ws_principal(ws: WebSocket) -> Principal:
    return authenticate(ws.app.state.tx, ws.headers, ws.query_params)


def admin(request: Request) -> Principal:
    p = principal(request)
    if not p.admin:
        raise ApiError(403, "this action needs an admin key", "permission_error", None, "admin_required")
    return p
