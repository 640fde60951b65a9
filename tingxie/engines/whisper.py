"""Whisper (CTranslate2) behind the recognizer protocol: the existing `Engine` with
the spec and the one-argument `batch_key` the protocol asks for."""

from __future__ import annotations

from pathlib import Path

from ..windows import Window
from .base import Capabilities, ModelSpec


def whisper_languages(multilingual: bool) -> tuple[str, ...]:
    if not multilingual:
        return ("en",)
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


class WhisperRecognizer:
    """Wraps a loaded `tingxie.engine.Engine`; anything else is the engine's own."""

    family = "whisper"

    def __init__(self, engine):
        self.engine = engine
        self.model_id = engine.model_id

    @property
    def spec(self) -> ModelSpec:
        multi = bool(self.engine.multilingual)
        caps = Capabilities(
            word_timestamps=True, language_detection=multi, punctuation=True, hotwords=True, translation=multi
        )
        return ModelSpec("whisper", self.model_id, whisper_languages(multi), 30.0, caps)

    def batch_key(self, window: Window) -> tuple:
        return self.engine.batch_key(window, len(self.engine.prompt_prefix(window)))

    def decode(self, windows):
        return self.engine.decode(windows)

    def warm_up(self) -> None:
        self.engine.warm_up()

    def __getattr__(self, name):
        return getattr(self.engine, name)


def load_whisper(model_id: str, path: Path, choice, dynamic_frames: bool = True, **_options) -> WhisperRecognizer:
    from ..engine import Engine

    return WhisperRecognizer(Engine(model_id, str(path), choice, dynamic_frames=dynamic_frames))
