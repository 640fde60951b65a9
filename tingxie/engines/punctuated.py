"""A site's punctuation model (CT-Transformer, sherpa.Punctuator) in front of families
that write no punctuation themselves: Paraformer (offline and streaming) and Whisper's
Mandarin. The manager wraps such a recognizer when `TINGXIE_PUNCTUATION_MODEL` names
one; the wrapper declares which of the model's optional abilities it forwards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ..types import DecodeOptions, VadOptions
from ..windows import Window
from .base import (
    EmptiesCache,
    ModelSpec,
    Recognizer,
    StreamingRecognizer,
    Submit,
    TakesWholeRequests,
    WindowResult,
    refine,
)


def wants_punctuation(spec: ModelSpec) -> bool:
    """A model that writes no punctuation, or none in some languages (Whisper's
    Mandarin and Cantonese: `Capabilities.unpunctuated_languages`)."""
    return not spec.capabilities.punctuation or bool(spec.capabilities.unpunctuated_languages)


class PunctuatedStream:
    def __init__(self, inner, punctuator):
        self._inner, self._p = inner, punctuator

    def accept(self, samples) -> None:
        self._inner.accept(samples)

    def partial(self) -> str:
        return self._inner.partial()

    def finish(self) -> str:
        return self._p.punctuate(self._inner.finish())


class Punctuated:
    """A recognizer with the punctuator after it. It declares what it forwards:
    the protocol (decode punctuated), `refine` and `empty_cache` (the model's own, or
    nothing to do where it has none); `punctuated()` adds `open_stream` and
    `transcribe_whole` only for a model that has them, so asking the wrapper
    (isinstance with base's protocols) answers as the model would."""

    def __init__(self, inner: Recognizer, punctuator):
        self.inner = inner
        self.punctuator = punctuator
        self.model_id = inner.model_id

    @property
    def spec(self) -> ModelSpec:
        s = self.inner.spec
        return replace(s, capabilities=replace(s.capabilities, punctuation=True, unpunctuated_languages=()))

    def _apply(self, r: WindowResult) -> WindowResult:
        caps = self.inner.spec.capabilities
        if caps.punctuation and r.language not in caps.unpunctuated_languages:
            return r
        return self.punctuator.apply(r)

    def decode(self, windows: list[Window]) -> list[WindowResult]:
        return [self._apply(r) for r in self.inner.decode(windows)]

    def batch_key(self, window: Window) -> tuple:
        return self.inner.batch_key(window)

    def warm_up(self) -> None:
        self.inner.warm_up()

    def refine(self, window: Window, result: WindowResult, submit: Submit) -> WindowResult:
        return refine(self.inner, window, result, submit)

    def empty_cache(self) -> None:
        if isinstance(self.inner, EmptiesCache):
            self.inner.empty_cache()


class PunctuatedStreaming(Punctuated):
    """A streaming model punctuated: each live utterance's final text too."""

    def __init__(self, inner: StreamingRecognizer, punctuator):
        super().__init__(inner, punctuator)
        self.streaming = inner

    def open_stream(self) -> PunctuatedStream:
        return PunctuatedStream(self.streaming.open_stream(), self.punctuator)


class PunctuatedWhole(Punctuated):
    """A model that takes whole requests (the reference): they go to it as they are,
    its text as it writes it (the reference is the baseline, compared unchanged)."""

    def __init__(self, inner: TakesWholeRequests, punctuator):
        super().__init__(inner, punctuator)  # type: ignore[arg-type]  # also a Recognizer
        self.whole = inner

    def transcribe_whole(
        self,
        audio: np.ndarray,
        decode: DecodeOptions,
        vad: VadOptions | None,
        on_progress: Callable[[float], None] | None = None,
    ) -> tuple[WindowResult, dict]:
        return self.whole.transcribe_whole(audio, decode, vad, on_progress)


def punctuated(inner: Recognizer, punctuator) -> Punctuated:
    """The wrapper for `inner`, with the optional abilities `inner` has."""
    if isinstance(inner, StreamingRecognizer):
        return PunctuatedStreaming(inner, punctuator)
    if isinstance(inner, TakesWholeRequests):
        return PunctuatedWhole(inner, punctuator)
    return Punctuated(inner, punctuator)
