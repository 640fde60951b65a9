"""Real-time recognition: one `StreamSession` per live connection.

PCM16 frames come in (any of the accepted rates, resampled to 16 kHz), a `StreamingVad`
finds sentence boundaries, and the open sentence is re-decoded every
`partial_interval_ms` of new audio (greedy, at most one partial in flight per stream:
when the previous partial has not come back the tick is skipped, which is the
back-pressure that keeps many streams from piling work on the model). At an endpoint
(VAD end after `endpoint_silence_ms` of silence, `max_sentence_s` reached, flush or
stop) the sentence is decoded with the request's `beam_size` and finished exactly as a
file's window is (`transcribe.finish_window`: temperature fallback, junk and loop
guards, speech that came back without text decoded again), then sent as a final;
finals leave in strict sentence order even when their decodes finish out of order.

Two things keep final latency flat under load. A long sentence is decoded in parts
while it is spoken (cut at its quietest point), so the endpoint leaves only its tail to
decode and partials re-decode only the undecoded part. And the final's decode starts
as soon as the pause reaches the VAD pad, when its window is already fixed; the rest
of the endpoint silence overlaps the decode instead of preceding it. (The reference
pipeline, engines/whisper/reference.py, does neither: it decodes each whole sentence after its
endpoint.)

All decoding goes through the shared Scheduler's interactive lane with the session id
as owner, so streams batch with each other and run ahead of batch jobs. The scheduler
returns concurrent futures; they are bridged with `asyncio.wrap_future`, so the class is
driven from one asyncio task (the WebSocket handler) and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import unicodedata
import uuid
import wave
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from . import text as text_mod
from .audio import StreamResampler, pcm16_to_float
from .engines.base import ModelSpec, StreamingRecognizer, WindowResult, check_options, refine, takes_whole_requests
from .request import StreamOptions
from .scheduler import FIRST_PARTIAL, INTERACTIVE, PARTIAL, Overloaded, Scheduler
from .transcribe import finish_window, no_text_warnings
from .types import (
    SAMPLE_RATE,
    WINDOW_SECONDS,
    DecodeOptions,
    OptionsError,
    Segment,
    TextOptions,
    Transcript,
    VadOptions,
)
from .vad import StreamingVad
from .windows import PACK_LIMIT_S, Piece, Window

log = logging.getLogger(__name__)

# A long sentence is decoded in parts while it is spoken: once its undecoded audio
# reaches PART_TRIGGER_S, the part up to its quietest point at least PART_MIN_S in
# goes to the model (a final's decode), so at the endpoint only the tail is left to decode and
# partials re-decode only what is not yet final. Measured on the eval corpus (run-on
# podcast sentences of 10-21 s): final p95 at 4 streams fell from 3.1 s, at no cost
# in accuracy (docs/streaming.md).
PART_TRIGGER_S = 10.0
PART_MIN_S = 5.0
_PART_KEEP_S = 2.0  # audio kept after a cut: a word may go on, and a lone word decodes badly
PARTIAL_BEAM = 1  # partials are re-decoded often and replaced: greedy; finals take the request's beam
_KEEP_BEFORE_S = 2.0  # audio kept before an open sentence (VAD dates starts back)
_MIN_SENTENCE_S = 0.2  # a flush remainder shorter than this is not decoded
# Finals' finishing steps wait on their second decodes in threads of their own: in the
# event loop's default pool (6 threads on 2 cores) a few finals waiting on retries would
# hold up every other stream's final. Threads start only when needed.
_FINISHING = ThreadPoolExecutor(64, thread_name_prefix="tingxie-finish")


def window_limit(spec: ModelSpec, max_sentence_s: float) -> float:
    """The longest window a live sentence is decoded in (longer speech is cut at its
    quietest point): the request's `max_sentence_s`, no longer than the VAD's longest
    span for files (VadOptions.max_speech_s) nor the model's input less the room Whisper
    needs after the last word (windows.PACK_LIMIT_S)."""
    return min(max_sentence_s, VadOptions().max_speech_s, spec.max_input_s - (WINDOW_SECONDS - PACK_LIMIT_S))


# Audio of a stream is turned into windows for the decoder only while less than this
# much of it waits for the decoder; the rest is held as received (PCM16, 32 kB/s), so a
# fast sender costs memory in proportion to its audio, not to windows and their copies.
FEED_AHEAD_S = 10.0


class TooFast(Exception):
    """The client sends audio faster than the decoder can serve it, for too long."""


def parse_options(d: Any) -> StreamOptions:
    """Validate the client's first message (a JSON object of request.StreamOptions)."""
    if not isinstance(d, dict):
        raise OptionsError("the first message must be a JSON object of options")
    return StreamOptions.parse(d, known_only=True)


@dataclass
class StreamStats:
    """Latencies of one stream, in seconds. first_update: first audio of a sentence
    arrived → its first partial sent; from_speech_start: the VAD confirmed speech →
    first partial sent; final: end of speech (the VAD end sample's arrival time, or the
    stop/flush request when that came first) → final sent; lag: audio received minus
    audio covered by the update, at each update."""

    first_update: list[float] = field(default_factory=list)
    from_speech_start: list[float] = field(default_factory=list)
    final: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    partials_sent: int = 0
    partials_skipped: int = 0
    parts: int = 0  # parts of long sentences decoded while still spoken
    early_finals: int = 0  # finals whose decode began at the pause, before the endpoint
    second_looks: int = 0  # finals' windows decoded again (fallback, continuation, recovery)
    max_backlog_s: float = 0.0  # most audio that waited for the decoder at once
    throttled_s: float = 0.0  # time received audio was held because the decoder was behind
    throttled_since: float | None = None
    dropped_windows: int = 0  # queued windows dropped when the client left

    def summary(self) -> dict[str, Any]:
        def agg(xs: list[float]) -> dict[str, float]:
            if not xs:
                return {"n": 0}
            a = np.asarray(xs)
            return {
                "n": len(xs),
                "mean": round(float(a.mean()), 3),
                "p50": round(float(np.percentile(a, 50)), 3),
                "p95": round(float(np.percentile(a, 95)), 3),
                "max": round(float(a.max()), 3),
            }

        return {
            "first_update_s": agg(self.first_update),
            "from_speech_start_s": agg(self.from_speech_start),
            "final_s": agg(self.final),
            "lag_s": agg(self.lag),
            "partials_sent": self.partials_sent,
            "partials_skipped": self.partials_skipped,
            "parts": self.parts,
            "early_finals": self.early_finals,
            "second_looks": self.second_looks,
            "max_backlog_s": round(self.max_backlog_s, 2),
            "throttled_s": round(self.throttled_s, 2),
            "dropped_windows": self.dropped_windows,
        }


@dataclass
class _Part:
    start: int
    end: int
    future: Future  # → WindowResult of the first decode
    window: Window  # what was decoded: the finishing step may decode parts of it again


@dataclass
class _Sentence:
    index: int
    start: int  # absolute samples at 16 kHz
    first_audio_wall: float  # when the sentence's first sample arrived
    speech_wall: float  # when the VAD confirmed speech
    end: int | None = None
    first_partial_sent: bool = False
    partial_audio_end: int = 0  # audio end of the last partial requested
    partial_future: Future | None = None  # its partial in flight (one per sentence)
    after_flush: bool = False  # begun by a flush mid-speech: a sliver of it is not decoded
    parts: list[_Part] = field(default_factory=list)  # decoded while still spoken
    speculative: _Part | None = None  # the final's decode, started early

    @property
    def tail(self) -> int:
        """Where the audio not yet given to a part begins."""
        return self.parts[-1].end if self.parts else self.start


@dataclass
class _Final:
    sentence: _Sentence
    futures: list[asyncio.Future]  # the sentence's parts in order, then its tail
    endpoint_wall: float


def _joined(results: list[WindowResult], lang: str) -> str:
    """Raw text of consecutive windows of one sentence, repetition loops removed. A
    window cut mid-sentence often ends with a full stop; when the next one goes on in
    lower case, the stop goes."""
    sep = "" if text_mod.is_cjk(lang) else " "
    texts = [t for r in results for seg in r.segments if (t := text_mod.collapse_repetitions(seg.raw_text)[0].strip())]
    for i in range(len(texts) - 1):
        if texts[i].endswith(".") and texts[i + 1][:1].islower():
            texts[i] = texts[i][:-1]
    return sep.join(texts)


def _final_text(results: list[WindowResult], raw: str, lang: str, opts: TextOptions, open_end: bool) -> str:
    """The text users see for consecutive windows of one sentence. Chinese is finalised
    segment by segment, so each of Whisper's clause boundaries gets its mark, and the
    sentence ends with one (a real-time final is a sentence: the speaker paused);
    `open_end`: a partial, still being spoken."""
    if not raw:
        return ""
    if not (opts.punctuate and text_mod.is_chinese(lang)):
        return text_mod.finalize(raw, lang, opts)
    texts = [t for r in results for seg in r.segments if (t := text_mod.collapse_repetitions(seg.raw_text)[0].strip())]
    clauses = [text_mod.Clause(f) for t in texts if (f := text_mod.finalize(t, lang, opts))]
    return "".join(text_mod.punctuate(clauses, lang, open_end=open_end))


Send = Callable[[dict[str, Any]], Awaitable[None]]


class StreamSession:
    """One live recognition session. Drive it from a single asyncio task:
    `await feed(pcm)`, `await flush()`, `await finish()`; results go to `send`.

    `on_update(kind, seconds)` (optional) observes latencies for server metrics.
    `sentence_events`: also tell the client where each sentence starts and ends
    (`speech_started` / `speech_stopped`, and `dropped` for one not decoded), and send a
    final for every sentence, an empty one included, with its `sentence` index: what a
    protocol whose items are turns needs (the OpenAI Realtime API, realtime_api.py).
    """

    def __init__(
        self,
        scheduler: Scheduler,
        options: StreamOptions,
        send: Send,
        session_id: str | None = None,
        audio_path: Path | None = None,
        on_update: Callable[[str, float], None] | None = None,
        sentence_events: bool = False,
        max_backlog_s: float = 0.0,
    ) -> None:
        self.scheduler = scheduler
        self.sentence_events = sentence_events
        self._events: list[dict[str, Any]] = []  # sentence events not yet sent
        # Audio submitted to the decoder and not yet decoded; `feed` waits while it is
        # over `max_backlog_s` (0 = no bound), so a client sending faster than the
        # decoder keeps up is slowed to its pace (its frames wait in its own socket)
        # instead of piling windows, memory and minutes of work onto the server.
        self.max_backlog_s = max_backlog_s
        self._backlog = 0.0  # seconds submitted to the decoder, not yet decoded
        self._held: collections.deque[tuple[bytes, float]] = collections.deque()  # (PCM16, arrival) not yet fed
        self._held_s = 0.0
        self._feed_lock = asyncio.Lock()
        self._drained = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.options = options
        self.id = session_id or uuid.uuid4().hex
        self._send_fn = send
        self.on_update = on_update
        self.stats = StreamStats()
        self.language: str | None = options.language
        self.language_probability = 1.0 if options.language else 0.0
        self.finals: list[Segment] = []
        self.no_text: list[Segment] = []  # speech that gave no text even when decoded again
        self.started = time.time()
        self._t0 = time.monotonic()
        self._resampler = StreamResampler(options.sample_rate)
        self._window_s = window_limit(scheduler.engine.spec, options.max_sentence_s)
        vad_opts = VadOptions(
            threshold=options.vad_threshold, speech_pad_ms=options.vad_speech_pad_ms, max_speech_s=self._window_s
        )
        self._vad = StreamingVad(vad_opts, endpoint_silence_ms=options.endpoint_silence_ms)
        self._text = TextOptions(itn=options.itn, zh_script=options.zh_script)
        self._buf = np.zeros(0, np.float32)  # 16 kHz audio from absolute sample `_base`
        self._base = 0
        self.received = 0  # 16 kHz samples received
        self._arrivals: list[tuple[int, float]] = []  # (sample end, wall time) per frame
        self._open: _Sentence | None = None
        self._count = 0
        self._finals_q: asyncio.Queue[_Final | None] = asyncio.Queue()
        self._sender = asyncio.ensure_future(self._send_finals())
        self._send_lock = asyncio.Lock()
        self._pending_partials: set[asyncio.Future] = set()
        self._closed = False
        self._stop_wall: float | None = None
        self.connected = True
        self.audio_path = audio_path
        self._wav: wave.Wave_write | None = None
        if audio_path is not None:
            audio_path.parent.mkdir(parents=True, exist_ok=True)
            self._wav = wave.open(str(audio_path), "wb")
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(SAMPLE_RATE)

    # -- input ---------------------------------------------------------------------
    async def feed(self, pcm: bytes) -> None:
        """One binary frame of PCM16 mono at the session's sample rate. Never waits for
        the decoder (the socket keeps being read, so keepalive pings are answered): audio
        beyond FEED_AHEAD_S of decoder backlog is held as received and fed as the decoder
        catches up. More than `max_backlog_s` received and not yet decoded: TooFast."""
        if self._closed:
            raise RuntimeError("feed after finish")
        self._held.append((pcm, time.monotonic()))
        self._held_s += len(pcm) / 2 / self.options.sample_rate
        self.stats.max_backlog_s = max(self.stats.max_backlog_s, self.backlog_s)
        if self.max_backlog_s > 0 and self.backlog_s > self.max_backlog_s:
            raise TooFast(
                f"audio arrives faster than it can be decoded: {self.backlog_s:.1f} s received and not yet "
                f"decoded (at most {self.max_backlog_s:g} s); send audio in real time, or files to "
                "/v1/audio/transcriptions"
            )
        await self._pump(wait=False)

    async def _pump(self, wait: bool) -> None:
        """Feed held audio to the VAD and the decoder while its backlog has room; `wait`:
        until all is fed (flush, stop), waiting for the decoder between frames."""
        async with self._feed_lock:
            while self._held and not self._closed:
                if self.max_backlog_s > 0 and self._backlog > FEED_AHEAD_S:
                    if not wait:
                        if self.stats.throttled_since is None:
                            self.stats.throttled_since = time.monotonic()
                        return
                    self._drained.clear()
                    await self._drained.wait()
                    continue
                pcm, arrived = self._held.popleft()
                self._held_s = max(0.0, self._held_s - len(pcm) / 2 / self.options.sample_rate)
                x = self._resampler.feed(pcm16_to_float(pcm))
                await self._ingest(x, arrived)
            if self.stats.throttled_since is not None:
                self.stats.throttled_s += time.monotonic() - self.stats.throttled_since
                self.stats.throttled_since = None

    def _track(self, fut: Future, seconds: float) -> Future:
        """Count `seconds` of audio in the backlog until `fut` is decoded (or dropped)."""
        self._backlog += seconds
        self.stats.max_backlog_s = max(self.stats.max_backlog_s, self._backlog)

        def settled(_: Future) -> None:
            try:
                self._loop.call_soon_threadsafe(self._settle, seconds)
            except RuntimeError:  # the event loop is gone (server shutdown)
                pass

        fut.add_done_callback(settled)
        return fut

    def _settle(self, seconds: float) -> None:
        self._backlog = max(0.0, self._backlog - seconds)
        self._drained.set()
        if self._held and not self._closed and not self._feed_lock.locked() and self._backlog <= FEED_AHEAD_S:
            task = asyncio.ensure_future(self._pump(wait=False))  # the decoder has room: feed what is held
            self._pending_partials.add(task)
            task.add_done_callback(self._pending_partials.discard)

    @property
    def backlog_s(self) -> float:
        """Seconds of this session's audio received and not yet decoded (held, or
        submitted to the decoder)."""
        return self._backlog + self._held_s

    async def abandon(self) -> int:
        """The client left: drop this session's windows still waiting for the model
        (nobody will read them; the slot and the CPU go to others at once) and stop.
        Finals already sent stay in `finals` for the history. Returns windows dropped."""
        if self._closed:
            return 0
        self._closed = True
        self.connected = False
        self._stop_wall = time.monotonic()
        dropped = self.scheduler.cancel(self.id)
        self.stats.dropped_windows += dropped
        self._held.clear()
        self._held_s = 0.0
        for f in list(self._pending_partials):
            f.cancel()
        self._sender.cancel()
        try:
            await self._sender
        except BaseException:  # noqa: S110 - cancelled, as asked
            pass
        self._drained.set()
        if self._wav is not None:
            self._wav.close()
            self._wav = None
        return dropped

    async def _ingest(self, x: np.ndarray, now: float) -> None:
        if x.size:
            self._buf = np.concatenate([self._buf, x]) if self._buf.size else x.copy()
            self.received += x.size
            self._arrivals.append((self.received, now))
            if self._wav is not None:
                self._wav.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
            events = await asyncio.to_thread(self._vad.feed, x) if x.size > 4096 else self._vad.feed(x)
        else:
            events = []
        self._handle(events)
        self._maybe_part()
        self._speculate()
        self._maybe_partial()
        self._trim()
        await self._send_events()

    def _handle(self, events) -> None:
        for ev in events:
            if ev.kind == "start":
                wall = self._wall(ev.sample)
                self._open = _Sentence(self._count, ev.sample, wall, time.monotonic(), partial_audio_end=ev.sample)
                self._started(self._open)
                self._count += 1
            elif self._open is not None:
                s = self._open
                self._open = None
                if ev.sample - s.start >= _MIN_SENTENCE_S * SAMPLE_RATE or not s.after_flush:
                    self._close_sentence(s, ev.sample, self._wall(ev.sample))
                else:
                    self._drop(s)
                    self._event({"type": "dropped", "sentence": s.index})

    def _started(self, s: _Sentence) -> None:
        self._event({"type": "speech_started", "sentence": s.index, "start": round(s.start / SAMPLE_RATE, 3)})

    def _stopped(self, s: _Sentence, end: int) -> None:
        self._event({"type": "speech_stopped", "sentence": s.index, "end": round(end / SAMPLE_RATE, 3)})

    def _event(self, msg: dict[str, Any]) -> None:
        if self.sentence_events:
            self._events.append(msg)

    async def _send_events(self) -> None:
        """Send the sentence events due; called before anything that could let a
        sentence's final go first."""
        while self._events:
            await self.send(self._events.pop(0))

    async def flush(self) -> None:
        """Finish the open sentence now (the client knows the speaker paused)."""
        await self._pump(wait=True)
        now = time.monotonic()
        s = self._open
        if s is None:
            return
        end = self.received
        if end - s.start >= _MIN_SENTENCE_S * SAMPLE_RATE:
            self._close_sentence(s, end, now)
            self._reopen(end, now)
        await self._send_events()

    def _reopen(self, at: int, now: float) -> None:
        """After the open sentence was ended by the client: the VAD span may go on, and
        then the rest is a new sentence."""
        if self._vad.in_speech:
            self._open = _Sentence(self._count, at, now, now, partial_audio_end=at, after_flush=True)
            self._started(self._open)
            self._count += 1
        else:
            self._open = None

    async def clear(self) -> None:
        """Forget the open sentence undecoded (the client took its audio back)."""
        s = self._open
        if s is None:
            return
        self._drop(s)
        self._event({"type": "dropped", "sentence": s.index})
        now = time.monotonic()
        self._reopen(self.received, now)
        await self._send_events()

    async def finish(self, connected: bool = True) -> None:
        """End of input (stop or disconnect): decode what is pending, wait for every
        final (sent while `connected`), and stop. Idempotent."""
        if self._closed:
            return
        self.connected = connected
        stop_wall = time.monotonic()
        await self._pump(wait=True)  # what was held arrived before the stop
        self._stop_wall = stop_wall
        tail = self._resampler.flush()
        if tail.size:
            await self._ingest(tail, self._stop_wall)
        self._closed = True
        self._handle(self._vad.flush())
        if self._open is not None:  # flush() closes open speech; belt and braces
            s, self._open = self._open, None
            self._close_sentence(s, self.received, self._stop_wall)
        await self._send_events()
        await self._finals_q.put(None)
        await self._sender
        for f in list(self._pending_partials):
            f.cancel()
        if self._wav is not None:
            self._wav.close()
            self._wav = None

    # -- decoding --------------------------------------------------------------------
    def _window(self, start: int, end: int, final: bool = True) -> Window:
        """The audio from `start` to `end` (absolute samples) as a window of its own,
        with the VAD's probabilities of its frames (to within a frame: the window need
        not start on one), so the finishing step can tell its speech as for a file."""
        end = min(end, start + int(self._window_s * SAMPLE_RATE))
        audio = self._buf[max(0, start - self._base) : end - self._base].copy()
        opts = DecodeOptions(
            language=self.language,
            beam_size=self.options.beam_size if final else PARTIAL_BEAM,
            hotwords=list(self.options.hotwords),
            initial_prompt=self.options.prompt,
        )
        probs = self._vad.probabilities(start, start + len(audio))
        return Window(audio, [Piece(0, 0, len(audio))], opts, compact=True, probs=probs)

    def _submit(self, start: int, end: int) -> _Part:
        """A final's (or a part's) first decode, in the interactive lane."""
        w = self._window(start, end)
        return _Part(start, end, self._track(self.scheduler.submit(w, INTERACTIVE, self.id), w.seconds), w)

    async def _finished(self, part: _Part) -> WindowResult:
        """A final's window after the finishing step files get (`finish_window`); its
        second decodes, if any, stay in the interactive lane. The reference (whole
        sentences) keeps to faster-whisper's own fallback, without tingxie's recovery,
        as its files do."""
        first = await asyncio.wrap_future(part.future)
        engine, sched = self.scheduler.engine, self.scheduler

        def finish() -> WindowResult:
            if self._whole_sentences():
                return refine(engine, part.window, first, sched.second_looks(INTERACTIVE, self.id))
            return finish_window(engine, part.window, first, sched, INTERACTIVE, self.id)

        r = await asyncio.get_running_loop().run_in_executor(_FINISHING, finish)
        if r.decodes > 1:
            self.stats.second_looks += r.decodes - 1
        return r

    def _maybe_part(self) -> None:
        """Send the open sentence's next part to the model once its undecoded audio is
        long (see PART_TRIGGER_S); never during a pause, when the endpoint may come."""
        s = self._open
        if s is None or self._closed or self._vad.silence_since is not None or self._whole_sentences():
            return
        tail = s.tail
        if self.received - tail < PART_TRIGGER_S * SAMPLE_RATE:
            return
        cut = self._vad.quietest(tail + int(PART_MIN_S * SAMPLE_RATE), self.received - int(_PART_KEEP_S * SAMPLE_RATE))
        s.parts.append(self._submit(tail, cut))
        self.stats.parts += 1

    def _speculate(self) -> None:
        """Start the final's decode once the open sentence's trailing quiet reaches the
        VAD pad. The window is then exactly the one the endpoint will close (tail to
        quiet + pad), so the rest of the endpoint silence (300 ms by default) is spent
        decoding rather than waiting. Speech that resumes cancels it."""
        s = self._open
        if s is None or self._closed or self._whole_sentences():
            return
        quiet = self._vad.silence_since
        end = None if quiet is None else quiet + self._vad.pad
        if s.speculative is not None and s.speculative.end != end:
            self._cancel_speculative(s)
        if s.speculative is None and end is not None and end > s.tail and self.received >= end:
            s.speculative = self._submit(s.tail, end)

    def _whole_sentences(self) -> bool:
        """The model decodes each sentence whole after its endpoint (the reference)."""
        return takes_whole_requests(self.scheduler.engine)

    @staticmethod
    def _cancel_speculative(s: _Sentence) -> None:
        if s.speculative is not None:
            s.speculative.future.cancel()  # a no-op once running: its result is just unused
            s.speculative = None

    def _drop(self, s: _Sentence, keep_before: int | None = None) -> None:
        """Cancel a sentence's early decodes (all, or the parts ending after `keep_before`)."""
        self._cancel_speculative(s)
        while s.parts and (keep_before is None or s.parts[-1].end > keep_before):
            s.parts.pop().future.cancel()

    def _maybe_partial(self) -> None:
        s = self._open
        if s is None or not self.options.partials or self._closed:
            return
        if self._vad.silence_since is not None:
            return  # the speaker paused: nothing new to show, and a final may be due
        step = self.options.partial_interval_ms * SAMPLE_RATE // 1000
        if self.received - s.partial_audio_end < step:
            return
        if s.partial_future is not None:
            self.stats.partials_skipped += 1
            return
        end = self.received
        # Parts already decoded are final text; re-decode only from the first that is not.
        frm = next((p.start for p in s.parts if not p.future.done()), s.tail)
        # Until a sentence has shown text, its partial goes before other sentences'
        # refreshes: under load, refreshes wait, first words do not.
        lane = PARTIAL if s.first_partial_sent else FIRST_PARTIAL
        try:
            w = self._window(frm, end, final=False)
            fut = self._track(self.scheduler.submit(w, lane, self.id, check_capacity=True), w.seconds)
        except Overloaded:
            self.stats.partials_skipped += 1
            return
        s.partial_audio_end = end
        s.partial_future = fut
        task = asyncio.ensure_future(self._partial_done(s, frm, end, asyncio.wrap_future(fut)))
        self._pending_partials.add(task)
        task.add_done_callback(self._pending_partials.discard)

    async def _partial_done(self, s: _Sentence, frm: int, end: int, fut: asyncio.Future) -> None:
        try:
            r = await fut
        except Exception:
            log.exception("partial decode failed")
            return
        finally:
            s.partial_future = None
        if s is not self._open or self._closed:
            return  # the sentence ended meanwhile; its final supersedes this
        done = [p.future.result() for p in s.parts if p.end <= frm]
        lang = self.language or (done[0] if done else r).language
        raw = _joined([*done, r], lang)
        text = _final_text([*done, r], raw, lang, self._text, open_end=True)
        if not text:
            return
        await self._send_partial(s, text, end)

    async def _send_partial(self, s: _Sentence, text: str, end: int) -> None:
        """Send a sentence's partial text (covering its audio up to sample `end`) and
        record the latencies it ends."""
        await self.send(
            {"type": "partial", "segment_id": s.index, "text": text, "start": round(s.start / SAMPLE_RATE, 3)}
        )
        now = time.monotonic()
        self.stats.partials_sent += 1
        self.stats.lag.append(max(0.0, (self.received - end) / SAMPLE_RATE))
        if not s.first_partial_sent:
            s.first_partial_sent = True
            self._observe(self.stats.first_update, "first_update", now - s.first_audio_wall)
            self.stats.from_speech_start.append(now - s.speech_wall)

    def _close_sentence(self, s: _Sentence, end: int, endpoint_wall: float) -> None:
        if s.partial_future is not None:
            s.partial_future.cancel()  # still queued: its final supersedes it (running: unused)
        s.end = end
        self._stopped(s, end)
        wall = min(endpoint_wall, self._stop_wall) if self._stop_wall else endpoint_wall
        spec = s.speculative
        if spec is not None and (spec.start, spec.end) == (s.tail, end):
            s.speculative = None
            self.stats.early_finals += 1
        else:
            spec = None
            self._drop(s, keep_before=end)  # parts past a VAD cut belong to the next sentence
        if end - s.start <= 0:
            if self.sentence_events:
                self._finals_q.put_nowait(_Final(s, [], wall))  # its (empty) final, in order
            return
        parts = list(s.parts)
        if spec is not None:
            parts.append(spec)
        elif end > s.tail:
            parts.append(self._submit(s.tail, end))
        self._finals_q.put_nowait(_Final(s, [asyncio.ensure_future(self._finished(p)) for p in parts], wall))

    async def _send_finals(self) -> None:
        """Send finals strictly in sentence order."""
        while True:
            item = await self._finals_q.get()
            if item is None:
                return
            s = item.sentence
            try:
                results = [await f for f in item.futures]
            except Exception as e:
                log.exception("final decode failed")
                err = {"type": "error", "message": f"decoding sentence {s.index} failed: {type(e).__name__}"}
                await self.send({**err, "sentence": s.index} if self.sentence_events else err)
                continue
            mine = {"sentence": s.index} if self.sentence_events else {}
            start, end = s.start / SAMPLE_RATE, (s.end or s.start) / SAMPLE_RATE
            r = results[0] if results else None
            if r is not None and self.language is None:
                self.language, self.language_probability = r.language, r.language_probability
            lang = self.language or (r.language if r else "")
            raw = _joined(results, lang)
            text = _final_text(results, raw, lang, self._text, open_end=False)
            if not text:  # noise the VAD took for speech, or speech that gave no text: nothing to show
                if any("no_text" in seg.flags for res in results for seg in res.segments):
                    self.no_text.append(Segment(0, round(start, 3), round(end, 3), "", "", flags=["no_text"]))
                if mine:
                    await self.send({"type": "final", "segment_id": None, "text": "", **mine})
                continue
            segs = [seg for res in results for seg in res.segments]
            seg_id = len(self.finals)
            self.finals.append(
                Segment(
                    id=seg_id,
                    start=round(start, 3),
                    end=round(end, 3),
                    text=text,
                    raw_text=raw,
                    avg_logprob=min((x.avg_logprob for x in segs), default=0.0),
                    no_speech_prob=max((x.no_speech_prob for x in segs), default=0.0),
                )
            )
            await self.send(
                {
                    "type": "final",
                    "segment_id": seg_id,
                    "text": text,
                    "start": round(start, 3),
                    "end": round(end, 3),
                    **mine,
                }
            )
            self._observe(self.stats.final, "final", time.monotonic() - item.endpoint_wall)
            self.stats.lag.append(max(0.0, (self.received - (s.end or 0)) / SAMPLE_RATE))

    # -- helpers ---------------------------------------------------------------------
    async def send(self, msg: dict[str, Any]) -> None:
        """Send one message to the client; a client that went away only stops the sending."""
        if not self.connected:
            return
        async with self._send_lock:
            try:
                await self._send_fn(msg)
            except Exception:  # the client went away: keep decoding for the history
                self.connected = False

    def _observe(self, bucket: list[float], kind: str, seconds: float) -> None:
        bucket.append(seconds)
        if self.on_update:
            self.on_update(kind, seconds)

    def _wall(self, sample: int) -> float:
        """When the frame holding `sample` arrived (monotonic clock)."""
        for end, t in self._arrivals:
            if end >= sample:
                return t
        return self._arrivals[-1][1] if self._arrivals else time.monotonic()

    def _trim(self) -> None:
        keep_from = self.received - int(_KEEP_BEFORE_S * SAMPLE_RATE)
        if self._open is not None:
            keep_from = min(keep_from, self._open.start)
        drop = keep_from - self._base
        if drop > SAMPLE_RATE:  # trim in ≥ 1 s steps to avoid copying every frame
            self._buf = self._buf[drop:].copy()
            self._base = keep_from
        cutoff = keep_from - SAMPLE_RATE
        if len(self._arrivals) > 64:
            self._arrivals = [a for a in self._arrivals if a[0] >= cutoff]

    # -- result ----------------------------------------------------------------------
    @property
    def speaking(self) -> bool:
        """A sentence is open (speech not yet ended by the VAD or the client)."""
        return self._open is not None

    @property
    def duration(self) -> float:
        return self.received / SAMPLE_RATE

    def transcript(self, model: str = "") -> Transcript:
        return Transcript(
            language=self.language or "",
            duration=round(self.duration, 3),
            segments=list(self.finals),
            language_probability=round(float(self.language_probability), 4),
            processing_time=round(time.monotonic() - self._t0, 3),
            model=model,
            options={"stream": self.options.record(), "stats": self.stats.summary()},
            warnings=no_text_warnings(self.no_text),
        )


# -- streaming models ---------------------------------------------------------------------
def _text_language(text: str) -> str:
    return "zh" if any(unicodedata.east_asian_width(c) in ("W", "F") for c in text) else "en"


@dataclass
class _Online:
    sentence: _Sentence
    stream: Any  # the engine's StreamSession (engines/base.py)
    fed: int  # absolute sample up to which audio went in


def _accept(stream, audio: np.ndarray, want_partial: bool) -> str | None:
    if audio.size:
        stream.accept(audio)
    return stream.partial() if want_partial else None


def _finish(stream, audio: np.ndarray, start: int, end: int, language: str | None) -> WindowResult:
    if audio.size:
        stream.accept(audio)
    text = stream.finish().strip()
    lang = language or _text_language(text)
    segs = [Segment(0, round(start / SAMPLE_RATE, 3), round(end / SAMPLE_RATE, 3), text, text)] if text else []
    return WindowResult(segs, lang, 1.0)


class OnlineSession(StreamSession):
    """A session on a streaming model (`spec.capabilities.streaming`): each sentence's
    audio goes, as it arrives, into one `open_stream()` of the model, whose own growing
    text is sent as partials; at the endpoint `finish()` gives the final. Endpoints, the
    text stage, history and the order of finals are StreamSession's. The model's work
    runs on one thread per session, in arrival order, off the event loop."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # open_session picks this class only for models whose spec says streaming
        self._engine = cast(StreamingRecognizer, self.scheduler.engine)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tingxie-online")
        self._cur: _Online | None = None
        self._shown = ""
        self._partial_busy = False  # a partial in flight: the next waits for it

    def _maybe_part(self) -> None:  # the model keeps its own state: nothing to cut
        return

    def _speculate(self) -> None:
        return

    def _stream_for(self, s: _Sentence) -> _Online:
        if self._cur is None or self._cur.sentence is not s:
            self._cur = _Online(s, self._engine.open_stream(), s.start)
            self._shown = ""
        return self._cur

    def _take(self, o: _Online, upto: int) -> np.ndarray:
        frm = max(o.fed, self._base)
        o.fed = max(o.fed, upto)
        return self._buf[frm - self._base : max(frm, upto) - self._base].copy()

    def _maybe_partial(self) -> None:
        s = self._open
        if s is None or self._closed:
            return
        o = self._stream_for(s)
        end = self.received
        audio = self._take(o, end)
        want = self.options.partials and not self._partial_busy
        fut = self._track(self._pool.submit(_accept, o.stream, audio, want), audio.size / SAMPLE_RATE)
        if not want:
            return
        self._partial_busy = True
        task = asyncio.ensure_future(self._online_partial(s, end, asyncio.wrap_future(fut)))
        self._pending_partials.add(task)
        task.add_done_callback(self._pending_partials.discard)

    async def _online_partial(self, s: _Sentence, end: int, fut: asyncio.Future) -> None:
        try:
            raw = await fut
        except Exception:
            log.exception("streaming decode failed")
            return
        finally:
            self._partial_busy = False
        if s is self._open and not self._closed and self._cur is not None and self._cur.fed > end:
            self._maybe_partial()  # audio came meanwhile: read again, even if no more comes
        if s is not self._open or self._closed or not raw or raw == self._shown:
            return
        self._shown = raw
        lang = self.language or _text_language(raw)
        text = text_mod.finalize(raw, lang, self._text)
        if not text:
            return
        await self._send_partial(s, text, end)

    def _close_sentence(self, s: _Sentence, end: int, endpoint_wall: float) -> None:
        s.end = end
        self._stopped(s, end)
        if end - s.start <= 0:
            if self.sentence_events:
                self._finals_q.put_nowait(_Final(s, [], endpoint_wall))
            return
        o = self._stream_for(s)
        tail = self._take(o, end)
        fut = self._track(
            self._pool.submit(_finish, o.stream, tail, s.start, end, self.language), tail.size / SAMPLE_RATE
        )
        self._cur = None
        wall = min(endpoint_wall, self._stop_wall) if self._stop_wall else endpoint_wall
        self._finals_q.put_nowait(_Final(s, [asyncio.wrap_future(fut)], wall))

    async def finish(self, connected: bool = True) -> None:
        await super().finish(connected)
        self._pool.shutdown(wait=False)

    async def abandon(self) -> int:
        n = await super().abandon()
        self._pool.shutdown(wait=False, cancel_futures=True)
        return n


async def open_session(
    scheduler: Scheduler,
    options: StreamOptions,
    send: Send,
    session_id: str | None = None,
    audio_path: Path | None = None,
    on_update: Callable[[str, float], None] | None = None,
    sentence_events: bool = False,
    max_backlog_s: float = 0.0,
) -> StreamSession:
    """The session for the scheduler's model (loaded off the event loop): an
    OnlineSession on a streaming model, else a StreamSession. Options the model cannot
    honour (a language, hotwords) are refused here with OptionsError."""
    engine = await asyncio.to_thread(lambda: scheduler.engine)
    check_options(engine.spec, DecodeOptions(language=options.language, hotwords=list(options.hotwords)))
    cls = OnlineSession if engine.spec.capabilities.streaming else StreamSession
    return cls(
        scheduler,
        options,
        send,
        session_id,
        audio_path=audio_path,
        on_update=on_update,
        sentence_events=sentence_events,
        max_backlog_s=max_backlog_s,
    )
