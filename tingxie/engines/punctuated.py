"""A site's punctuation model (CT-Transformer, sherpa.Punctuator) in front of families
that write no punctuation themselves: Paraformer (offline and streaming) and Whisper's
Mandarin. The manager wraps such a recognizer when `TINGXIE_PUNCTUATION_MODEL` names
one; everything else about the recognizer is its own."""

from __future__ import annotations

from dataclasses import replace

from ..windows import Window
from .base import ModelSpec, WindowResult

# Whisper punctuates English itself; its Mandarin (and Cantonese) output often has none.
WHISPER_UNPUNCTUATED = ("zh", "yue")


def wants_punctuation(spec: ModelSpec) -> bool:
    return spec.family == "whisper" or not spec.capabilities.punctuation


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
    def __init__(self, inner, punctuator):
        self.inner = inner
        self.punctuator = punctuator
        self.model_id = inner.model_id

    @property
    def spec(self) -> ModelSpec:
        s = self.inner.spec
        return replace(s, capabilities=replace(s.capabilities, punctuation=True))

    def _apply(self, r: WindowResult) -> WindowResult:
        if self.inner.spec.family == "whisper" and r.language not in WHISPER_UNPUNCTUATED:
            return r
        return self.punctuator.apply(r)

    def decode(self, windows: list[Window]) -> list[WindowResult]:
        return [self._apply(r) for r in self.inner.decode(windows)]

    def batch_key(self, window: Window) -> tuple:
        return self.inner.batch_key(window)

    def warm_up(self) -> None:
        self.inner.warm_up()

    def open_stream(self):
        return PunctuatedStream(self.inner.open_stream(), self.punctuator)

    def __getattr__(self, name):  # refine, transcribe_whole, empty_cache, ... are the model's
        return getattr(self.inner, name)
