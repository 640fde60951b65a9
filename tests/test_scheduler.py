"""The dynamic batcher, with a fake engine: which windows share a batch, which lane and
owner go first, admission control, and surviving a GPU that runs out of memory. The
engine is a stand-in so these run in milliseconds and decide nothing by timing; real
decoding through the scheduler is tested in test_pipeline.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers import wait_until

from tingxie import windows as windows_mod
from tingxie.engines.whisper.engine import WindowResult
from tingxie.engines.whisper.reference import FifoLock
from tingxie.scheduler import BATCH, FIRST_PARTIAL, INTERACTIVE, PARTIAL, Overloaded, Scheduler
from tingxie.types import DecodeOptions, Segment, SpeechSpan

SR = 16000


class FakeEngine:
    """Decodes a window to the text it was given (`options.initial_prompt`), records
    every batch, and can hold its first batch until released (an instance kept busy)."""

    model_id = "fake"

    def __init__(self, hold_first: bool = False, fail_over: int | None = None, fail_text: str | None = None):
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.fail_over = fail_over  # batches larger than this raise "out of memory"
        self.fail_text = fail_text  # a window that always fails
        self._lock = threading.Lock()

    def batch_key(self, window) -> tuple:
        return (window.options.beam_size,)

    def decode(self, windows) -> list[WindowResult]:
        names = [w.options.initial_prompt for w in windows]
        with self._lock:
            self.batches.append(names)
        self.started.set()
        self.release.wait(10)
        if self.fail_over is not None and len(windows) > self.fail_over:
            raise RuntimeError("CUDA failed with error out of memory")
        if self.fail_text in names:
            raise ValueError("cannot decode this window")
        return [
            WindowResult([Segment(0, w.start, w.end, n, n)], "en", 1.0) for w, n in zip(windows, names, strict=False)
        ]


def window(name: str, seconds: float = 2.0, beam_size: int = 5) -> windows_mod.Window:
    x = np.zeros(int(seconds * SR), np.float32)
    return windows_mod.pack(
        x, [SpeechSpan(0, len(x))], DecodeOptions(language="en", beam_size=beam_size, initial_prompt=name)
    )[0]


def text(fut) -> str:
    return fut.result(10).segments[0].text


def test_windows_of_different_requests_share_batches_and_each_gets_its_own_result():
    engine = FakeEngine(hold_first=True)
    s = Scheduler(engine, max_batch_size=4, max_wait_ms=0, instances=1)
    try:
        first = s.submit(window("warm-up"), BATCH, owner="req-0")
        assert engine.started.wait(10)  # the instance is busy: the next four queue up
        futs = {f"req-{i}": s.submit(window(f"req-{i}"), BATCH, owner=f"req-{i}") for i in range(1, 5)}
        engine.release.set()
        assert text(first) == "warm-up"
        assert {k: text(f) for k, f in futs.items()} == {k: k for k in futs}
        assert sorted(engine.batches[1]) == sorted(futs)  # one batch of four owners
        assert s.stats.batches == 2 and max(s.stats.batch_sizes) == 4
    finally:
        s.close()


def test_windows_that_cannot_share_a_generate_call_go_in_separate_batches():
    engine = FakeEngine(hold_first=True)
    s = Scheduler(engine, max_batch_size=4, max_wait_ms=0, instances=1)
    try:
        s.submit(window("blocker"), BATCH, "x")
        assert engine.started.wait(10)
        futs = [s.submit(window(f"b5-{i}"), BATCH, f"o{i}") for i in range(2)]
        futs += [s.submit(window(f"b1-{i}", beam_size=1), BATCH, f"p{i}") for i in range(2)]
        engine.release.set()
        assert [text(f) for f in futs] == ["b5-0", "b5-1", "b1-0", "b1-1"]
        assert sorted(sorted(b) for b in engine.batches[1:]) == [["b1-0", "b1-1"], ["b5-0", "b5-1"]]
    finally:
        s.close()


def test_interactive_lane_goes_first_and_batch_owners_take_turns():
    engine = FakeEngine(hold_first=True)
    s = Scheduler(engine, max_batch_size=1, max_wait_ms=0, instances=1)
    try:
        blocker = s.submit(window("blocker"), BATCH, "big")  # occupies the instance
        assert engine.started.wait(10)
        big = [s.submit(window(f"big-{i}"), BATCH, "big") for i in range(4)]
        other = s.submit(window("other"), BATCH, "other")
        partial = s.submit(window("partial"), PARTIAL, "live")
        first = s.submit(window("first"), FIRST_PARTIAL, "live-2")  # queued after the refresh
        urgent = s.submit(window("urgent"), INTERACTIVE, "sync")
        engine.release.set()
        for f in [blocker, *big, other, partial, first, urgent]:
            f.result(10)
        order = [b[0] for b in engine.batches[1:]]
        # interactive, then a sentence's first partial, then other sentences' refreshes, then batch
        assert order[:3] == ["urgent", "first", "partial"]
        assert order.index("other") <= 4  # takes its turn after one of big's, not after all four
        assert [n for n in order if n.startswith("big-")] == [f"big-{i}" for i in range(4)]  # an owner's own order kept
    finally:
        s.close()


def test_a_second_decode_of_a_waiting_request_goes_before_other_clients_windows():
    """A request whose window falls back (or is continued) must not wait for every other
    client's window again at each of its second decodes: with four clients a 1.6 s clip
    that fell back five times took 5-8 s instead of 2. Jobs keep plain turns."""
    engine = FakeEngine(hold_first=True)
    s = Scheduler(engine, max_batch_size=1, max_wait_ms=0, instances=1)
    try:
        s.submit(window("blocker"), BATCH, "x")
        assert engine.started.wait(10)
        waiting = [s.submit(window(f"client-{i}"), INTERACTIVE, f"client-{i}") for i in range(3)]
        again = s.submit(window("fallback"), INTERACTIVE, "slow-request", follow_up=True)
        jobs = [s.submit(window(f"job-{i}"), BATCH, f"job-{i}") for i in range(2)]
        job_again = s.submit(window("job-fallback"), BATCH, "job-9", follow_up=True)
        engine.release.set()
        for f in [*waiting, again, *jobs, job_again]:
            f.result(10)
        order = [b[0] for b in engine.batches[1:]]
        assert order == ["fallback", "client-0", "client-1", "client-2", "job-0", "job-1", "job-fallback"]
    finally:
        s.close()


class HoldPartials(FakeEngine):
    """Holds every batch of partials until released; anything else decodes at once."""

    def __init__(self):
        super().__init__(hold_first=True)
        self.partials_started = 0

    def decode(self, windows):
        names = [w.options.initial_prompt for w in windows]
        if all(n.startswith("partial") for n in names):
            with self._lock:
                self.partials_started += 1
            return super().decode(windows)
        with self._lock:
            self.batches.append(names)
        return [
            WindowResult([Segment(0, w.start, w.end, n, n)], "en", 1.0) for w, n in zip(windows, names, strict=True)
        ]


def test_partials_leave_an_instance_free_for_a_final():
    """Live streams' partials never hold every instance: a final (or a short request) that
    comes while partials are being decoded starts on the instance they leave free instead
    of waiting a whole batch of partials. Without it, finals' latency had two modes and the
    bench's stream count moved by half between runs."""
    engine = HoldPartials()
    s = Scheduler(engine, max_batch_size=1, max_wait_ms=0, instances=2)
    try:
        partials = [s.submit(window(f"partial-{i}"), PARTIAL if i else FIRST_PARTIAL, f"live-{i}") for i in range(3)]
        wait_until(lambda: engine.partials_started >= 1)
        final = s.submit(window("final"), INTERACTIVE, "live-9")
        assert text(final) == "final"  # decoded while the partials are still held
        assert engine.partials_started == 1  # the free instance went to the final, not to a partial
        engine.release.set()
        assert [text(f) for f in partials] == ["partial-0", "partial-1", "partial-2"]
    finally:
        engine.release.set()
        s.close()


def test_one_instance_still_decodes_partials():
    engine = FakeEngine()
    s = Scheduler(engine, max_batch_size=1, max_wait_ms=0, instances=1)
    try:
        assert text(s.submit(window("partial-0"), PARTIAL, "live")) == "partial-0"
    finally:
        s.close()


def test_interactive_admission_control_refuses_beyond_the_limit_and_loses_nothing_accepted():
    engine = FakeEngine(hold_first=True)
    s = Scheduler(engine, max_batch_size=1, max_wait_ms=0, instances=1, interactive_limit=2)
    try:
        busy = s.submit(window("busy"), INTERACTIVE, "a", check_capacity=True)
        assert engine.started.wait(10)
        accepted = [s.submit(window(f"w{i}"), INTERACTIVE, "b", check_capacity=True) for i in range(2)]
        with pytest.raises(Overloaded):
            s.submit(window("one-too-many"), INTERACTIVE, "c", check_capacity=True)
        batch_work = s.submit(window("job"), BATCH, "d", check_capacity=True)  # jobs queue without limit
        engine.release.set()
        assert [text(f) for f in [busy, *accepted, batch_work]] == ["busy", "w0", "w1", "job"]
        assert "one-too-many" not in [n for b in engine.batches for n in b]
    finally:
        s.close()


def test_gpu_out_of_memory_splits_the_batch_without_failing():
    engine = FakeEngine(hold_first=True, fail_over=1)
    s = Scheduler(engine, max_batch_size=4, max_wait_ms=0, instances=1)
    try:
        first = s.submit(window("r0"), BATCH, "r0")
        assert engine.started.wait(10)
        futs = [first] + [s.submit(window(f"r{i}"), BATCH, f"r{i}") for i in range(1, 4)]
        engine.release.set()
        assert [text(f) for f in futs] == ["r0", "r1", "r2", "r3"]
        assert s.stats.oom_splits >= 1 and s.stats.failures == 0
        assert max(len(b) for b in engine.batches) > 1  # it did try them together
    finally:
        s.close()


def test_one_bad_window_fails_alone_and_its_batch_mates_succeed():
    engine = FakeEngine(hold_first=True, fail_text="bad")
    s = Scheduler(engine, max_batch_size=4, max_wait_ms=0, instances=1)
    try:
        first = s.submit(window("ok-0"), BATCH, "a")
        assert engine.started.wait(10)
        rest = {n: s.submit(window(n), BATCH, n) for n in ("ok-1", "bad", "ok-2")}
        engine.release.set()
        assert text(first) == "ok-0" and text(rest["ok-1"]) == "ok-1" and text(rest["ok-2"]) == "ok-2"
        with pytest.raises(ValueError, match="cannot decode"):
            rest["bad"].result(10)
        assert s.stats.failures == 1
    finally:
        s.close()


def test_cancel_drops_an_owners_queued_windows_only():
    engine = FakeEngine(hold_first=True)
    s = Scheduler(engine, max_batch_size=1, max_wait_ms=0, instances=1)
    try:
        s.submit(window("running"), BATCH, "job-1")
        assert engine.started.wait(10)
        queued = [s.submit(window(f"job-1-{i}"), BATCH, "job-1") for i in range(3)]
        keep = s.submit(window("job-2"), BATCH, "job-2")
        assert s.cancel("job-1") == 3
        engine.release.set()
        assert text(keep) == "job-2"
        assert all(f.cancelled() for f in queued)
        assert not [n for b in engine.batches for n in b if n.startswith("job-1-")]
    finally:
        s.close()


def test_fifo_lock_serves_in_arrival_order():
    lock, order, threads = FifoLock(), [], []

    def take(k: int) -> None:
        with lock:
            order.append(k)

    with lock:
        for k in range(5):
            t = threading.Thread(target=take, args=(k,))
            t.start()
            threads.append(t)
            wait_until(lambda k=k: lock.holders == k + 2)  # k holds its ticket before k + 1 arrives
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]
