"""The dynamic batcher: every request's windows meet here and leave in shared batches.

Four lanes, served in order: `interactive` (synchronous requests, real-time finals),
`first_partial` (a live sentence's first partial: what tells a speaker they are heard),
`partial` (later partials of a sentence: useful, but never worth delaying a final or
another sentence's first words), then `batch` (jobs, CLI runs). Partials alone never
hold every instance: with more than one, one stays free for the next final. Within a
lane owners take turns, so a 500-file batch cannot starve another user's job and a
3-minute request cannot hold back a short one; in the live lanes a second decode of a
window someone waits on (fallback, continuation, retry) goes ahead of the turns, so it
finishes a request instead of queueing it again. `instances` worker threads each take a
batch and run it on the engine (one CTranslate2 replica each). A batch is formed from
whatever is waiting, topped up for at most `max_wait_ms`, so a lone request is not held
back waiting for company.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from .engines.base import Recognizer, Submit, WindowResult  # noqa: F401  (WindowResult: what the futures resolve to)
from .windows import Window

log = logging.getLogger(__name__)

INTERACTIVE, FIRST_PARTIAL, PARTIAL, BATCH = "interactive", "first_partial", "partial", "batch"
LANES = (INTERACTIVE, FIRST_PARTIAL, PARTIAL, BATCH)  # served in this order
LIVE_LANES = (INTERACTIVE, FIRST_PARTIAL, PARTIAL)  # someone waits on each window
# An interactive batch holds at most this much audio: a batch of four 30 s windows
# would keep a 5 s request waiting several seconds for a free instance.
INTERACTIVE_BATCH_AUDIO_S = 30.0


def work_in_flight(batch_size: int, instances: int) -> int:
    """How many files or jobs to work on at once so that every instance finds a batch
    waiting: two batches' worth per instance (one decoding while the next gathers), at
    least 2. The local job queue's and a Celery worker's concurrency, and the files
    transcribe_many keeps open."""
    return max(2, batch_size * instances * 2)


class Overloaded(Exception):
    """The interactive lane is full: the caller should retry later (HTTP 503)."""


# Partials never hold every instance: a final (or a short request) that comes while
# every instance decodes partials waits a whole batch of them, which gave live finals'
# latency two modes. With more than one instance, batches of these lanes alone leave one
# free. Measured (docs/streaming.md, "An instance kept for finals"): validation Mandarin,
# 16 streams, final p95 4.9 → 2.9–4.5 s and first-partial p95 8.6 → 4.1 s; 8 unchanged.
PARTIAL_LANES = (FIRST_PARTIAL, PARTIAL)


@dataclass
class _Item:
    window: Window
    future: Future
    owner: str
    key: tuple
    enqueued: float
    lane: str = BATCH


@dataclass
class Stats:
    batches: int = 0
    windows: int = 0
    audio_seconds: float = 0.0
    busy_seconds: float = 0.0
    batch_sizes: collections.Counter[int] = field(default_factory=collections.Counter)
    stage_seconds: collections.defaultdict[str, float] = field(default_factory=lambda: collections.defaultdict(float))
    failures: int = 0
    oom_splits: int = 0

    def to_dict(self) -> dict:
        return {
            "batches": self.batches,
            "windows": self.windows,
            "audio_seconds": round(self.audio_seconds, 2),
            "busy_seconds": round(self.busy_seconds, 2),
            "mean_batch_size": round(self.windows / self.batches, 2) if self.batches else 0.0,
            "max_batch_size": max(self.batch_sizes) if self.batch_sizes else 0,
            "batch_sizes": dict(sorted(self.batch_sizes.items())),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "failures": self.failures,
            "oom_splits": self.oom_splits,
        }


def _is_oom(exc: BaseException) -> bool:
    msg = str(exc).lower()
    return "out of memory" in msg or "cuda_error_out_of_memory" in msg


class Scheduler:
    def __init__(
        self,
        engine: Recognizer | Callable[[], Recognizer],
        max_batch_size: int = 4,
        max_wait_ms: float = 5.0,
        instances: int = 1,
        interactive_limit: int = 64,
        on_batch: Callable[[int, float, dict], None] | None = None,
        max_audio_s: float = 0.0,
        queued_audio_limit_s: float = 0.0,
    ):
        self._engine = engine
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.instances = max(1, instances)
        self.interactive_limit = interactive_limit
        self.on_batch = on_batch
        # Bounds on audio, not windows: silence makes no windows but still costs decode
        # and VAD time. Longest file accepted, and seconds of audio that admitted
        # requests may hold at once (0 = no limit), both checked by `admit_audio`.
        self.max_audio_s = max_audio_s
        self.queued_audio_limit_s = queued_audio_limit_s
        self._admitted_audio = 0.0
        self.stats = Stats()
        # lane → owner → that owner's waiting windows (insertion order = turn order)
        self._lanes: dict[str, collections.OrderedDict[str, collections.deque[_Item]]] = {
            lane: collections.OrderedDict() for lane in LANES
        }
        self._cond = threading.Condition()
        self._closed = False
        self._busy = 0
        self._partial_busy = 0  # instances decoding batches of partials only
        self._threads = [
            threading.Thread(target=self._worker, name=f"tingxie-instance-{i}", daemon=True)
            for i in range(self.instances)
        ]
        for t in self._threads:
            t.start()

    # -- public ------------------------------------------------------------------
    @property
    def engine(self) -> Recognizer:
        return self._engine() if callable(self._engine) and not hasattr(self._engine, "decode") else self._engine  # type: ignore[return-value]

    def submit(
        self, window: Window, lane: str = BATCH, owner: str = "", check_capacity: bool = False, follow_up: bool = False
    ) -> Future:
        """Queue one window; the future resolves to its WindowResult.

        `follow_up`: a second decode of a window someone already waits on (a temperature
        fallback, a continuation, speech decoded again). In the live lanes it goes first,
        ahead of its owner's turn: sent to the back of the turns each time, a short
        request whose window falls back through five temperatures waited for every other
        client's window five times over (a 1.6 s clip: 2 s alone, 5-8 s among four
        clients; the request figure's p95 was that one clip). Each window has a bounded
        number of them, so an owner cannot hold the front. Jobs keep plain turns."""
        fut: Future = Future()
        engine = self.engine
        item = _Item(window, fut, owner, engine.batch_key(window), time.monotonic(), lane)
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler is closed")
            queues = self._lanes[lane]
            if check_capacity and lane != BATCH:
                waiting = sum(self._count(x) for x in LIVE_LANES)
                if waiting >= self.interactive_limit:
                    raise Overloaded(f"{waiting} windows already wait in the interactive lane")
            q = queues.setdefault(owner, collections.deque())
            if follow_up and lane in LIVE_LANES:
                q.appendleft(item)
                queues.move_to_end(owner, last=False)
            else:
                q.append(item)
            self._cond.notify()
        return fut

    def second_looks(self, lane: str, owner: str) -> Submit:
        """What a window's finishing step (`engines.base.refine`, `transcribe.recover`)
        decodes through: blocking, as `owner` in `lane`, each decode a `follow_up`."""
        return lambda w: self.submit(w, lane, owner, follow_up=True).result()

    def admit_audio(self, seconds: float) -> float:
        """Admit a request of `seconds` of audio or raise Overloaded (HTTP 503): the
        audio of admitted, unfinished requests must stay within the limit, but one
        request is always admitted when none is running (the longest file is bounded by
        `max_audio_s`). Returns what to pass to `release_audio` when it finishes."""
        seconds = max(float(seconds), 0.0)
        with self._cond:
            held, limit = self._admitted_audio, self.queued_audio_limit_s
            if limit > 0 and held > 0 and held + seconds > limit:
                raise Overloaded(
                    f"{held:.0f} s of audio already queued; this request's {seconds:.0f} s would pass the limit of {limit:.0f} s"
                )
            self._admitted_audio = held + seconds
        return seconds

    def release_audio(self, seconds: float) -> None:
        with self._cond:
            self._admitted_audio = max(0.0, self._admitted_audio - seconds)

    def cancel(self, owner: str) -> int:
        """Drop an owner's queued windows (a cancelled job); returns how many."""
        with self._cond:
            items = [i for queues in self._lanes.values() for i in queues.pop(owner, ())]
        for i in items:
            i.future.cancel()
        return len(items)

    def depth(self) -> dict[str, float]:
        with self._cond:
            return {
                INTERACTIVE: sum(self._count(x) for x in LIVE_LANES),
                BATCH: self._count(BATCH),
                "busy_instances": self._busy,
                "queued_audio_s": round(self._admitted_audio, 1),
            }

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5)

    # -- batching ----------------------------------------------------------------
    def _count(self, lane: str) -> int:
        return sum(len(q) for q in self._lanes[lane].values())

    def _pending(self) -> int:
        return sum(self._count(lane) for lane in LANES)

    def _take(self, size: int) -> list[_Item]:
        """Form one batch (caller holds the lock): the interactive lane first, then the
        batch lane; within a lane owners take turns (one window each per round), so a
        3-minute request cannot hold a 5-second one back, nor a 500-file batch another
        user's job. Every item shares the first item's batch key."""
        batch: list[_Item] = []
        key = None
        audio = 0.0
        cap: float | None = None  # audio seconds per batch, when it serves someone waiting
        for lane in LANES:
            if lane in PARTIAL_LANES and not self._partials_may_start():
                continue
            queues = self._lanes[lane]
            if not batch and lane != BATCH and queues:
                cap = INTERACTIVE_BATCH_AUDIO_S
            progress = True
            while len(batch) < size and queues and progress:
                progress = False
                for owner in list(queues):
                    q = queues[owner]
                    idx = next((k for k, it in enumerate(q) if key is None or it.key == key), None)
                    if idx is None:
                        continue
                    if batch and cap is not None and audio + q[idx].window.seconds > cap:
                        continue  # keep interactive batches short: someone waits on each
                    it = q[idx]
                    del q[idx]
                    key = it.key
                    batch.append(it)
                    audio += it.window.seconds
                    progress = True
                    queues.move_to_end(owner)  # this owner goes to the back
                    if not q:
                        del queues[owner]
                    if len(batch) >= size:
                        break
        return batch

    def _partials_may_start(self) -> bool:
        """Whether a batch of partials may take an instance: always with one instance
        (nothing to keep free), else while another stays free for finals."""
        return self.instances == 1 or self._partial_busy < self.instances - 1

    def _takeable(self) -> int:
        """Waiting windows a free instance may take now."""
        return sum(self._count(lane) for lane in LANES if lane not in PARTIAL_LANES or self._partials_may_start())

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._closed and self._takeable() == 0:
                    self._cond.wait()
                if self._closed:
                    return
                # top up: wait briefly for company when the queue is short
                deadline = time.monotonic() + self.max_wait
                while self._pending() < self.max_batch_size and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                # Spread a short queue over the idle instances instead of giving one
                # instance everything while another waits; a long queue still fills
                # whole batches.
                idle = max(1, self.instances - self._busy)
                batch = self._take(min(self.max_batch_size, max(1, -(-self._takeable() // idle))))
                partials_only = bool(batch) and all(b.lane in PARTIAL_LANES for b in batch)
                self._busy += 1
                self._partial_busy += partials_only
            try:
                if batch:
                    self._run([b for b in batch if b.future.set_running_or_notify_cancel()])
            finally:
                with self._cond:
                    self._busy -= 1
                    self._partial_busy -= partials_only
                    if partials_only:
                        self._cond.notify()  # waiting partials may go on

    def _run(self, batch: list[_Item]) -> None:
        if not batch:
            return
        t0 = time.perf_counter()
        try:
            results = self.engine.decode([b.window for b in batch])
        except Exception as exc:  # split to isolate a bad window, or to survive GPU OOM
            if _is_oom(exc):
                self.stats.oom_splits += 1
                log.warning("out of memory on a batch of %d windows: splitting", len(batch))
            if len(batch) > 1:
                half = len(batch) // 2
                self._run(batch[:half])
                self._run(batch[half:])
                return
            self.stats.failures += 1
            log.exception("window failed")
            batch[0].future.set_exception(exc)
            return
        elapsed = time.perf_counter() - t0
        seconds = sum(b.window.seconds for b in batch)
        with self._cond:
            s = self.stats
            s.batches += 1
            s.windows += len(batch)
            s.audio_seconds += seconds
            s.busy_seconds += elapsed
            s.batch_sizes[len(batch)] += 1
            for r in results:
                for k, v in r.timings.items():
                    s.stage_seconds[k] += v
        if self.on_batch:
            self.on_batch(len(batch), seconds, results[0].timings if results else {})
        for b, r in zip(batch, results, strict=False):
            b.future.set_result(r)
