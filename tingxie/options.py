"""Validate user-facing options once, for the CLI and the API alike, so bad values are
refused before any work starts and the message names the option."""

from __future__ import annotations

import re

from .types import DecodeOptions, OptionsError, TextOptions, VadOptions


def parse_language(value: str | None) -> str | None:
    v = (value or "").strip().lower()
    if v in ("", "auto"):
        return None
    aliases = {"zh-cn": "zh", "zh-tw": "zh", "zh-hans": "zh", "zh-hant": "zh", "cmn": "zh", "chinese": "zh", "english": "en"}
    v = aliases.get(v, v)
    # a code's shape only: which languages a model knows is in its spec (check_options)
    if not re.fullmatch(r"[a-z]{2,3}", v):
        raise OptionsError(f"unknown language {value!r}; use auto or a code such as zh, en, ja, yue")
    return v


def parse_hotwords(value: str | list[str] | None) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, list) else value.replace("，", ",").split(",")
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
) -> tuple[DecodeOptions, VadOptions | None, TextOptions]:
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
        language=parse_language(language),
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
    return decode, vad_opts, TextOptions(itn=itn, zh_script=zh_script)
