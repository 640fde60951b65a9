"""Running stored jobs: the same `run_job` serves the in-process queue (default) and
Celery workers (scale-out), so both give identical results and states.

A job is exactly-once by construction: `claim_job` moves it queued→running atomically
and `finish_job` writes only while it is still running, so a redelivered or recovered
job never produces two results.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import sqlalchemy.exc as sa_exc

from . import webhooks
from .manager import ModelManager
from .reaper import Node, reap, storage_problem
from .request import TranscriptionOptions
from .scheduler import BATCH
from .transcribe import transcribe
from .types import AudioError, DiarizeOptions, OptionsError, Transcript

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger(__name__)


class PermanentError(Exception):
    """The job can never succeed (bad audio, bad options): fail it, do not retry."""


def finish_with(store: Store, job_id: str, t: Transcript) -> bool:
    """Store `t` as the job's result, once (False when the job was already finished,
    cancelled or deleted: see Store.finish_job)."""
    return store.finish_job(job_id, t.to_dict(), t.text, t.language, t.duration, t.processing_time)


def open_sync_job(store: Store, job_id: str, worker: str, **fields: Any) -> None:
    """The history row of a synchronous transcription (an OpenAI-style request): created
    running and held by `worker` (this server's `Node.owner`) in one insert, never queued
    (no queue picks it up) until `finish_with` stores the result. One insert: a row that
    exists is always held by a process whose death the reaper notices."""
    store.create_job(id=job_id, state="running", worker=worker, started_at=_utcnow(), attempts=1, **fields)


def record_sync_result(store: Store, job_id: str, worker: str, t: Transcript, **fields: Any) -> None:
    """A synchronous result that exists before its row (a finished real-time session):
    the row `open_sync_job` + `finish_with` would leave, in one insert (never a
    half-written row that no one can finish)."""
    now = _utcnow()
    store.create_job(
        id=job_id,
        state="done",
        worker=worker,
        attempts=1,
        started_at=now,
        finished_at=now,
        result=t.to_dict(),
        text=t.text,
        language=t.language,
        duration=t.duration,
        processing_time=t.processing_time,
        progress=1.0,
        **fields,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _with_enrolled(store, job: dict, opts: TranscriptionOptions) -> DiarizeOptions | None:
    """The job's diarization with the voice prints of the enrolled names it asked for,
    looked up now (so a Celery worker does it too) in its owner's voices."""
    d = opts.diarization()
    if d is None or not opts.known_speaker_names:
        return d
    from .diarize import enrolled
    from .settings import get_settings

    known, missing = enrolled(store, job.get("owner") or "", opts.known_speaker_names, get_settings().models_dir, True)
    return replace(d, known=known, missing=missing)


def run_job(store, manager: ModelManager, job_id: str, worker: str = "", claim: bool = True) -> str:
    """Run one job to its end state; returns that state. Raises only for errors worth
    retrying (the caller decides); bad input ends as `failed` with the reason."""
    if claim and not store.claim_job(job_id, worker):
        job = store.get_job(job_id)
        return job["state"] if job else "deleted"
    job = store.get_job(job_id)
    if job is None:
        return "deleted"
    try:
        opts = TranscriptionOptions.parse(job.get("options") or {})  # validated again: stored data may be old
        decode, vad, text = opts.pipeline()
        if not job.get("audio_path") or not Path(job["audio_path"]).exists():
            raise PermanentError("audio file is missing from storage")
        sched = manager.scheduler(job.get("model") or None)

        def progress(done: int, total: int, secs: float) -> None:
            # every window is stored: windows of one batch finish together, and a write
            # skipped then (the old 0.5 s throttle) left the bar behind until the next batch
            try:
                store.set_progress(job_id, done / total if total else 1.0)
            except Exception as e:  # a figure for the UI: a full disk must not end the job
                log.warning("job %s: progress not saved (%s)", job_id, type(e).__name__)

        owner = job.get("batch_id") or job_id
        t = transcribe(
            job["audio_path"],
            sched,
            decode,
            vad,
            text,
            lane=BATCH,
            owner=owner,
            on_progress=progress,
            channels=opts.channels,
            diarize=_with_enrolled(store, job, opts),
        )
    except (AudioError, OptionsError, PermanentError) as e:
        # name the file as the user uploaded it, not by its storage path or name
        reason = user_error(e, job.get("audio_path"), job.get("filename"))
        store.fail_job(job_id, reason)
        log.info("job %s failed: %s", job_id, type(e).__name__)
        return "failed"
    if finish_with(store, job_id, t):
        return "done"
    current = store.get_job(job_id)
    return current["state"] if current else "deleted"


# ---------------------------------------------------------------------------- callbacks
# A callback makes the server send a request where a caller says: without a guard any
# caller could make it POST to itself (admin endpoints on loopback) or to internal hosts.
# So targets must resolve to public addresses (unless the operator allow-lists them), are
# checked when submitted and again when sent, and the request goes to the very address
# that was checked (no second DNS lookup to rebind), without redirects or proxies.

CALLBACK_MAX_RESPONSE = 64 * 1024  # bytes of a receiver's answer read (then dropped)


@dataclass(frozen=True)
class CallbackTarget:
    url: httpx.URL
    ips: tuple[str, ...]


def _allow_list(allow: str) -> tuple[set[str], list]:
    hosts: set[str] = set()
    nets = []
    for item in (allow or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item.lower().rstrip("."))
    return hosts, nets


_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _v4(bits: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(bits & 0xFFFFFFFF)


def embedded_ipv4(ip) -> tuple[list, bool]:
    """The IPv4 addresses an IPv6 address carries, where packets to it end up (6to4,
    Teredo, IPv4-mapped, IPv4-compatible, NAT64), and whether those alone decide (True:
    the IPv6 address is only a wrapper; False: its own class counts as well). An IPv6
    literal is otherwise a way to name 127.0.0.1 or 10.0.0.1 past an IPv4-only check."""
    if ip.version != 6:
        return [], False
    n = int(ip)
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return [ip.ipv4_mapped], True
    if ip in _SIX_TO_FOUR:  # 2002:AABB:CCDD::/48
        return [ip.sixtofour], True
    if ip in _TEREDO:  # server in bits 32-63, client in the last 32 bits XOR 0xffffffff
        server, client = ip.teredo
        return [server, client], True
    if ip in _NAT64_WELL_KNOWN:  # 64:ff9b::a.b.c.d (RFC 6052)
        return [_v4(n)], True
    if ip in _NAT64_LOCAL:
        # local-use prefix (RFC 8215): where the address sits depends on the operator's
        # prefix length (/48, /56, /64 or /96 inside it), so every RFC 6052 place is
        # checked, and the prefix's own class (not global) still counts
        at48 = ((n >> 64) & 0xFFFF) << 16 | (n >> 40) & 0xFFFF
        at56 = ((n >> 64) & 0xFF) << 24 | (n >> 32) & 0xFFFFFF
        places = [_v4(n), _v4(n >> 24), _v4(at56), _v4(at48)]
        return sorted(places, key=lambda a: int(a) == 0), False  # a zero is a place not used
    if ip in _IPV4_COMPATIBLE and n > 1:  # ::a.b.c.d (deprecated; :: and ::1 are themselves)
        return [_v4(n)], False
    return [], False


def _class(ip) -> str | None:
    """Why this very address may not receive callbacks (None: it may)."""
    for reason, bad in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if bad:
            return reason
    return None if ip.is_global else "non-public"


def _not_public(ip) -> str | None:
    """Why an address may not receive callbacks (None: it may): an IPv6 address that
    embeds an IPv4 address is judged by that address too ("loopback (embeds 127.0.0.1)")."""
    if ip.version == 6 and ip in _NAT64_LOCAL:  # whatever Python's tables say of it
        return "private (a local-use NAT64 prefix, whatever IPv4 address it embeds)"
    inner, only = embedded_ipv4(ip)
    for v4 in inner:
        if reason := _class(v4):
            return f"{reason} (it embeds the IPv4 address {v4})"
    return None if inner and only else _class(ip)


def check_callback_url(url: str, allow: str = "", own_port: int | None = None) -> CallbackTarget:
    """The target of a callback_url, or OptionsError naming why it is refused. `own_port`:
    the server's port, so a loopback callback to the server itself is refused even when
    loopback is allow-listed (it would call the server's API as a local admin)."""
    if len(url) > 2048:
        raise OptionsError("callback_url is longer than 2048 characters")
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise OptionsError("callback_url is not a valid URL") from None
    if u.scheme not in ("http", "https") or not u.host:
        raise OptionsError("callback_url must be an http(s) URL with a host")
    host = u.host.lower().rstrip(".")
    port = u.port or (443 if u.scheme == "https" else 80)
    allowed_hosts, allowed_nets = _allow_list(allow)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    hint = "loopback, private, link-local, multicast and reserved addresses are refused unless TINGXIE_CALLBACK_ALLOW names them"
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
        ips = tuple(
            dict.fromkeys(str(i[4][0]).split("%")[0] for i in infos if i[0] in (socket.AF_INET, socket.AF_INET6))
        )
    except (socket.gaierror, UnicodeError):
        ips = ()
    if not ips:
        # the same answer as for a private name: a caller cannot map internal DNS this way
        raise OptionsError(f"callback_url host {host!r} does not resolve to a public address ({hint})")
    if own_port == port and any(
        (_not_public(ipaddress.ip_address(i)) or "").startswith(("loopback", "unspecified")) for i in ips
    ):
        raise OptionsError("callback_url points at this server itself")
    if host in allowed_hosts:
        return CallbackTarget(u, ips)
    for ip_s in ips:
        ip = ipaddress.ip_address(ip_s)
        if any(ip in n for n in allowed_nets):  # as written: 127.0.0.0/8 does not allow ::ffff:127.0.0.1
            continue
        reason = _not_public(ip)
        if reason and literal is not None:
            raise OptionsError(f"callback_url address {host} is {reason} ({hint})")
        if reason:
            raise OptionsError(f"callback_url host {host!r} does not resolve to a public address ({hint})")
    return CallbackTarget(u, ips)


def _post_pinned(target: CallbackTarget, body: bytes, timeout_s: float, headers: dict[str, str] | None = None) -> int:
    """POST `body` (JSON) to the checked address itself; the Host header (and TLS
    SNI/certificate check) keep the URL's host name. Reads at most CALLBACK_MAX_RESPONSE
    bytes back."""
    u = target.url
    ext = {"sni_hostname": u.host} if u.scheme == "https" else {}
    deadline = time.monotonic() + 2 * timeout_s  # a receiver dripping its answer is cut off
    with httpx.Client(follow_redirects=False, trust_env=False, timeout=httpx.Timeout(timeout_s)) as client:
        with client.stream(
            "POST",
            u.copy_with(host=target.ips[0]),
            content=body,
            headers={"content-type": "application/json", **(headers or {}), "Host": u.netloc.decode("ascii")},
            extensions=ext,
        ) as r:
            seen = 0
            for chunk in r.iter_raw():
                seen += len(chunk)
                if seen >= CALLBACK_MAX_RESPONSE or time.monotonic() > deadline:
                    break
            return r.status_code


def callback_body(job: dict, base_url: str) -> dict:
    """What a callback tells (documented in docs/webhooks.md and the OpenAPI schema's
    callbacks on POST /api/jobs: server/jobs_api.py `CallbackBody`)."""
    return {
        "id": job["id"],
        "state": job["state"],
        "error": job.get("error"),
        "result_url": f"{base_url}/api/jobs/{job['id']}/result",
    }


def deliver_callback(
    store,
    job_id: str,
    base_url: str,
    retries: int = 5,
    allow: str = "",
    timeout_s: float = 10.0,
    *,
    key: bytes,
) -> bool:
    """POST the job's end to its callback_url, signed with `key` (webhooks.py), with
    exponential backoff. Continues from the attempts already made (a delivery resumed
    after a restart), with at least one more try. At-least-once: a receiver may get an
    event twice (sent, then the server died before saving that it was), always with the
    same webhook-id."""
    job = store.get_job(job_id)
    if not job or not job.get("callback_url"):
        return False
    body = webhooks.body_bytes(callback_body(job, base_url))
    msg_id = webhooks.message_id(job_id, job["state"], job.get("finished_at"))
    own_port = httpx.URL(base_url).port
    delay = 0.5
    done = int(job.get("callback_attempts") or 0)
    last = max(retries, done + 1)
    for attempt in range(done + 1, last + 1):
        try:
            target = check_callback_url(job["callback_url"], allow, own_port)  # again now: DNS may have changed
        except OptionsError as e:
            log.warning("callback of job %s refused: %s", job_id, e)
            store.set_callback_state(job_id, "failed", attempt)
            return False
        try:
            if _post_pinned(target, body, timeout_s, webhooks.headers(key, msg_id, body)) < 300:
                store.set_callback_state(job_id, "delivered", attempt)
                return True
        except httpx.HTTPError:
            pass
        store.set_callback_state(job_id, "pending" if attempt < last else "failed", attempt)
        if attempt < last:
            time.sleep(delay)
            delay = min(delay * 2, 30)
    return False


def deliver_in_background(store, job_id: str, base_url: str, settings) -> None:
    """Deliver a job's callback on a thread of its own, so a slow or dead receiver never
    holds up the next job (the attempts are recorded in the store as they happen). The
    one way every sender (the embedded queue, Celery workers, resumed deliveries) sends."""
    try:
        key = webhooks.signing_key(settings)
    except (OSError, ValueError) as e:  # stays pending: resumed at the next start
        log.error("callback of job %s not sent: no webhook signing key (%s)", job_id, type(e).__name__)
        return
    threading.Thread(
        target=deliver_callback,
        daemon=True,
        name=f"tingxie-callback-{job_id}",
        args=(store, job_id, base_url, settings.callback_retries, settings.callback_allow, settings.callback_timeout_s),
        kwargs={"key": key},
    ).start()


def after_finish(store, job_id: str, base_url: str, settings) -> None:
    """What follows a job's end, wherever it ran: its callback, when it asked for one."""
    job = store.get_job(job_id)
    if job and job.get("callback_url") and job["state"] in ("done", "failed"):
        deliver_in_background(store, job_id, base_url, settings)


def resume_callbacks(store, base_url: str, settings) -> int:
    """Start delivering the callbacks of finished jobs that were still pending when the
    server stopped (crashed mid-retry, or before the first try)."""
    jobs = store.pending_callbacks()
    for j in jobs:
        deliver_in_background(store, j["id"], base_url, settings)
    if jobs:
        log.info("resuming %d pending callback(s)", len(jobs))
    return len(jobs)


def user_error(e: BaseException, path, filename: str | None) -> str:
    """An error message for the user: their file name, never the storage path or name."""
    msg = str(e)
    if path:
        p = Path(path)
        for s in (str(p), p.name):
            msg = msg.replace(s, filename or "audio")
    return msg


class JobQueue(Protocol):
    """What the API needs of a job queue: the embedded `LocalQueue` or `CeleryQueue`.
    The job's state lives in the store; a queue only carries job ids to whoever runs them."""

    def start(self) -> int:
        """Begin running; re-queues unfinished stored jobs and returns how many."""
        ...

    def submit(self, job_id: str) -> None: ...

    def cancel(self, job_id: str) -> None:
        """Drop the job's waiting work (its row is cancelled by the caller)."""
        ...

    def depth(self) -> int:
        """Jobs waiting to be picked up."""
        ...

    def workers(self) -> list[dict[str, Any]]:
        """Separate worker processes and their figures ([] when the API node runs jobs)."""
        ...

    def stop(self) -> None: ...


class LocalQueue:
    """The embedded queue: job ids in memory, their state in the database. Every job it
    has is held in the store by this server's `Node` (its owner tag), and a reaper thread
    queues here the jobs of processes that died (reaper.py) — at start, the jobs this
    server's previous life held, and while it runs, those of another server on the same
    database that was killed — and the jobs it holds but lost (a result the database
    would not take: tried again once it does)."""

    def __init__(self, store: Store, manager: ModelManager, concurrency: int, base_url: str, node: Node):
        self.store = store
        self.manager = manager
        self.base_url = base_url
        self.node = node
        self.timeout_s = float(manager.settings.worker_timeout_s)
        self._q: queue.Queue[str | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"tingxie-job-{i}", daemon=True) for i in range(concurrency)
        ]
        self._stop = threading.Event()

    def start(self) -> int:
        for t in self._threads:
            t.start()
        try:
            resume_callbacks(self.store, self.base_url, self.manager.settings)
            ids = reap(
                self.store, self.node.owner, self.timeout_s, self.node.holding(), take_unheld=True, at_start=True
            )
        except Exception as e:  # a database not usable now: the periodic reaper recovers later
            log.error("could not recover unfinished jobs at start (%s)", type(e).__name__)
            ids = []
        for job_id in ids:
            self._put(job_id)
        threading.Thread(target=self._reaper, name="tingxie-reaper", daemon=True).start()
        if ids:
            log.info("recovered %d unfinished job(s)", len(ids))
        return len(ids)

    def submit(self, job_id: str) -> None:
        try:
            self.store.hold_job(job_id, self.node.owner)
        except Exception as e:  # unheld, it is still queued here; the reaper would take it later
            log.warning("job %s: not marked held (%s)", job_id, type(e).__name__)
        self._put(job_id)

    def _put(self, job_id: str) -> None:
        self.node.take(job_id)
        self._q.put(job_id)

    def cancel(self, job_id: str) -> None:
        for s in self.manager.schedulers():
            s.cancel(job_id)

    def depth(self) -> int:
        return self._q.qsize()

    def workers(self) -> list[dict[str, Any]]:
        return []  # jobs run in this process

    def stop(self) -> None:
        self._stop.set()
        for _ in self._threads:
            self._q.put(None)

    def _reaper(self) -> None:
        period = max(0.5, min(5.0, self.timeout_s / 3))
        while not self._stop.wait(period):
            try:
                for job_id in reap(self.store, self.node.owner, self.timeout_s, self.node.holding(), take_unheld=True):
                    self._put(job_id)
            except Exception as e:  # database away for a moment: next round
                log.warning("reaper: %s", type(e).__name__)

    def _loop(self) -> None:
        while not self._stop.is_set():
            job_id = self._q.get()
            if job_id is None:
                return
            try:
                self._run(job_id)
            finally:
                self.node.drop(job_id)

    def _run(self, job_id: str) -> None:
        try:
            run_job(self.store, self.manager, job_id, self.node.owner)
        except Exception as e:
            problem = storage_problem(e) or (isinstance(e, sa_exc.OperationalError) and "database unavailable")
            if problem:  # the row stays held by this server; the reaper runs it again once writes succeed
                log.warning("job %s: not saved: %s; it will run again", job_id, problem)
                return
            log.exception("job %s crashed", job_id)  # unexpected: keep the reason, keep serving
            try:
                self.store.fail_job(job_id, f"internal error: {type(e).__name__}")
            except Exception as e2:
                log.warning("job %s: failure not saved (%s); it will run again", job_id, type(e2).__name__)
                return
        try:
            after_finish(self.store, job_id, self.base_url, self.manager.settings)
        except Exception as e:
            log.warning("job %s: callback not started (%s)", job_id, type(e).__name__)
