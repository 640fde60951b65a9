"""Whisper (CTranslate2) behind the recognizer protocol: the existing `Engine` with
the spec, the one-argument `batch_key` the protocol asks for, and Whisper's own policy
for a window's result (temperature fallback, continuation of what it left out)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ... import windows as windows_mod
from ...windows import Window
from ..base import Capabilities, ModelSpec, Submit, WindowResult
from .result import WhisperHints, WhisperResult, falls_back, hints


def whisper_languages(multilingual: bool) -> tuple[str, ...]:
    if not multilingual:
        return ("en",)
    from .engine import WHISPER_LANGUAGES

    return WHISPER_LANGUAGES


# Whisper punctuates English itself; its Mandarin (and Cantonese) output often has none.
UNPUNCTUATED = ("zh", "yue")


def whisper_spec(model_id: str, multilingual: bool, languages: tuple[str, ...] | None = None) -> ModelSpec:
    """`languages`: those the model's tokenizer has a token for (engine.tokenizer_languages)."""
    caps = Capabilities(
        word_timestamps=True,
        language_detection=multilingual,
        punctuation=True,
        hotwords=True,
        translation=multilingual,
        unpunctuated_languages=UNPUNCTUATED,
    )
    return ModelSpec("whisper", model_id, languages or whisper_languages(multilingual), 30.0, caps)


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
    from .engine import tokenizer_languages

    multilingual = vocabulary_size(Path(path)) >= 51865
    return whisper_spec(model_id, multilingual, tokenizer_languages(Path(path)) if multilingual else None)


class WhisperRecognizer:
    """Wraps a loaded `engine.Engine` behind the recognizer protocol, with Whisper's
    optional abilities (base.Refines, base.EmptiesCache); the engine itself is
    `self.engine`."""

    family = "whisper"

    def __init__(self, engine):
        self.engine = engine
        self.model_id = engine.model_id

    @property
    def spec(self) -> ModelSpec:
        return whisper_spec(self.model_id, bool(self.engine.multilingual), self.engine.languages)

    def batch_key(self, window: Window) -> tuple:
        return self.engine.batch_key(window, len(self.engine.prompt_prefix(window)))

    def decode(self, windows: list[Window]) -> list[WindowResult]:
        return self.engine.decode(windows)

    def warm_up(self) -> None:
        self.engine.warm_up()

    def refine(self, window: Window, result: WindowResult, submit: Submit) -> WindowResult:
        return complete(window, result, submit)

    def empty_cache(self) -> None:
        """CTranslate2 keeps freed CUDA blocks in its caching allocator; moving the
        model to host memory and back returns them."""
        self.engine.model.unload_model(to_cpu=True)
        self.engine.model.load_model()


def load_whisper(
    model_id: str, path: Path, choice, dynamic_frames: bool = True, detect_languages: tuple[str, ...] = (), **_options
) -> WhisperRecognizer:
    from .engine import Engine

    return WhisperRecognizer(
        Engine(model_id, str(path), choice, dynamic_frames=dynamic_frames, detect_languages=detect_languages)
    )


# -- Whisper's policy for a window's result ----------------------------------------------
# Speech left undecoded at the end of a window worth a second pass (seconds).
MIN_REMAINDER_S = 1.5
MAX_PASSES = 3


FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)


def with_fallback(window: Window, result: WindowResult, submit: Submit) -> WindowResult:
    """Whisper's temperature fallback, per window: redo a failed decode by sampling at
    rising temperatures; keep the first that passes, else the most likely seen."""
    if not isinstance(result, WhisperResult) or not falls_back(window, result):
        return result
    tried = [result]
    for temp in FALLBACK_TEMPERATURES:
        options = replace(window.options, temperature=temp, language=result.language)
        hot = replace(window, options=options, hints=replace(hints(window), encoded=result.encoded))
        r = _whisper(submit(hot))
        r.language_probability = result.language_probability
        tried.append(r)
        if not r.needs_fallback:
            break
    result.encoded = None  # 3 MB a window: not kept past its fallback
    best = tried[-1] if not tried[-1].needs_fallback else max(tried, key=lambda r: r.avg_logprob)
    best.decodes = sum(r.decodes for r in tried)
    # every try cost its stages, not only the one kept
    best.timings = {k: sum(r.timings.get(k, 0.0) for r in tried) for k in {k for r in tried for k in r.timings}}
    return best


def _whisper(r: WindowResult) -> WhisperResult:
    """A fallback's decode, as this family's engine returns it."""
    if not isinstance(r, WhisperResult):
        raise TypeError("a Whisper fallback decode returned another family's result")
    return r


def complete(window: Window, result: WindowResult, submit: Submit) -> WindowResult:
    """Decode again what Whisper left out at the end of a window (it sometimes stops
    early); the continuation batches with everyone else's windows."""
    result = with_fallback(window, result, submit)
    # continuations keep the window's language, as Whisper's seek loop does
    w = (
        window
        if window.options.language
        else replace(window, options=replace(window.options, language=result.language))
    )
    for _ in range(MAX_PASSES):
        if not result.segments:
            break
        rest = windows_mod.remainder(w, result.segments[-1].end)
        if rest is None or rest.seconds < MIN_REMAINDER_S:
            break
        rest = replace(rest, hints=WhisperHints(continuation=True))
        more = with_fallback(rest, submit(rest), submit)
        if not more.segments:
            break
        result.segments.extend(more.segments)
        result.tokens += more.tokens
        result.decodes += more.decodes
        for k, v in more.timings.items():
            result.timings[k] = result.timings.get(k, 0.0) + v
        w = rest
        result = WhisperResult(
            result.segments,
            result.language,
            result.language_probability,
            result.tokens,
            result.timings,
            decodes=result.decodes,
        )
    return result
