"""Silero VAD v6 (the ONNX file faster-whisper ships) for files and for live streams.

The v6 graph takes a batch of 512-sample frames, each prefixed with the previous
frame's last 64 samples, and runs its LSTM across the batch carrying `h`/`c`. Feeding
frames one call at a time with `h`/`c` carried gives bit-identical probabilities to
one big batch, which is what lets `StreamingVad` reproduce `detect_speech` exactly.

Both paths share one hysteresis state machine (`_Hysteresis`) and one rule for
cutting over-long speech (`_cut_point`), so live and file results agree.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tingxie.audio import SparseAudio
from tingxie.level import Leveler
from tingxie.types import SAMPLE_RATE, OptionsError, SpeechSpan, VadOptions

FRAME = 512  # samples per probability (32 ms at 16 kHz); fixed by the model
CONTEXT = 64  # samples of the previous frame the model sees before each frame
# The model runs this many frames (2 s) at a time; after a run whose every frame scored
# under RESET_BELOW its recurrent state starts afresh (_Model.run).
RESET_FRAMES = 62
RESET_BELOW = 0.3
_NEAR_MIN = 0.05  # frames this close to the quietest one count as equally quiet
_CUT_ZONE = 0.3  # over-long speech is cut within the last 30 % before the limit

_session: Any = None
_session_lock = threading.Lock()


def _model_path() -> Path:
    # find_spec locates the package without importing it (and thus ctranslate2).
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or spec.origin is None:
        raise RuntimeError("faster-whisper is not installed; its assets hold the VAD model")
    return Path(spec.origin).parent / "assets" / "silero_vad_v6.onnx"


def _get_session() -> Any:
    """One shared onnxruntime session, created on first use.

    onnxruntime documents `InferenceSession.run` as safe to call from several threads
    at once, and all recurrent state lives in our arguments, so a single session
    serves every thread without a run lock; only creation is locked. One intra-op
    thread each: the server runs many streams and the ASR engine needs the cores.
    """
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                import onnxruntime

                so = onnxruntime.SessionOptions()
                so.intra_op_num_threads = 1
                so.inter_op_num_threads = 1
                so.enable_cpu_mem_arena = False  # the arena keeps peak batch memory forever
                so.log_severity_level = 4
                _session = onnxruntime.InferenceSession(
                    str(_model_path()), sess_options=so, providers=["CPUExecutionProvider"]
                )
    return _session


class _Model:
    """Recurrent model state for one audio stream (LSTM h/c plus 64 context samples)."""

    def __init__(self) -> None:
        self._fresh_state()
        self.context = np.zeros(CONTEXT, dtype=np.float32)
        self.leveler = Leveler()  # quiet speech is lifted first: Silero misses it otherwise
        self.position = 0  # frames run so far
        self.block_max = 0.0  # the highest score in the current block of RESET_FRAMES

    def _fresh_state(self) -> None:
        """The LSTM state a stream starts with (and starts again with after a quiet block)."""
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)

    def run(self, frames: np.ndarray) -> np.ndarray:
        """Probabilities for `frames` of shape (n, 512), continuing the stream."""
        session = _get_session()
        frames = self.leveler.apply(frames)
        out = []
        i = 0
        while i < len(frames):
            # blocks of RESET_FRAMES counted from the stream's start, however it is fed
            chunk = frames[i : i + RESET_FRAMES - self.position % RESET_FRAMES]
            x = np.empty((len(chunk), CONTEXT + FRAME), dtype=np.float32)
            x[:, CONTEXT:] = chunk
            x[0, :CONTEXT] = self.context
            x[1:, :CONTEXT] = chunk[:-1, -CONTEXT:]
            p, self.h, self.c = session.run(None, {"input": x, "h": self.h, "c": self.c})
            self.context = chunk[-1, -CONTEXT:].copy()
            out.append(np.asarray(p, dtype=np.float32).reshape(-1))
            self.block_max = max(self.block_max, float(out[-1].max()))
            self.position += len(chunk)
            i += len(chunk)
            if self.position % RESET_FRAMES == 0:
                if self.block_max < RESET_BELOW:
                    # Two seconds with nothing that could be speech: start afresh. The state
                    # carried from one speaker kept the next one's 20 s of speech under
                    # 0.1 (validation English joined into one recording); from a fresh
                    # state, as every file starts, the same audio scored 0.2-0.9.
                    self._fresh_state()
                self.block_max = 0.0
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """One speech probability per 512-sample frame; a final partial frame is
    zero-padded (so `len = ceil(len(audio) / 512)`)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    model = _Model()
    whole = audio.size // FRAME
    parts = [model.run(audio[: whole * FRAME].reshape(whole, FRAME))]  # a view, no copy
    if audio.size % FRAME:
        last = np.zeros((1, FRAME), np.float32)
        last[0, : audio.size - whole * FRAME] = audio[whole * FRAME :]
        parts.append(model.run(last))
    return np.concatenate(parts)


def scan(chunks: Iterable[np.ndarray], opts: VadOptions | None = None) -> tuple[SparseAudio, np.ndarray]:
    """Run the VAD over decoded chunks of a long file, keeping only the audio that
    can belong to speech; returns (that audio, the per-frame probabilities).

    The probabilities equal `speech_probabilities` on the whole file (the model's
    state is carried across chunks), so `detect_speech(audio, opts, probs)` gives the
    same spans as on the full array. See `Scanner` for what is kept.
    """
    scanner = Scanner(opts)
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner.finish()


class Scanner:
    """`scan` fed one chunk at a time, so one decoding pass can feed several signals
    (the channels of a call recording) each to its own scanner.

    Only frames within `margin` of a frame at or above the hysteresis' lower threshold
    are kept: every padded span lies inside that (inside a span, quiet runs are shorter
    than min_silence, and the span's edges are padded by speech_pad), so silence costs
    no memory however long it is.
    """

    def __init__(self, opts: VadOptions | None = None) -> None:
        opts = opts or VadOptions()
        _check(opts)
        self.low = max(opts.threshold - 0.15, 0.01)
        self.margin = -(-(opts.min_silence_ms + opts.speech_pad_ms) * SAMPLE_RATE // 1000 // FRAME) + 2  # frames
        self.model = _Model()
        self.kept = SparseAudio()
        self.probs: list[np.ndarray] = []
        self.active = np.zeros(0, bool)  # per frame from `abase` on: loud enough to keep near
        self.abase = 0
        self.hold = np.zeros(0, np.float32)  # audio from frame `done` (undecided) to `position`
        self.done = self.position = self.frames = 0

    def _decide(self, upto: int) -> None:
        """Keep or drop frames [done, upto); frames up to `upto + margin` are known."""
        if upto <= self.done:
            return
        done, margin, active = self.done, self.margin, self.active
        k = np.arange(done, upto)
        sums = np.concatenate([[0], np.cumsum(active)])
        lo = np.clip(k - margin - self.abase, 0, active.size)
        hi = np.clip(k + margin + 1 - self.abase, 0, active.size)
        keep = (sums[hi] > sums[lo]).astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], keep, [0]])))
        for a, b in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=False):
            self.kept.keep((done + a) * FRAME, self.hold[a * FRAME : b * FRAME])
        self.hold = self.hold[(upto - done) * FRAME :].copy()
        self.done = upto
        base = max(0, upto - margin)
        self.active, self.abase = active[base - self.abase :], base

    def _run(self, frames: np.ndarray) -> None:
        p = self.model.run(frames)
        self.probs.append(p)
        self.active = np.concatenate([self.active, p >= self.low])

    def feed(self, chunk: np.ndarray) -> None:
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self.hold = np.concatenate([self.hold, x])
        self.position += x.size
        whole = self.position // FRAME
        if whole > self.frames:
            start = (self.frames - self.done) * FRAME
            self._run(self.hold[start : start + (whole - self.frames) * FRAME].reshape(-1, FRAME))
            self.frames = whole
        self._decide(max(self.done, self.frames - self.margin))

    def finish(self) -> tuple[SparseAudio, np.ndarray]:
        """The kept audio and the per-frame probabilities (a final partial frame is zero-padded)."""
        if self.position % FRAME:
            last = np.zeros((1, FRAME), np.float32)
            tail = self.hold[(self.frames - self.done) * FRAME :]
            last[0, : tail.size] = tail
            self._run(last)
            self.frames += 1
        self._decide(self.frames)
        self.kept.length = self.position
        return self.kept, (np.concatenate(self.probs) if self.probs else np.zeros(0, np.float32))


def detect_speech(
    audio: np.ndarray | SparseAudio, opts: VadOptions | None = None, probs: np.ndarray | None = None
) -> list[SpeechSpan]:
    """Speech spans (absolute samples, sorted, non-overlapping, each at most
    `opts.max_speech_s` long) using Silero's hysteresis and padding rules.

    Pass `probs` from `speech_probabilities` (or `scan`) to avoid running the model twice.
    """
    opts = opts or VadOptions()
    _check(opts)
    length = len(audio) if isinstance(audio, SparseAudio) else int(np.asarray(audio).shape[-1])
    if probs is None:
        if isinstance(audio, SparseAudio):  # only `scan` makes these, and it gives the probabilities
            raise TypeError("detect_speech() on SparseAudio needs the probabilities from scan()")
        probs = speech_probabilities(audio)
    if len(probs) != -(-length // FRAME):
        raise ValueError(f"{len(probs)} probabilities do not match {length} samples")
    hyst = _Hysteresis(opts, opts.min_silence_ms)
    raw: list[tuple[int, int]] = []
    for i, p in enumerate(probs.tolist()):
        seg = hyst.step(i, p)
        if seg:
            raw.append(seg)
    last = hyst.close(length)
    if last:
        raw.append(last)

    pad = opts.speech_pad_ms * SAMPLE_RATE // 1000
    max_len = int(opts.max_speech_s * SAMPLE_RATE)
    spans: list[SpeechSpan] = []
    for s, e in _pad(raw, pad, length):
        while e - s > max_len:
            cut = _cut_point(probs, s, max_len)
            spans.append(SpeechSpan(s, cut))
            s = cut
        if e > s:
            spans.append(SpeechSpan(s, e))
    return spans


@dataclass(frozen=True)
class VadEvent:
    """A live VAD decision; `sample` is absolute from the start of the stream."""

    kind: Literal["start", "end"]
    sample: int


class StreamingVad:
    """Incremental VAD for one live stream (one per WebSocket connection).

    Feeds frames through the model with carried state, so its probabilities are
    exactly those of `speech_probabilities` on the whole stream; events equal the
    spans of `detect_speech` with the same options, except that a gap shorter than
    2 x speech_pad is padded fully at the end rather than split (the next start is
    clamped to the previous end) because the future is unknown when 'end' is due.
    'start' is emitted once the speech is long enough to be kept (min_speech_ms),
    dated back by speech_pad_ms.
    """

    def __init__(self, opts: VadOptions | None = None, endpoint_silence_ms: int | None = None) -> None:
        self.opts = opts or VadOptions()
        _check(self.opts)
        silence = self.opts.min_silence_ms if endpoint_silence_ms is None else endpoint_silence_ms
        self._hyst = _Hysteresis(self.opts, silence)
        self._model = _Model()
        self._pad = self.opts.speech_pad_ms * SAMPLE_RATE // 1000
        self._max = int(self.opts.max_speech_s * SAMPLE_RATE)
        self._pending = np.zeros(0, np.float32)  # < 512 samples awaiting a full frame
        self._probs = np.zeros(0, np.float32)  # probabilities from frame `_base` on
        self._base = 0
        self._frames = 0  # frames run through the model
        self._start = 0  # padded start of the open span
        self._last_end = 0
        self._closed = False
        self.position = 0  # samples consumed
        self.in_speech = False

    @property
    def silence_since(self) -> int | None:
        """Where the open span ends if its trailing quiet lasts (raw, unpadded: the quiet's
        start, or its last frame of maybe-speech), or None while speech goes on. If the span
        ends at this quiet, its end event will be this plus `pad` (or the stream position,
        if that is earlier)."""
        return self._hyst.quiet_from if self.in_speech else None

    @property
    def pad(self) -> int:
        return self._pad

    def quietest(self, lo: int, hi: int) -> int:
        """The quietest point of the open span between samples `lo` and `hi` (the same
        rule that places cuts of over-long speech), for splitting a long sentence."""
        return _quietest(self._probs, -(-lo // FRAME), hi // FRAME, self._base, default=hi)

    def probabilities(self, lo: int, hi: int) -> np.ndarray:
        """Speech probabilities of the frames over samples [lo, hi), frame `lo // FRAME`
        first, as `speech_probabilities` gives them for a file: what a window's
        `probs` hold, so the file path's recovery can tell which of a live sentence's
        audio is speech. Frames no longer kept (before the open span) or not yet run
        are 0. Valid until the next `feed`, which may drop those of a closed span."""
        a, b = lo // FRAME, -(-hi // FRAME)
        out = np.zeros(max(0, b - a), np.float32)
        x, y = max(a, self._base), min(b, self._base + len(self._probs))
        if y > x:
            out[x - a : y - a] = self._probs[x - self._base : y - self._base]
        return out

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        """Consume float32 16 kHz samples of any length; return the events they cause."""
        if self._closed:
            raise RuntimeError("StreamingVad.feed after flush; create a new one")
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.position += x.size
        if self._pending.size:
            x = np.concatenate([self._pending, x])
        n = x.size // FRAME
        self._pending = x[n * FRAME :].copy()
        if n == 0:
            return []
        return self._process(self._model.run(x[: n * FRAME].reshape(n, FRAME)))

    def flush(self) -> list[VadEvent]:
        """End of stream: run the zero-padded last partial frame and close open speech."""
        if self._closed:
            return []
        events: list[VadEvent] = []
        if self._pending.size:
            frame = np.zeros((1, FRAME), np.float32)
            frame[0, : self._pending.size] = self._pending
            events += self._process(self._model.run(frame))
            self._pending = np.zeros(0, np.float32)
        self._closed = True
        seg = self._hyst.close(self.position)
        if seg:
            events += self._finish(seg, self.position)
        return events

    def _process(self, probs: np.ndarray) -> list[VadEvent]:
        self._remember(probs)
        events: list[VadEvent] = []
        for p in probs.tolist():
            i = self._frames
            self._frames += 1
            seg = self._hyst.step(i, p)
            if seg:
                events += self._finish(seg, self._frames * FRAME)
            elif self._hyst.confirmed and not self.in_speech:
                self._start = max((self._hyst.start or 0) - self._pad, self._last_end, 0)
                self.in_speech = True
                events.append(VadEvent("start", self._start))
            ongoing = self.in_speech and self._hyst.temp_end is None
            if ongoing and self._frames * FRAME - self._start > self._max:
                # The span will surely pass the limit; cut now, as detect_speech would.
                events += self._cut()
        return events

    def _finish(self, seg: tuple[int, int], limit: int) -> list[VadEvent]:
        events: list[VadEvent] = []
        if not self.in_speech:  # kept, but never confirmed while running (rare)
            self._start = max(seg[0] - self._pad, self._last_end, 0)
            events.append(VadEvent("start", self._start))
            self.in_speech = True
        end = min(seg[1] + self._pad, limit, self.position)
        while end - self._start > self._max:
            events += self._cut()
        events.append(VadEvent("end", end))
        self.in_speech = False
        self._last_end = end
        return events

    def _cut(self) -> list[VadEvent]:
        cut = _cut_point(self._probs, self._start, self._max, base=self._base)
        self._start = cut
        return [VadEvent("end", cut), VadEvent("start", cut)]

    def _remember(self, probs: np.ndarray) -> None:
        """Keep probabilities back to the open span's start (needed for cuts), no more."""
        if self.in_speech:
            anchor = self._start
        elif self._hyst.start is not None:
            anchor = self._hyst.start - self._pad
        else:
            anchor = self._frames * FRAME - self._pad
        keep_from = max(anchor // FRAME - 1, 0)
        drop = keep_from - self._base
        if drop > 0:
            self._probs = self._probs[drop:]
            self._base = keep_from
        self._probs = np.concatenate([self._probs, probs])


class _Hysteresis:
    """Silero's speech/silence state machine over frame probabilities.

    Speech starts at a frame ≥ threshold; it ends once `min_silence_ms` of quiet has
    followed (counted from the first frame below threshold-0.15, with no frame ≥ threshold
    since), at the end of the last frame in that quiet still at threshold-0.15 or more — or
    at the quiet's first frame when there is none. Silero ends it at the quiet's first frame
    in any case, and so lost a last word it scores between the two thresholds (falsetto,
    whispered, trailing off: `mfa_falsetto`'s "pitched" at 0.38–0.46, docs/accuracy.md);
    "maybe speech" right after speech belongs to it. Spans not longer than min_speech_ms
    are dropped. Samples are raw (unpadded) frame boundaries.
    """

    def __init__(self, opts: VadOptions, min_silence_ms: int) -> None:
        self.threshold = opts.threshold
        self.neg_threshold = max(opts.threshold - 0.15, 0.01)
        self.min_silence = min_silence_ms * SAMPLE_RATE // 1000
        self.min_speech = opts.min_speech_ms * SAMPLE_RATE // 1000
        self.start: int | None = None
        self.temp_end: int | None = None  # where the pending quiet began
        self.voice_end: int | None = None  # the end of its last frame at neg_threshold or more (after temp_end)
        # True once the open span is sure to survive the min_speech check.
        self.confirmed = False
        self.quiet_peak = 0.0  # the highest probability since the pending silence began

    def step(self, i: int, p: float) -> tuple[int, int] | None:
        """Process frame `i`; return a finished (kept) raw span if one ends here."""
        s = i * FRAME
        if p >= self.threshold:
            self.temp_end = self.voice_end = None
            if self.start is None:
                self.start, self.confirmed = s, False
        elif p < self.neg_threshold and self.start is not None:
            if self.temp_end is None:
                self.temp_end, self.quiet_peak = s, 0.0
            if s - self.temp_end >= self.min_silence:
                return self._end(self.voice_end or self.temp_end)
        elif self.temp_end is not None:
            self.voice_end = s + FRAME
        if self.temp_end is not None:
            self.quiet_peak = max(self.quiet_peak, p)
        if self.start is not None and self.temp_end is None and s + FRAME - self.start > self.min_speech:
            # Any later end lies after this frame, so the span is long enough.
            self.confirmed = True
        return None

    @property
    def quiet_from(self) -> int | None:
        """Where the open span ends if its pending quiet lasts (None: no pending quiet)."""
        return self.voice_end or self.temp_end

    def close(self, length: int) -> tuple[int, int] | None:
        """End of audio: close the open span at its pending silence or at `length`.

        A last span too short to keep at its pending silence runs to the end of the audio
        instead of being dropped, when what follows is voiced (a frame at half the threshold
        or more: silence and hum score near 0) and the whole is longer than min_speech: a
        recording that ends in quiet or falsetto speech (Silero scores it just under the
        threshold after a few frames over it) ends with words, not a click, and
        faster-whisper's VAD keeps them. Running *every* open span to the end, as
        faster-whisper does, adds trailing silence to ordinary clips and costs calibration
        Mandarin (docs/accuracy.md)."""
        if self.start is None:
            return None
        start, voiced = self.start, self.temp_end is not None and self.quiet_peak >= self.threshold / 2
        quiet = self.quiet_from
        kept = self._end(quiet if quiet is not None else length)
        return kept or ((start, length) if voiced and length - start > self.min_speech else None)

    def _end(self, end: int) -> tuple[int, int] | None:
        start = self.start
        assert start is not None
        self.start, self.temp_end, self.voice_end, self.confirmed = None, None, None, False
        return (start, end) if end - start > self.min_speech else None


def _pad(raw: list[tuple[int, int]], pad: int, length: int) -> list[tuple[int, int]]:
    """Silero's padding: `pad` on each side, but a gap under 2*pad is split evenly so
    neighbours touch instead of overlapping."""
    out = [list(seg) for seg in raw]
    for k, seg in enumerate(out):
        if k == 0:
            seg[0] = max(0, seg[0] - pad)
        if k + 1 < len(out):
            gap = out[k + 1][0] - seg[1]
            grow = gap // 2 if gap < 2 * pad else pad
            seg[1] += grow
            out[k + 1][0] -= grow
        else:
            seg[1] = min(length, seg[1] + pad)
    return [(s, e) for s, e in out]


def _cut_point(probs: np.ndarray, start: int, max_len: int, base: int = 0) -> int:
    """Where to end a span that began at `start` and would exceed `max_len` samples:
    the quietest point in the last 30 % before the limit, so the cut falls in a pause,
    not mid-word. `probs[k]` belongs to frame `base + k`."""
    limit = start + max_len
    lo = -(-(limit - int(max_len * _CUT_ZONE)) // FRAME)  # first whole frame in zone
    return max(start + 1, _quietest(probs, lo, limit // FRAME, base, default=limit))


def _quietest(probs: np.ndarray, lo: int, hi: int, base: int, default: int) -> int:
    """The centre of the longest run of frames in [lo, hi) within 0.05 of the lowest
    probability there (so a real pause wins over a one-frame dip), as a sample."""
    lo, hi = max(lo, base), min(hi, base + len(probs))
    if hi <= lo:
        return default
    zone = probs[lo - base : hi - base]
    low = zone <= zone.min() + _NEAR_MIN
    best, best_len, run = 0, 0, 0
    for j, flag in enumerate(low.tolist()):
        run = run + 1 if flag else 0
        if run > best_len:
            best, best_len = j - (run - 1) // 2, run
    return min((lo + best) * FRAME + FRAME // 2, default)


def _check(opts: VadOptions) -> None:
    if not 0.0 < opts.threshold < 1.0:
        raise OptionsError(f"VAD threshold must be between 0 and 1, got {opts.threshold}")
    if opts.max_speech_s < 1.0:
        raise OptionsError(f"max_speech_s must be at least 1 s, got {opts.max_speech_s}")
    for name in ("min_silence_ms", "speech_pad_ms", "min_speech_ms"):
        if getattr(opts, name) < 0:
            raise OptionsError(f"{name} must not be negative")
