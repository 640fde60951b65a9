"""Whisper (CTranslate2) behind the recognizer protocol: the existing `Engine` with
the spec and the one-argument `batch_key` the protocol asks for."""

from __future__ import annotations

import json
from pathlib import Path

from ..windows import Window
from .base import Capabilities, ModelSpec


def whisper_languages(multilingual: bool) -> tuple[str, ...]:
    if not multilingual:
        return ("en",)
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


def whisper_spec(model_id: str, multilingual: bool) -> ModelSpec:
    caps = Capabilities(
        word_timestamps=True, language_detection=multilingual, punctuation=True, hotwords=True, translation=multilingual
    )
    return ModelSpec("whisper", model_id, whisper_languages(multilingual), 30.0, caps)


def vocabulary_size(path: Path) -> int:
    """Tokens in a CTranslate2 Whisper folder (English-only models have 51864)."""
    if (path / "vocabulary.json").is_file():
        return len(json.loads((path / "vocabulary.json").read_text(encoding="utf-8")))
    if (path / "vocabulary.txt").is_file():
        return len((path / "vocabulary.txt").read_text(encoding="utf-8").splitlines())
    tok = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    ids = set(tok.get("model", {}).get("vocab", {}).values()) | {t["id"] for t in tok.get("added_tokens", [])}
    return len(ids)


def describe(model_id: str, path: Path) -> ModelSpec:
    """The spec without loading: CTranslate2 calls a Whisper multilingual when its
    vocabulary has 51865 tokens or more."""
    return whisper_spec(model_id, vocabulary_size(Path(path)) >= 51865)


class WhisperRecognizer:
    """Wraps a loaded `tingxie.engine.Engine`; anything else is the engine's own."""

    family = "whisper"

    def __init__(self, engine):
        self.engine = engine
        self.model_id = engine.model_id

    @property
    def spec(self) -> ModelSpec:
        return whisper_spec(self.model_id, bool(self.engine.multilingual))

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
