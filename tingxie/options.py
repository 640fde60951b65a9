"""Validate user-facing options once, for the CLI and the API alike, so bad values are
refused before any work starts and the message names the option."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .types import DecodeOptions, OptionsError, TextOptions, VadOptions


def parse_language(value: str | None, supported: Sequence[str] | None = None) -> str | None:
    """A language code (or None for auto-detection); `supported`: the model's languages."""
    v = (value or "").strip().lower()
    if v in ("", "auto"):
        return None
    aliases = {
        "zh-cn": "zh",
        "zh-tw": "zh",
        "zh-hans": "zh",
        "zh-hant": "zh",
        "cmn": "zh",
        "chinese": "zh",
        "english": "en",
        "cantonese": "yue",
        "zh-hk": "yue",
    }
    v = aliases.get(v, v)
    # a code's shape only: which languages a model knows is in its spec (check_options)
    if not re.fullmatch(r"[a-z]{2,3}", v):
        raise OptionsError(f"unknown language {value!r}; use auto or a code such as zh, en, ja, yue")
    if supported is not None and v not in supported:
        raise OptionsError(f"this model cannot transcribe language {value!r}; it supports auto, {', '.join(supported)}")
    return v


def parse_detect_languages(
    value: str | Sequence[str] | None, supported: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The candidate set for auto-detection (TINGXIE_DETECT_LANGUAGES, e.g. "zh,en"):
    empty means every language the model has."""
    items = value.replace("，", ",").split(",") if isinstance(value, str) else list(value or [])
    out: list[str] = []
    for item in items:
        code = parse_language(item, supported)
        if code and code not in out:
            out.append(code)
    return tuple(out)


def parse_hotwords(value: str | list[str] | None) -> list[str]:
    if not value:
        return []
    if isinstance(value, list):
        items = value
    else:  # commas (either width, or 、) separate; without any, spaces do: "七牛 云存储"
        text = value.replace("，", ",").replace("、", ",")
        items = text.split(",") if "," in text else text.split()
    words = [w.strip() for w in items if w and w.strip()]
    if sum(len(w) for w in words) > 500:
        raise OptionsError("hotwords: at most 500 characters in all")
    return words


def build_options(
    language: str | None = None,
    task: str = "transcribe",
    beam_size: int = 5,
    hotwords: str | list[str] | None = None,
    initial_prompt: str | None = None,
    word_timestamps: bool = False,
    temperature: float = 0.0,
    itn: bool = True,
    zh_script: str = "hans",
    vad: bool = True,
    vad_threshold: float = VadOptions.threshold,
    vad_min_silence_ms: int = VadOptions.min_silence_ms,
    vad_speech_pad_ms: int = VadOptions.speech_pad_ms,
    vad_max_segment_s: float = VadOptions.max_speech_s,
    punctuate: bool = True,
    languages: Sequence[str] | None = None,
) -> tuple[DecodeOptions, VadOptions | None, TextOptions]:
    """`languages`: the model's (model_languages); a language outside them is refused."""
    if task not in ("transcribe", "translate"):
        raise OptionsError(f"task must be transcribe or translate, not {task!r}")
    if not 1 <= beam_size <= 10:
        raise OptionsError(f"beam size must be between 1 and 10, not {beam_size}")
    if not 0.0 <= temperature <= 1.0:
        raise OptionsError(f"temperature must be between 0 and 1, not {temperature}")
    if zh_script not in ("hans", "hant", "keep"):
        raise OptionsError(f"zh script must be hans, hant or keep, not {zh_script!r}")
    if not 0.0 < vad_threshold < 1.0:
        raise OptionsError(f"vad threshold must be between 0 and 1, not {vad_threshold}")
    if not 0 <= vad_min_silence_ms <= 10000:
        raise OptionsError(f"vad min silence must be 0–10000 ms, not {vad_min_silence_ms}")
    if not 0 <= vad_speech_pad_ms <= 2000:
        raise OptionsError(f"vad speech pad must be 0–2000 ms, not {vad_speech_pad_ms}")
    if not 1.0 <= vad_max_segment_s <= 30.0:
        raise OptionsError(f"vad max segment must be 1–30 s (Whisper sees 30 s at a time), not {vad_max_segment_s}")
    if initial_prompt is not None and len(initial_prompt) > 1000:
        raise OptionsError("prompt: at most 1000 characters")
    decode = DecodeOptions(
        language=parse_language(language, languages),
        task=task,
        beam_size=beam_size,
        hotwords=parse_hotwords(hotwords),
        initial_prompt=initial_prompt or None,
        word_timestamps=word_timestamps,
        temperature=temperature,
    )
    vad_opts = (
        VadOptions(
            threshold=vad_threshold,
            min_silence_ms=vad_min_silence_ms,
            speech_pad_ms=vad_speech_pad_ms,
            max_speech_s=min(vad_max_segment_s, 29.0),
        )
        if vad
        else None
    )
    return decode, vad_opts, TextOptions(itn=itn, zh_script=zh_script, punctuate=punctuate)
