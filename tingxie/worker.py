"""`tingxie worker`: a Celery worker that runs queued jobs on one device.

One process = one device = one ModelManager (the model loads once, at start). The
Celery pool is threads, and many more threads than model instances: each thread runs one
job through `run_job`, and all of them feed this process's own dynamic batcher, so the
windows of different jobs share batches (what makes a GPU fast). A heartbeat thread
writes the worker's stats to the database every few seconds; the API node shows them
and uses their absence to take over a dead worker's jobs.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import secrets
import socket
import threading
import time

log = logging.getLogger(__name__)


def _stats(manager) -> dict:
    batches = windows = 0
    audio = busy = 0.0
    max_batch = 0
    for m in manager.loaded():
        s = m["stats"]
        batches += s["batches"]
        windows += s["windows"]
        audio += s["audio_seconds"]
        busy += s["busy_seconds"]
        max_batch = max(max_batch, s["max_batch_size"])
    return {
        "batches": batches,
        "windows": windows,
        "audio_seconds": round(audio, 2),
        "busy_seconds": round(busy, 2),
        "mean_batch_size": round(windows / batches, 2) if batches else 0.0,
        "max_batch_size": max_batch,
    }


def _info(rt, samples: collections.deque) -> dict:
    s = _stats(rt.manager)
    now = time.monotonic()
    samples.append((now, s["audio_seconds"]))
    while len(samples) > 2 and now - samples[0][0] > 60:
        samples.popleft()
    t0, a0 = samples[0]
    throughput = (s["audio_seconds"] - a0) / (now - t0) if now > t0 else 0.0
    with rt.lock:
        running = len(rt.inflight)
        done, failed, takeovers = rt.jobs_done, rt.jobs_failed, rt.takeovers
    queued_windows = sum(sum(m["queue"].values()) for m in rt.manager.loaded())
    return {
        **s,
        "boot": rt.boot,
        "pid": os.getpid(),
        "jobs_done": done,
        "jobs_failed": failed,
        "takeovers": takeovers,
        "running": running,
        "queue": queued_windows,
        "throughput": round(throughput, 3),
    }


def _heartbeat(rt, stop: threading.Event, period: float) -> None:
    samples: collections.deque = collections.deque()
    c = rt.manager.choice
    while True:
        try:
            rt.store.heartbeat(rt.name, c.label, c.instances, _info(rt, samples))
        except Exception as e:  # database away for a moment: keep beating
            log.warning("heartbeat failed: %s", type(e).__name__)
        if stop.wait(period):
            return


def _register_metrics(rt, port: int) -> None:
    from prometheus_client import REGISTRY, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    labels = ["worker", "device"]

    class Collector:
        def collect(self):
            s = _info(rt, collections.deque())
            lv = [rt.name, rt.manager.choice.label]
            for key, help_ in (
                ("jobs_done", "jobs finished"),
                ("jobs_failed", "jobs failed"),
                ("batches", "model batches"),
                ("windows", "windows decoded"),
                ("audio_seconds", "audio seconds decoded"),
                ("busy_seconds", "seconds the model was busy"),
                ("takeovers", "jobs taken over from dead workers"),
            ):
                m = CounterMetricFamily(f"tingxie_worker_{key}", help_, labels=labels)
                m.add_metric(lv, float(s[key]))
                yield m
            for key, help_ in (
                ("running", "jobs running now"),
                ("queue", "windows waiting for the model"),
                ("mean_batch_size", "mean windows per batch"),
                ("max_batch_size", "largest batch"),
                ("throughput", "audio seconds per second, last minute"),
            ):
                m = GaugeMetricFamily(f"tingxie_worker_{key}", help_, labels=labels)
                m.add_metric(lv, float(s[key]))
                yield m

    REGISTRY.register(Collector())
    start_http_server(port, addr=rt.settings.host)
    log.info("metrics on http://%s:%d/metrics", rt.settings.host, port)


def _register_cancel(rt) -> None:
    from celery.worker.control import control_command

    from .celery_queue import CANCEL

    @control_command(name=CANCEL, args=[("job_id", str)], signature="<job_id>")
    def tingxie_cancel(state, job_id: str) -> dict:
        n = sum(s.cancel(job_id) for s in rt.manager.schedulers())
        return {"ok": f"dropped {n} window(s)"}


def cmd_worker(args: argparse.Namespace) -> int:
    from . import celery_queue as cq
    from .manager import ModelManager
    from .scheduler import work_in_flight
    from .settings import from_overrides
    from .store import Store

    logging.getLogger("tingxie").setLevel(logging.INFO)  # start line, takeovers, retries
    settings = from_overrides(args)
    if args.metrics_host:
        settings.host = args.metrics_host
    store = Store(settings.db_url)
    manager = ModelManager(settings, warm_up=settings.warm_up)
    manager.load(None)  # once, before taking work
    c = manager.choice
    name = args.name or f"{socket.gethostname()}-{c.label}-{os.getpid()}"
    rt = cq.Runtime(
        store=store,
        manager=manager,
        name=name,
        boot=secrets.token_hex(4),
        settings=settings,
        base_url=args.base_url or f"http://{settings.host}:{settings.port}",
    )
    cq.set_runtime(rt)
    app = cq.make_app(settings)
    concurrency = args.concurrency or work_in_flight(c.batch_size, c.instances)

    stop = threading.Event()
    period = max(0.5, min(5.0, settings.worker_timeout_s / 6))
    threading.Thread(target=_heartbeat, args=(rt, stop, period), name="tingxie-heartbeat", daemon=True).start()
    try:
        n = cq.release_previous_life(store, name, rt.owner, lambda jid: cq.send_job(app, jid))
        if n:
            log.info("gave back %d job(s) held by an earlier process named %s", n, name)
    except Exception:
        log.exception("could not release jobs of an earlier process named %s", name)
    _register_cancel(rt)
    if args.metrics_port:
        _register_metrics(rt, args.metrics_port)
    print(
        f"tingxie worker {name} — device {c.label} ({c.compute_type}), {c.instances} instance(s), batch ≤ {c.batch_size}, "
        f"{concurrency} concurrent jobs; broker {settings.broker_url.split('@')[-1]}",
        flush=True,
    )
    worker = app.Worker(
        pool="threads",
        concurrency=concurrency,
        queues=[cq.QUEUE],
        hostname=f"{name}@{socket.gethostname()}",
        loglevel=args.loglevel.upper(),
        without_gossip=True,
        without_mingle=True,
        optimization="fair",
    )
    try:
        worker.start()  # blocks; SIGTERM = warm shutdown (running jobs finish, reserved ones go back)
    finally:
        stop.set()
        cq.set_runtime(None)
        manager.close()
    return worker.exitcode or 0


def add_command(sub, add_engine_args) -> None:
    w = sub.add_parser(
        "worker", help="run a scale-out worker (Celery; needs TINGXIE_BROKER_URL, DATABASE_URL, STORAGE)"
    )
    w.add_argument("--name", help="worker name shown in /api/system (default HOST-DEVICE-PID)")
    w.add_argument("--concurrency", type=int, help="jobs run at once (default batch size × instances × 2)")
    w.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    w.add_argument("--metrics-host", help="bind address of the metrics port (default 127.0.0.1)")
    w.add_argument("--base-url", help="public URL of the API, for job callbacks' result_url")
    w.add_argument("--loglevel", default="info", help="celery log level (default info)")
    add_engine_args(w)
    w.set_defaults(func=cmd_worker)
