"""What web browsers may do here. Every response carries headers that keep a browser from
sniffing, framing or leaking it (SecurityHeadersMiddleware; the web UI's
Content-Security-Policy). And web pages are callers too: a page the user opens on another
site can make their browser send requests to this server. With API keys that gets it nothing (a key is no cookie: the
browser does not attach it by itself). A loopback install without keys, though, trusts
whatever reaches it, so there two rules keep such pages out, while API clients (curl, the
openai package), which send no Origin and name the server by its own address, are not
affected:

- **Cross-origin writes.** A browser request that can change something (any method but
  GET/HEAD/OPTIONS) or opens a WebSocket, from a page of another origin, is refused. A
  plain form POST needs no CORS preflight, so without this any site could submit jobs,
  unload models or stream to the recogniser.
- **DNS rebinding.** The server answers only to loopback host names (localhost,
  127.0.0.1, [::1]) and to the names in TINGXIE_ALLOWED_HOSTS. A page at attacker.example
  whose name is made to resolve to 127.0.0.1 is same-origin with itself, so the browser
  would let it read the whole history; its requests say Host: attacker.example.
"""

from __future__ import annotations

import ipaddress
import json
import re
from urllib.parse import urlsplit

from .auth import keys_required
from .errors import error_body

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def split_host(value: str) -> tuple[str, int | None]:
    """("example.org", 8000) from "example.org:8000"; IPv6 literals keep no brackets."""
    try:
        u = urlsplit("//" + value.strip())
        return (u.hostname or "").lower().rstrip("."), u.port
    except ValueError:
        return "", None


def is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_allowed_hosts(value: str) -> set[str]:
    return {h.strip().lower().rstrip(".") for h in value.split(",") if h.strip()}


def host_problem(host_header: str, allowed: set[str]) -> str | None:
    """Why a keyless server must not answer a request naming this host, or None."""
    host, _ = split_host(host_header)
    if not host or is_loopback_name(host) or host in allowed:
        return None  # no Host at all is no browser: browsers always send one
    return (
        f"this server answers without API keys, so only as localhost or 127.0.0.1, not as {host!r}; "
        "name the host in TINGXIE_ALLOWED_HOSTS (behind a reverse proxy) or create API keys"
    )


def origin_problem(origin: str, host_header: str, forwarded_host: str, allowed: set[str]) -> str | None:
    """Why a browser request from this Origin must be refused, or None when the page is
    the server's own: the Origin names the host the request was sent to (or the host a
    reverse proxy says it was sent to; a page cannot set that header without a preflight
    this server never grants), a loopback host (pages of other sites never carry one:
    a rebound name stays the site's name), or an allowed host."""
    if not origin:
        return None
    u = urlsplit(origin)
    if u.scheme and u.hostname:
        host = u.hostname.lower().rstrip(".")
        port = u.port or _DEFAULT_PORTS.get(u.scheme)
        for sent in (host_header, forwarded_host.split(",")[0]):
            h, p = split_host(sent)
            if h and h == host and (p or _DEFAULT_PORTS.get(u.scheme)) == port:
                return None
        if is_loopback_name(host) or host in allowed:
            return None  # a page this machine serves (FunASR's HTML5 client on its own port)
    return "a web page of another site may not send this request (its Origin is not this server)"


class BrowserGuardMiddleware:
    """Applies the two rules above to every HTTP request and WebSocket of a keyless
    server, before routing."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        state = scope["app"].state.tx
        if keys_required(state):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        allowed = parse_allowed_hosts(state.settings.allowed_hosts)
        problem, code = None, None
        if scope["type"] == "websocket" or scope.get("method") not in SAFE_METHODS:
            problem = origin_problem(
                headers.get("origin", ""), headers.get("host", ""), headers.get("x-forwarded-host", ""), allowed
            )
            code = "cross_origin_refused"
        if problem is None:
            problem, code = host_problem(headers.get("host", ""), allowed), "host_not_allowed"
        if problem is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect; closing before accepting answers 403
            await send({"type": "websocket.close", "code": 1008, "reason": code})
            return
        body = json.dumps(error_body(problem, "permission_error", None, code)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]+)?$|^\[[0-9A-Fa-f:.]+\](:[0-9]+)?$")


def _ui_policy(host: str) -> bytes:
    """The web UI's Content-Security-Policy: its own scripts, styles and connections only,
    no inline script, no plugins, never framed. The WebSocket origin is spelled out
    (ws/wss on the page's own host) for browsers whose 'self' does not cover ws."""
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob:; connect-src 'self'{sockets}; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ).encode()


class SecurityHeadersMiddleware:
    """Headers every response carries: no content-type sniffing (a transcript served as
    text never runs as HTML), no referrer, never framed (no clickjacking); and the web
    UI's Content-Security-Policy, so text from a file name or a transcript can never run
    as script there even if a page slipped."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        ui = scope.get("path", "") == "/" or scope.get("path", "").startswith("/ui")

        async def with_headers(msg):
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if ui:
                    host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
                    headers.append((b"content-security-policy", _ui_policy(host)))
                msg = {**msg, "headers": headers}
            await send(msg)

        await self.app(scope, receive, with_headers)
