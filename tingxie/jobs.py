"""Running stored jobs: the same `run_job` serves the in-process queue (default) and
Celery workers (scale-out), so both give identical results and states.

A job is exactly-once by construction: `claim_job` moves it queued→running atomically
and `finish_job` writes only while it is still running, so a redelivered or recovered
job never produces two results.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

import httpx

from . import options as options_mod
from .manager import ModelManager
from .scheduler import BATCH
from .transcribe import transcribe
from .types import AudioError, OptionsError

log = logging.getLogger(__name__)


class PermanentError(Exception):
    """The job can never succeed (bad audio, bad options): fail it, do not retry."""


def job_options(opts: dict):
    """Stored job options → pipeline options (validated again: stored data may be old)."""
    return options_mod.build_options(**{k: v for k, v in opts.items() if k in _OPTION_NAMES})


_OPTION_NAMES = {
    "language", "task", "beam_size", "hotwords", "initial_prompt", "word_timestamps", "temperature", "itn", "zh_script",
    "vad", "vad_threshold", "vad_min_silence_ms", "vad_speech_pad_ms", "vad_max_segment_s",
}


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
        decode, vad, text = job_options(job.get("options") or {})
        if not job.get("audio_path") or not Path(job["audio_path"]).exists():
            raise PermanentError("audio file is missing from storage")
        sched = manager.scheduler(job.get("model") or None)
        last = [0.0]

        def progress(done: int, total: int, secs: float) -> None:
            now = time.monotonic()
            if now - last[0] > 0.5 or done == total:
                last[0] = now
                store.set_progress(job_id, done / total if total else 1.0)

        owner = job.get("batch_id") or job_id
        t = transcribe(job["audio_path"], sched, decode, vad, text, lane=BATCH, owner=owner, on_progress=progress)
    except (AudioError, OptionsError, PermanentError) as e:
        # name the file as the user uploaded it, not by its storage name
        reason = str(e).replace(Path(job.get("audio_path") or "-").name, job.get("filename") or "audio")
        store.fail_job(job_id, reason)
        log.info("job %s failed: %s", job_id, type(e).__name__)
        return "failed"
    if store.finish_job(job_id, t.to_dict(), t.text, t.language, t.duration, t.processing_time):
        return "done"
    current = store.get_job(job_id)
    return current["state"] if current else "deleted"


def deliver_callback(store, job_id: str, base_url: str, retries: int = 5) -> bool:
    """POST {id, state, result_url} to the job's callback_url, with exponential backoff."""
    job = store.get_job(job_id)
    if not job or not job.get("callback_url"):
        return False
    body = {"id": job_id, "state": job["state"], "error": job.get("error"), "result_url": f"{base_url}/api/jobs/{job_id}/result"}
    delay = 0.5
    for attempt in range(1, retries + 1):
        try:
            r = httpx.post(job["callback_url"], json=body, timeout=10)
            if r.status_code < 300:
                store.set_callback_state(job_id, "delivered", attempt)
                return True
        except httpx.HTTPError:
            pass
        store.set_callback_state(job_id, "pending", attempt)
        time.sleep(delay)
        delay = min(delay * 2, 30)
    store.set_callback_state(job_id, "failed", retries)
    return False


class LocalQueue:
    """The embedded queue: job ids in memory, their state in the database. At start,
    jobs that were queued or running when the server stopped are queued again."""

    def __init__(self, store, manager: ModelManager, concurrency: int, base_url: str, callback_retries: int = 5):
        self.store = store
        self.manager = manager
        self.base_url = base_url
        self.callback_retries = callback_retries
        self._q: queue.Queue[str | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._loop, name=f"tingxie-job-{i}", daemon=True) for i in range(concurrency)]
        self._stop = False

    def start(self) -> int:
        recovered = self.store.reset_running()
        jobs = self.store.unfinished_jobs()
        for t in self._threads:
            t.start()
        for j in jobs:
            if j["kind"] != "stream":
                self._q.put(j["id"])
        if jobs:
            log.info("recovered %d unfinished job(s) (%d were running)", len(jobs), recovered)
        return len(jobs)

    def submit(self, job_id: str) -> None:
        self._q.put(job_id)

    def cancel(self, job_id: str) -> None:
        for s in self.manager.schedulers():
            s.cancel(job_id)

    def depth(self) -> int:
        return self._q.qsize()

    def stop(self) -> None:
        self._stop = True
        for _ in self._threads:
            self._q.put(None)

    def _loop(self) -> None:
        while not self._stop:
            job_id = self._q.get()
            if job_id is None:
                return
            try:
                run_job(self.store, self.manager, job_id, "local")
            except Exception as e:  # unexpected: keep the reason, keep serving
                log.exception("job %s crashed", job_id)
                self.store.fail_job(job_id, f"internal error: {type(e).__name__}")
            job = self.store.get_job(job_id)
            if job and job.get("callback_url") and job["state"] in ("done", "failed"):
                threading.Thread(target=deliver_callback, args=(self.store, job_id, self.base_url, self.callback_retries), daemon=True).start()
