"""The reference system's serial pipeline, kept for comparison (`tingxie serve
--pipeline reference`).

The web UIs tingxie replaces serve one request at a time: each file is decoded start to
end by faster-whisper's sequential `transcribe(beam_size=5, vad_filter=True)` while the
next request waits. That is the baseline the brief quotes and the benchmarks compare
against (bench/core.py runs it on files, bench/load.py against a server in this mode).
Same model, same text stage (ITN, script) and the same `Transcript`, so a comparison
measures the architecture and nothing else.

It is served as a recognizer of its own (`ReferenceWhisper`, what `serve --pipeline
reference` loads), so nothing else in tingxie branches on the mode: the pipeline hands it whole
requests (`transcribe_whole`), which take turns in arrival order under its FIFO lock;
real-time sentences still go through the scheduler, decoded whole after their endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from ...types import SAMPLE_RATE, DecodeOptions, Segment, VadOptions, Word
from .engine import Engine, WindowResult
from .recognizer import WhisperRecognizer, load_whisper


class FifoLock:
    """A lock granted in arrival order (threading.Lock is not fair): the reference
    serves requests first come, first served."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0  # next ticket to hand out
        self._serving = 0

    @property
    def holders(self) -> int:
        """Tickets handed out and not yet returned: the one served and those waiting."""
        with self._cond:
            return self._next - self._serving

    def __enter__(self) -> FifoLock:
        with self._cond:
            ticket = self._next
            self._next += 1
            self._cond.wait_for(lambda: self._serving == ticket)
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


def decode_serially(
    audio: np.ndarray,
    engine: Engine,
    decode: DecodeOptions,
    vad: VadOptions | None,
    on_progress: Callable[[float], None] | None = None,
) -> WindowResult:
    """The whole file through faster-whisper's sequential loop (its own VAD settings,
    previous-text conditioning and temperature fallback), as one result."""
    segments, info = engine.whisper.transcribe(
        audio,
        language=decode.language,
        task=decode.task,
        beam_size=decode.beam_size,
        vad_filter=vad is not None,
        initial_prompt=decode.initial_prompt,
        hotwords=" ".join(decode.hotwords) or None,
        word_timestamps=decode.word_timestamps,
    )
    out: list[Segment] = []
    for s in segments:  # a generator: decoding happens while iterating
        words = [Word(w.start, w.end, w.word, w.probability) for w in s.words] if s.words else None
        out.append(
            Segment(len(out), s.start, s.end, s.text.strip(), s.text.strip(), words, s.avg_logprob, s.no_speech_prob)
        )
        if on_progress:
            on_progress(min(s.end, len(audio) / SAMPLE_RATE))
    return WindowResult(out, info.language, info.language_probability)


class ReferenceWhisper(WhisperRecognizer):
    """The serial reference as a recognizer: whole requests, one at a time, first come
    first served, through faster-whisper's sequential transcribe. Windows (real-time
    sentences) decode as Whisper's do, without parts or early finals."""

    def __init__(self, engine: Engine):
        super().__init__(engine)
        self.turn = FifoLock()

    def transcribe_whole(
        self,
        audio: np.ndarray,
        decode: DecodeOptions,
        vad: VadOptions | None,
        on_progress: Callable[[float], None] | None = None,
    ) -> tuple[WindowResult, dict]:
        """One whole request, after those that came before it; the record marks the
        transcript as the reference's."""
        with self.turn:
            return decode_serially(audio, self.engine, decode, vad, on_progress), {"serial": True}


def load(model_id: str, path, choice, pipeline: str = "tingxie", **options) -> WhisperRecognizer:
    """The Whisper family's loader: tingxie's pipeline, or with `pipeline="reference"`
    (`tingxie serve --pipeline reference`) the reference system's."""
    recognizer = load_whisper(model_id, path, choice, **options)
    return ReferenceWhisper(recognizer.engine) if pipeline == "reference" else recognizer
