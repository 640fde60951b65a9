"""Server-side commands: serve, keys, db, worker, bench."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import socket
import sys
import threading

from .types import OptionsError

log = logging.getLogger(__name__)


def bind_addresses(host: str, port: int) -> list[tuple[int, tuple]]:
    """The (family, sockaddr) pairs a server bound to `host` listens on, resolved the way
    asyncio's create_server (uvicorn) resolves them: "" means every interface."""
    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OptionsError(f"cannot resolve --host {host!r}: {e.strerror}") from None
    out: list[tuple[int, tuple]] = []
    for family, _, _, _, addr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, addr) not in out:
            out.append((family, addr))
    if not out:
        raise OptionsError(f"--host {host!r} resolves to no IPv4/IPv6 address")
    return out


def public_addresses(addrs: list[tuple[int, tuple]]) -> list[str]:
    """The addresses among `addrs` reachable from other machines (not loopback)."""
    out = []
    for _, sockaddr in addrs:
        ip = ipaddress.ip_address(sockaddr[0].split("%")[0])
        mapped = getattr(ip, "ipv4_mapped", None)
        if not (mapped or ip).is_loopback:
            out.append(sockaddr[0])
    return out


def _bind(addrs: list[tuple[int, tuple]]) -> list[socket.socket]:
    """Bind exactly the addresses that were checked (no second resolution), as asyncio
    would: an address family the host lacks (EADDRNOTAVAIL) is skipped."""
    socks = []
    for family, addr in addrs:
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(addr)
            socks.append(s)
        except OSError as e:
            s.close()
            if e.errno == errno.EADDRNOTAVAIL and (len(socks) or addr != addrs[-1][1]):
                continue
            for t in socks:
                t.close()
            raise OptionsError(f"cannot listen on {addr[0]} port {addr[1]}: {e.strerror}") from None
    if not socks:
        raise OptionsError("cannot listen on any address of --host")
    return socks


def check_bind(settings, store, addrs: list[tuple[int, tuple]]) -> list[str]:
    """Refuse a public bind that would serve anonymous callers; returns the public addresses."""
    public = public_addresses(addrs)
    if public:
        where = ", ".join(public)
        if settings.auth == "off":
            raise OptionsError(
                f"refusing TINGXIE_AUTH=off on a non-loopback address ({where}): a public server always needs keys"
            )
        if not store.has_keys():
            raise OptionsError(
                f"refusing to listen on {where} without API keys: create one with `tingxie keys create NAME --admin`"
            )
    return public


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .server.app import create_app
    from .settings import from_overrides
    from .store import Store

    settings = from_overrides(args)
    if args.max_batch_wait_ms is not None:
        settings.max_batch_wait_ms = args.max_batch_wait_ms
    if args.pipeline is not None:
        settings.pipeline = args.pipeline
    measured = ""
    if settings.pipeline == "reference":
        settings.instances, settings.batch_size = 1, 1
    else:  # the plan the last bench here measured best, unless flags or the environment set one
        from .device import choose, cpu_cores
        from .settings import apply_bench

        measured = apply_bench(settings, cpu_cores(), choose(settings.device, settings.compute_type).label)
    addrs = bind_addresses(settings.host, settings.port)
    try:
        store = Store(settings.db_url)
    except Exception:  # not writable now: create_app starts anyway and readiness names it
        store = Store(settings.db_url, migrate=False)
    public = check_bind(settings, store, addrs)
    if settings.auth == "off":
        log.warning("AUTHENTICATION IS OFF (TINGXIE_AUTH=off): every local caller is an admin")
    store.close()
    socks = _bind(addrs)
    app = create_app(settings)
    app.state.tx.public_bind = bool(public)
    manager = app.state.tx.manager

    def preload() -> None:
        try:
            manager.load(None)
        except Exception:
            log.exception("could not load the default model")

    threading.Thread(target=preload, name="tingxie-preload", daemon=True).start()
    c = manager.choice
    print(
        f"tingxie serving on http://{settings.host}:{settings.port} — device {c.label} ({c.compute_type}), "
        f"{c.instances} instance(s), batch ≤ {c.batch_size}{', reference pipeline' if settings.pipeline == 'reference' else ''}; data in {settings.home}",
        flush=True,
    )
    if measured:
        print(f"settings from the last benchmark here: {measured}", flush=True)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", access_log=False, ws_max_size=16 * 1024 * 1024
    )
    uvicorn.Server(config).run(sockets=socks)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from .settings import from_overrides
    from .store import Store

    store = Store(from_overrides(args).db_url)
    if args.action == "create":
        if not args.name:
            raise OptionsError("keys create needs a NAME")
        key, secret = store.create_key(args.name, admin=args.admin)
        print(f"created key {key['id']} ({'admin' if args.admin else 'user'}) named {args.name!r}")
        print(f"secret (shown once, store it now): {secret}")
    elif args.action == "list":
        for k in store.list_keys():
            status = "revoked" if k.get("revoked_at") else "active"
            print(f"{k['id']:<12} {k['prefix']}…  {'admin' if k['admin'] else 'user ':<5}  {status:<8} {k['name']}")
    elif args.action == "revoke":
        if not args.name:
            raise OptionsError("keys revoke needs a key ID")
        if not store.revoke_key(args.name):
            raise OptionsError(f"no active key {args.name!r}")
        print(f"revoked {args.name}")
        if not store.has_keys():
            print(
                "no active key left: the server stays closed to callers without a key "
                "(create a key, or set TINGXIE_AUTH=off to open it on purpose)"
            )
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    """The secret receivers verify callbacks with (docs/webhooks.md): the setting, or the
    one kept under the home, made now if there is none yet (the server uses the same)."""
    from . import webhooks
    from .settings import from_overrides

    settings = from_overrides(args)
    value = webhooks.secret(settings)
    where = "TINGXIE_WEBHOOK_SECRET" if settings.webhook_secret else str(settings.home / webhooks.SECRET_FILE)
    print(value)
    print(f"(from {where}; give it only to your callback receivers)", file=sys.stderr)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from .settings import from_overrides
    from .store import upgrade

    url = from_overrides(args).db_url
    upgrade(url)
    print(f"database at head: {url.split('@')[-1]}")
    return 0


def add_commands(sub, add_engine_args) -> None:
    s = sub.add_parser("serve", help="run the HTTP/WebSocket server and web UI")
    s.add_argument("--host", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default 8000)")
    s.add_argument("--max-batch-size", dest="batch_size", type=int, help="alias of --batch-size")
    s.add_argument(
        "--max-batch-wait-ms", type=float, default=None, help="how long a batch waits for company (default 5)"
    )
    s.add_argument(
        "--pipeline",
        choices=("tingxie", "reference"),
        help="tingxie (default), or for comparison reference: serve like the reference system, one request at a "
        "time through faster-whisper's sequential transcribe (beam 5, VAD); implies --instances 1 --batch-size 1 "
        "(env TINGXIE_PIPELINE)",
    )
    add_engine_args(s)
    s.set_defaults(func=cmd_serve)

    k = sub.add_parser("keys", help="manage API keys (stored hashed)")
    k.add_argument("action", choices=["create", "list", "revoke"])
    k.add_argument("name", nargs="?", help="NAME for create, key ID for revoke")
    k.add_argument("--admin", action="store_true", help="the key may see every job and manage models")
    k.set_defaults(func=cmd_keys)

    w = sub.add_parser("webhooks", help="job callbacks: the signing secret receivers verify them with")
    w.add_argument("action", choices=["secret"], help="secret: print it (whsec_…), creating it if none yet")
    w.set_defaults(func=cmd_webhooks)

    d = sub.add_parser("db", help="database maintenance")
    d.add_argument("action", choices=["upgrade"])
    d.set_defaults(func=cmd_db)

    # Both import celery and the bench's clients lazily, inside their commands: an import
    # error here is a bug and must show, not silently drop a command.
    from . import bench, worker

    worker.add_command(sub, add_engine_args)
    bench.add_command(sub, add_engine_args)
