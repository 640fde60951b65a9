"""Pack speech spans into ≤ 30 s windows — the unit of work the scheduler batches.

Whisper always encodes 30 s, so a window half full of speech costs as much as a full one.
Packing several short VAD spans of a file into one window (silence between them dropped)
is what makes the encoder's work proportional to speech, not to file length. Each window
remembers where its pieces came from, so timestamps map back to the original audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from . import level as level_mod
from .types import SAMPLE_RATE, WINDOW_SECONDS, DecodeOptions, SpeechSpan

if TYPE_CHECKING:
    from .audio import SparseAudio

# Leave the model a little room after the last word: speech that runs to the very end
# of the 30 s context is often dropped by Whisper.
PACK_LIMIT_S = WINDOW_SECONDS - 0.5


@dataclass
class Piece:
    offset: int  # sample offset inside the window
    start: int  # absolute sample in the source audio
    length: int


@dataclass
class Window:
    """A ≤ 30 s slice of work: pieces of one source, decoded together."""

    source: np.ndarray | SparseAudio  # the whole file's audio, or only its speech (a reference, not a copy)
    pieces: list[Piece]
    options: DecodeOptions = field(default_factory=DecodeOptions)
    # Real-time sentences (stream.py) are encoded at their own length rather than
    # Whisper's 30 s: several times faster, but less accurate on short clips, English
    # most (eval WER 5.2 % → 7.9 %, zh CER 16.6 % → 17.3 %; bench/results/english.md), so
    # files, synchronous requests included, are not compact; long batch windows are
    # encoded at their own length only from engines/whisper/engine.OWN_LENGTH_MIN_S.
    compact: bool = False
    # The VAD's per-frame speech probabilities of the whole source (a reference), when
    # known: they tell which parts of a window are speech that must come back as text.
    probs: np.ndarray | None = None
    # The model family's own notes on this window, passed through untouched by the shared
    # code (Whisper's: engines/whisper/result.WhisperHints, a continuation and the kept
    # encoder output); a window cut from another (`part`, `remainder`) has none.
    hints: object | None = field(default=None, repr=False, compare=False)

    @property
    def num_samples(self) -> int:
        return sum(p.length for p in self.pieces)

    @property
    def seconds(self) -> float:
        return self.num_samples / SAMPLE_RATE

    @property
    def start(self) -> float:
        return self.pieces[0].start / SAMPLE_RATE

    @property
    def end(self) -> float:
        last = self.pieces[-1]
        return (last.start + last.length) / SAMPLE_RATE

    def samples(self) -> np.ndarray:
        """The packed audio as the model hears it, built on demand so queued windows hold
        no copies: as recorded, or times one gain when the window's speech is quiet
        (level.for_model), or Whisper returns nothing."""
        return level_mod.for_model(self.recorded())

    def recorded(self) -> np.ndarray:
        """The packed audio exactly as decoded."""
        if len(self.pieces) == 1:
            p = self.pieces[0]
            return np.asarray(self.source[p.start : p.start + p.length])
        return np.concatenate([self.source[p.start : p.start + p.length] for p in self.pieces])

    def speech_frames(self) -> list[tuple[float, float]]:
        """(start, end) in source seconds of each VAD frame inside this window that the
        VAD called speech; none when the VAD did not run (`--vad off`)."""
        out: list[tuple[float, float]] = []
        if self.probs is None:
            return out
        for p in self.pieces:
            a, b = p.start, p.start + p.length
            for f in np.flatnonzero(self.probs[a // VAD_FRAME : -(-b // VAD_FRAME)] >= SPEECH_PROB):
                s = max(a, (a // VAD_FRAME + int(f)) * VAD_FRAME)
                out.append((s / SAMPLE_RATE, min(b, s + VAD_FRAME) / SAMPLE_RATE))
        return out

    def part(self, start_s: float, end_s: float, options: DecodeOptions | None = None) -> Window | None:
        """The part of this window between two source times, as a window of its own."""
        lo, hi = int(round(start_s * SAMPLE_RATE)), int(round(end_s * SAMPLE_RATE))
        pieces: list[Piece] = []
        used = 0
        for p in self.pieces:
            a, b = max(p.start, lo), min(p.start + p.length, hi)
            if b > a:
                pieces.append(Piece(used, a, b - a))
                used += b - a
        return Window(self.source, pieces, options or self.options, self.compact, self.probs) if pieces else None

    def to_absolute(self, t: float, is_end: bool = False) -> float:
        """Map a time inside the packed window to seconds in the source.

        A time on the boundary between two pieces belongs to the earlier piece when it
        ends a segment and to the later one when it starts a segment.
        """
        s = max(0, int(round(t * SAMPLE_RATE)))
        for i, p in enumerate(self.pieces):
            last = i == len(self.pieces) - 1
            inside = s < p.offset + p.length or (is_end and s == p.offset + p.length)
            if inside or last:
                s_in = min(s - p.offset, p.length)
                return (p.start + max(0, s_in)) / SAMPLE_RATE
        return self.end  # unreachable: the loop returns on the last piece


def pack(
    source: np.ndarray | SparseAudio,
    spans: list[SpeechSpan],
    options: DecodeOptions | None = None,
    limit_s: float = PACK_LIMIT_S,
    probs: np.ndarray | None = None,
) -> list[Window]:
    """Greedily pack consecutive spans into windows of at most `limit_s` seconds.

    A span that does not fit the room left in a window is cut at a pause inside it
    (from the VAD's per-frame `probs`) when one falls in that room, so windows run full
    instead of closing early; without a pause the span starts the next window. Spans
    longer than the limit (VAD should have split them) are cut at the limit.
    """
    options = options or DecodeOptions()
    limit = int(limit_s * SAMPLE_RATE)
    windows: list[Window] = []
    pieces: list[Piece] = []
    used = 0

    def close() -> None:
        nonlocal pieces, used
        windows.append(Window(source, pieces, options, probs=probs))
        pieces, used = [], 0

    for span in spans:
        start, end = span.start, span.end
        while end > start:
            room = limit - used
            if end - start <= room:
                pieces.append(Piece(used, start, end - start))
                used += end - start
                break
            cut = _pause_in(probs, start + MIN_PIECE, start + room) if probs is not None and room >= MIN_FILL else None
            if cut is not None:
                pieces.append(Piece(used, start, cut - start))
                start = cut
                close()
            elif pieces:
                close()
            else:
                pieces.append(Piece(0, start, limit))
                start += limit
                close()
    if pieces:
        close()
    return windows


# Only fill a window's remaining room by cutting a span when the room is worth it and
# the first piece is not a fragment.
MIN_FILL = 3 * SAMPLE_RATE
MIN_PIECE = 1 * SAMPLE_RATE
PAUSE_PROB = 0.2
SPEECH_PROB = 0.5  # VadOptions' default threshold
VAD_FRAME = 512


def _pause_in(probs: np.ndarray, lo: int, hi: int) -> int | None:
    """The middle of the last pause (run of quiet VAD frames) in [lo, hi), or None:
    the latest pause fills the window most."""
    a, b = lo // VAD_FRAME, min(len(probs), hi // VAD_FRAME)
    quiet = probs[a:b] < PAUSE_PROB
    idx = np.flatnonzero(quiet)
    if idx.size == 0:
        return None
    end = start = int(idx[-1])
    while start > 0 and quiet[start - 1]:
        start -= 1
    return min(hi, (a + (start + end) // 2) * VAD_FRAME + VAD_FRAME // 2)


# Peak level below which a stretch is digital silence (−80 dBFS: ±3 steps of 16-bit audio).
DIGITAL_SILENCE = 1e-4


def fixed(
    source: np.ndarray | SparseAudio, options: DecodeOptions | None = None, seconds: float = WINDOW_SECONDS
) -> list[Window]:
    """Plain 30 s windows over the whole file, for `--vad off`. Stretches of digital
    silence are left out: with nothing to hear, Whisper still decodes them, and its
    temperature fallback makes that five decodes of nothing."""
    step = int(seconds * SAMPLE_RATE)
    spans = [SpeechSpan(i, min(i + step, len(source))) for i in range(0, len(source), step)]
    spans = [s for s in spans if float(np.max(np.abs(source[s.start : s.end]))) >= DIGITAL_SILENCE]
    return pack(source, spans, options, limit_s=seconds)


def remainder(window: Window, after_s: float) -> Window | None:
    """The part of a window after absolute time `after_s`, as a new window.

    Whisper sometimes ends its output before the end of the audio it was given (it
    stops at a sentence it considers complete); like Whisper's own seek loop, the
    pipeline decodes what is left again."""
    cut = int(round(after_s * SAMPLE_RATE))
    pieces: list[Piece] = []
    used = 0
    for p in window.pieces:
        end = p.start + p.length
        if end <= cut:
            continue
        start = max(p.start, cut)
        pieces.append(Piece(used, start, end - start))
        used += end - start
    return replace(window, pieces=pieces, hints=None) if pieces else None
