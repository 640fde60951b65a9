"""Whisper's own view of a window: its notes on a window to decode (`WhisperHints`),
the quality figures of a decoded one and the rule that sends it to the temperature
fallback. Other families never see them; the shared code passes a `WhisperResult`
through as the `WindowResult` it is, and `Window.hints` untouched."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ...windows import Window
from ..base import WindowResult

# Whisper's thresholds for `needs_fallback` (engine.py uses the same names).
COMPRESSION_LIMIT = 2.4
LOW_LOGPROB = -1.0
# A piece of 2-8 characters, at least one of them a letter, written six times running
# with nothing between: no word or name does that; Whisper's loops do. (Repeated words
# with spaces between are the text stage's `collapse_repetitions`.)
_PIECE_LOOP = re.compile(r"((?=\S{0,7}[^\W\d_])\S{2,8}?)\1{5,}")


@dataclass
class WhisperResult(WindowResult):
    """A window as Whisper decoded it, with the figures its fallback rule judges."""

    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0  # the fallback's, when the kept decode was sampled
    # the window's encoder output, kept only while a fallback may decode it again
    encoded: np.ndarray | None = field(default=None, repr=False)

    @property
    def needs_fallback(self) -> bool:
        """Whisper's quality rule: a looping (compressible) or unlikely decode is redone
        at a higher temperature, unless the window is silence. A loop inside one word
        ("Kla'Kla'Kla'…", seen where a live part was cut mid-word) can hide in a window
        whose text as a whole still compresses like speech, so it counts as well."""
        if not self.segments:
            return False
        if self.compression_ratio > COMPRESSION_LIMIT or self.avg_logprob < LOW_LOGPROB:
            return True
        return any(_PIECE_LOOP.search(s.text) for s in self.segments)


@dataclass(frozen=True)
class WhisperHints:
    """Whisper's notes on a window (Window.hints): `continuation`, what Whisper left out
    at the end of another window, decoded again (recognizer.complete); `previous`, the
    text decoded before it in that window, which prompts the continuation as Whisper's
    seek loop prompts each window with the text before it; `encoded`, the
    encoder's output for exactly these samples when a temperature fallback decodes the
    window again: the audio has not changed, so only the decoder needs to run."""

    continuation: bool = False
    previous: str = ""
    encoded: np.ndarray | None = field(default=None, repr=False, compare=False)


NO_HINTS = WhisperHints()


def hints(window: Window) -> WhisperHints:
    return window.hints if isinstance(window.hints, WhisperHints) else NO_HINTS


def falls_back(window: Window, result: WindowResult) -> bool:
    """Whether a window's result goes through the temperature fallback: a first decode
    (temperature 0) that fails Whisper's quality rule. The engine keeps its encoder output
    for exactly these; `recognizer.with_fallback` runs them."""
    return isinstance(result, WhisperResult) and window.options.temperature == 0 and result.needs_fallback
