"""Parsers of single option values (language codes, hotword lists, detection candidates)
that the request schema (request.py) and settings call, so each value is read one way."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .types import OptionsError


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
