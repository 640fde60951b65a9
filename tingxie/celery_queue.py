"""Scale-out queue: Celery (Redis by default, RabbitMQ by URL) carries job ids, the
database (PostgreSQL) carries everything else.

Why it is built this way:
- The broker is only a doorbell. A message holds a job id; the job's state, owner and
  result live in the `jobs` row. `claim_job` (queued→running, one guarded UPDATE) and
  `finish_job` (writes only while unfinished) make a job run once and finish once, so
  duplicate or redelivered messages are harmless — which lets us re-send freely.
- Nothing accepted is lost. The API commits the row, then sends; `CeleryQueue.start()`
  re-sends every `queued` row (a crash between commit and send), and a send that fails
  (broker down) is kept and retried until it goes through.
- A worker killed mid-job (kill -9, power loss) leaves its rows `running`. Its message
  stays unacknowledged in the broker and would come back only after the visibility
  timeout (hours: it must exceed the longest job). We do not wait for that: every worker
  writes a heartbeat row with a per-process boot id, and a job row names the process
  that holds it (`name#boot`). The API node's reaper moves a running job whose holder
  has been silent for `worker_timeout_s` back to queued (guarded on that holder, so two
  reapers cannot both do it) and sends it again. A redelivered message that finds its
  job held by a dead process takes it over the same guarded way. A worker that comes
  back under the same name gives back what its previous life held at once.
- acks_late + prefetch 1: a message is acknowledged after the job ran, and a worker
  reserves no more than it runs. Warm shutdown (SIGTERM) lets running jobs finish and
  returns reserved ones to the broker.
"""

from __future__ import annotations

import logging
import queue as queue_mod
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .reaper import alive_owners, owner_tag, reap  # ownership: shared with API nodes

log = logging.getLogger(__name__)

QUEUE = "tingxie"
TASK = "tingxie.run_job"
CANCEL = "tingxie_cancel"
JOB_KINDS = ("file", "batch_item", "sync")  # a sync row is queued only when its API node died (reaper.py)
MAX_RETRIES = 5


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth retrying: the database or the broker is unreachable for a while."""
    import sqlalchemy.exc as sa_exc
    from kombu.exceptions import OperationalError as KombuOperationalError

    errs: list[type[BaseException]] = [
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.DisconnectionError,
        KombuOperationalError,
        ConnectionError,
        TimeoutError,
    ]
    try:
        import redis.exceptions as r_exc

        errs += [r_exc.ConnectionError, r_exc.TimeoutError]
    except ImportError:
        pass
    return tuple(errs)


def _patch_kombu_redis() -> None:
    """Keep a worker alive when Redis restarts (Celery 5.7 + kombu 5.7).

    On a lost connection Celery 5.7 closes the broken connection before reconnecting;
    closing the channel restores its unacknowledged messages through that connection,
    which is gone, and the AttributeError ends the worker ("Unrecoverable error").
    Acks of tasks that finish meanwhile fail the same way. Neither loses anything here:
    the messages stay in Redis's unacked set (returned after the visibility timeout, and
    then no-ops because their jobs are finished), and job state lives in the database."""
    try:
        from kombu.transport import redis as kr
    except ImportError:
        return
    if getattr(kr.QoS, "_tingxie_patched", False):
        return
    restore, ack = kr.QoS.restore_unacked, kr.QoS.ack

    def restore_unacked(self, client=None):
        try:
            return restore(self, client)
        except AttributeError:
            log.warning("broker connection gone: %d unacknowledged message(s) stay in Redis", len(self._delivered))
            self._delivered.clear()

    def safe_ack(self, delivery_tag):
        try:
            return ack(self, delivery_tag)
        except AttributeError:
            log.warning("broker connection gone: could not ack a finished task (its job row is final anyway)")

    # a deliberate patch of kombu's class, which its stubs (rightly) do not foresee
    kr.QoS.restore_unacked = restore_unacked  # type: ignore[method-assign]
    kr.QoS.ack = safe_ack  # type: ignore[method-assign]
    kr.QoS._tingxie_patched = True  # type: ignore[attr-defined]


def make_app(settings) -> Any:
    """The Celery app of API nodes and workers (same config on both sides)."""
    from celery import Celery

    _patch_kombu_redis()

    app = Celery("tingxie", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # results live in the database
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # keep trying: Redis restarts must not end workers
        broker_transport_options={"visibility_timeout": int(settings.celery_visibility_timeout_s)},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )

    @app.task(bind=True, name=TASK, max_retries=MAX_RETRIES, acks_late=True)
    def run_job_task(self, job_id: str) -> str:
        rt = _runtime
        if rt is None:
            raise RuntimeError("tingxie.run_job runs only inside `tingxie worker`")
        try:
            state = execute(rt, job_id)
        except transient_errors() as e:
            n = self.request.retries
            if n >= MAX_RETRIES:
                log.error("job %s: giving up after %d retries (%s)", job_id, n, type(e).__name__)
                try:
                    rt.store.fail_job(job_id, f"infrastructure unavailable after {n} retries: {type(e).__name__}")
                except Exception:
                    log.exception("job %s: could not mark failed", job_id)
                raise
            delay = min(60.0, 2.0**n) * (0.5 + random.random())  # exponential backoff with jitter
            log.warning("job %s: %s, retry %d in %.1f s", job_id, type(e).__name__, n + 1, delay)
            raise self.retry(exc=e, countdown=delay) from e
        except Exception as e:  # a bug, not bad input (run_job turns that into `failed`): keep serving
            log.exception("job %s crashed", job_id)
            rt.store.fail_job(job_id, f"internal error: {type(e).__name__}")
            state = "failed"
        rt.finished(job_id, state)
        return state

    return app


# --------------------------------------------------------------------------- ownership


def takeover(store, job_id: str, dead: str | None, me: str) -> bool:
    """running(held by `dead`) → running(held by `me`); only one of two racing processes wins."""
    return store.take_over_job(job_id, dead, me)


def give_back(store, job_id: str, dead: str | None) -> bool:
    """running(held by `dead`) → queued, guarded on the holder."""
    return store.give_back_job(job_id, dead)


def _age_s(iso: str | None) -> float:
    if not iso:
        return float("inf")
    return (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()


# --------------------------------------------------------------------------- worker side


@dataclass
class Runtime:
    """What the task needs inside a worker process (one per process)."""

    store: Any
    manager: Any
    name: str
    boot: str
    settings: Any
    base_url: str = ""
    jobs_done: int = 0
    jobs_failed: int = 0
    takeovers: int = 0
    inflight: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def owner(self) -> str:
        return owner_tag(self.name, self.boot)

    def finished(self, job_id: str, state: str) -> None:
        with self.lock:
            if state == "done":
                self.jobs_done += 1
            elif state == "failed":
                self.jobs_failed += 1
        if state in ("done", "failed"):
            from .jobs import after_finish

            after_finish(self.store, job_id, self.base_url, self.settings)


_runtime: Runtime | None = None


def set_runtime(rt: Runtime | None) -> None:
    global _runtime
    _runtime = rt


def execute(rt: Runtime, job_id: str) -> str:
    """Claim (or take over from a dead process) and run one job; returns its state."""
    from .jobs import run_job

    with rt.lock:
        if job_id in rt.inflight:  # a duplicate message while this process runs it
            return "running"
        rt.inflight.add(job_id)
    try:
        for _ in range(3):
            if rt.store.claim_job(job_id, rt.owner):
                break
            job = rt.store.get_job(job_id)
            if job is None:
                return "deleted"
            if job["state"] == "queued":  # given back between our claim and our read: claim again
                continue
            if job["state"] != "running":
                return job["state"]  # finished or cancelled: a duplicate, nothing to do
            holder = job.get("worker")
            if holder == rt.owner:  # our own earlier try (a retry after a transient error)
                break
            if holder in alive_owners(rt.store, rt.settings.worker_timeout_s):
                return "running"  # a live process has it
            if takeover(rt.store, job_id, holder, rt.owner):
                log.info("job %s: taken over from %s (no heartbeat)", job_id, holder)
                with rt.lock:
                    rt.takeovers += 1
                break
        else:
            return "running"
        return run_job(rt.store, rt.manager, job_id, rt.owner, claim=False)
    finally:
        with rt.lock:
            rt.inflight.discard(job_id)


def release_previous_life(store, name: str, me: str, send) -> int:
    """At worker start: jobs held by an earlier process of the same name are certainly
    orphaned (that process is gone); give them back and send them again now."""
    n = 0
    for j in store.unfinished_jobs():
        w = j.get("worker") or ""
        if j["state"] == "running" and j["kind"] in JOB_KINDS and w.startswith(name + "#") and w != me:
            if give_back(store, j["id"], w):
                send(j["id"])
                n += 1
    return n


def send_job(app, job_id: str) -> None:
    """One message per send; unique task ids so a revoke/cancel never poisons a retry."""
    app.send_task(
        TASK,
        args=[job_id],
        queue=QUEUE,
        task_id=f"{job_id}.{uuid.uuid4().hex[:8]}",
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
    )


# --------------------------------------------------------------------------- API side


class CeleryQueue:
    """The LocalQueue interface over Celery, for the API node."""

    def __init__(self, store, settings, node=None):
        self.store = store
        self.node = node  # this API node (its synchronous requests hold jobs; reaper.py)
        self.settings = settings
        self.app = make_app(settings)
        self.timeout_s = float(settings.worker_timeout_s)
        self._outbox: queue_mod.Queue[str | None] = queue_mod.Queue()
        self._pending: set[str] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._depth = (0.0, 0)
        self._last_sweep = time.monotonic()
        self.requeued = 0

    def start(self) -> int:
        from .jobs import resume_callbacks

        try:
            resume_callbacks(self.store, f"http://{self.settings.host}:{self.settings.port}", self.settings)
            jobs = [j for j in self.store.unfinished_jobs() if j["state"] == "queued" and j["kind"] in JOB_KINDS]
        except Exception as e:  # a database not usable now: the reaper's sweep re-sends later
            log.error("could not re-send queued jobs at start (%s)", type(e).__name__)
            jobs = []
        for j in jobs:
            self._outbox.put(j["id"])
        for target, name in ((self._sender, "tingxie-celery-send"), (self._reaper, "tingxie-celery-reaper")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        if jobs:
            log.info("re-sent %d queued job(s) to the broker", len(jobs))
        return len(jobs)

    def submit(self, job_id: str) -> None:
        """Never blocks the request: the row is committed already; a sender thread
        delivers the message (and keeps retrying while the broker is down)."""
        self._outbox.put(job_id)

    def cancel(self, job_id: str) -> None:
        """The row is cancelled by the API; this tells the worker running it to drop its
        queued windows. (Not `revoke`: revoked ids stick in workers' memory and would
        swallow the job if it is retried later.)"""
        try:
            self.app.control.broadcast(CANCEL, arguments={"job_id": job_id}, reply=False)
        except Exception as e:
            log.warning("cancel broadcast failed (%s); the job's row is cancelled anyway", type(e).__name__)

    def depth(self) -> int:
        """Messages waiting in the broker (cached 2 s; 0 when the broker is unreachable)."""
        at, n = self._depth
        if time.monotonic() - at < 2.0:
            return n
        n = self._broker_depth() or 0
        self._depth = (time.monotonic(), n)
        return n

    def workers(self) -> list[dict]:
        out = []
        for w in self.store.live_workers(self.timeout_s):
            info = w.get("info") or {}
            if info.get("role") == "api":  # an API node's heartbeat (reaper.Node), not a worker
                continue
            out.append(
                {
                    "name": w["name"],
                    "device": w["device"],
                    "instances": w["instances"],
                    "heartbeat_age_s": round(_age_s(w["last_seen"]), 1),
                    "jobs_done": info.get("jobs_done", 0),
                    "jobs_failed": info.get("jobs_failed", 0),
                    "running": info.get("running", 0),
                    "audio_seconds": info.get("audio_seconds", 0.0),
                    "batches": info.get("batches", 0),
                    "mean_batch_size": info.get("mean_batch_size", 0.0),
                    "throughput_audio_s_per_s": info.get("throughput", 0.0),
                }
            )
        return out

    def stop(self) -> None:
        self._stop.set()
        self._outbox.put(None)
        for t in self._threads:
            t.join(timeout=5)

    def _broker_depth(self) -> int | None:
        try:
            with self.app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1)
                return int(conn.default_channel.queue_declare(QUEUE, passive=True).message_count)
        except Exception:
            return None

    def _sweep_queued(self) -> None:
        """A job `queued` in the database for long while the broker's queue is empty has
        lost its message (a Redis without persistence restarted, or a message left in a
        dead connection's unacked set): send it again. Duplicates are no-ops."""
        now = time.monotonic()
        if now - self._last_sweep < max(10.0, 2 * self.timeout_s):
            return
        self._last_sweep = now
        stale = [
            j
            for j in self.store.unfinished_jobs()
            if j["state"] == "queued"
            and j["kind"] in JOB_KINDS
            and _age_s(j.get("updated_at")) > 2 * self.timeout_s
            and j["id"] not in self._pending
        ]
        if stale and self._broker_depth() == 0:
            log.info("re-sending %d queued job(s) with no message in the broker", len(stale))
            for j in stale:
                self._outbox.put(j["id"])

    # ---- threads

    def _send(self, job_id: str) -> bool:
        try:
            send_job(self.app, job_id)
            self._pending.discard(job_id)
            return True
        except Exception as e:
            if job_id not in self._pending:
                log.warning("broker unreachable (%s); job %s will be sent when it is back", type(e).__name__, job_id)
            self._pending.add(job_id)
            return False

    def _sender(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self._outbox.get(timeout=1.0)
            except queue_mod.Empty:
                continue
            if job_id is None:
                return
            self._send(job_id)

    def _reaper(self) -> None:
        period = max(0.5, min(5.0, self.timeout_s / 3))
        while not self._stop.wait(period):
            for job_id in list(self._pending):
                if not self._send(job_id):
                    break
            try:
                self._sweep_queued()
                # jobs of dead workers and of dead API nodes (their synchronous requests):
                # given back unheld and sent again; a dead node's real-time rows are failed
                for job_id in reap(self.store, None, self.timeout_s):
                    self.requeued += 1
                    self._outbox.put(job_id)
            except Exception as e:  # database down: try again next round
                log.warning("reaper: %s", type(e).__name__)


__all__ = ["CeleryQueue", "make_app", "Runtime", "set_runtime", "execute", "send_job", "QUEUE", "TASK"]
