"""Server-side commands: serve, keys, db, worker, bench."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import threading

from .types import OptionsError

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .settings import from_overrides
    from .server.app import create_app
    from .store import Store

    settings = from_overrides(args)
    if args.max_batch_wait_ms is not None:
        settings.max_batch_wait_ms = args.max_batch_wait_ms
    if args.insecure:
        settings.insecure = True
    if args.serial:
        settings.serial = True
    if settings.serial:
        settings.instances, settings.batch_size = 1, 1
    if not _is_loopback(settings.host) and not settings.insecure:
        if not Store(settings.db_url).has_keys():
            raise OptionsError(
                f"refusing to listen on {settings.host} without API keys: create one with `tingxie keys create NAME --admin`, "
                "or pass --insecure to serve without keys"
            )
    app = create_app(settings)
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
        f"{c.instances} instance(s), batch ≤ {c.batch_size}{', serial reference mode' if settings.serial else ''}; data in {settings.home}",
        flush=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False, ws_max_size=16 * 1024 * 1024)
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
    s.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without API keys")
    s.add_argument("--max-batch-size", dest="batch_size", type=int, help="alias of --batch-size")
    s.add_argument("--max-batch-wait-ms", type=float, default=None, help="how long a batch waits for company (default 5)")
    s.add_argument("--serial", action="store_true",
                   help="for comparison: serve like the reference system, one request at a time through faster-whisper's "
                        "sequential transcribe (beam 5, VAD); implies --instances 1 --batch-size 1")
    add_engine_args(s)
    s.set_defaults(func=cmd_serve)

    k = sub.add_parser("keys", help="manage API keys (stored hashed)")
    k.add_argument("action", choices=["create", "list", "revoke"])
    k.add_argument("name", nargs="?", help="NAME for create, key ID for revoke")
    k.add_argument("--admin", action="store_true", help="the key may see every job and manage models")
    k.set_defaults(func=cmd_keys)

    d = sub.add_parser("db", help="database maintenance")
    d.add_argument("action", choices=["upgrade"])
    d.set_defaults(func=cmd_db)

    # Both import celery and the bench's clients lazily, inside their commands: an import
    # error here is a bug and must show, not silently drop a command.
    from . import bench, worker

    worker.add_command(sub, add_engine_args)
    bench.add_command(sub, add_engine_args)
