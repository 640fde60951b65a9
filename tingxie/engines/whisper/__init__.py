"""Whisper on CTranslate2, the whole family in this folder: batched inference
(engine.py), the recognizer with Whisper's policy for a window's result (temperature
fallback, continuation; recognizer.py), and faster-whisper's own serial pipeline, kept
for comparison (reference.py, `tingxie serve --pipeline reference`).

The reference lives here rather than in a family folder of its own: it is not another
kind of model folder but another way to run this one (same weights, same loader, a
subclass of the recognizer), chosen by the loader's `pipeline` option.

This module is what the registry asks: `FAMILY` says how to recognise, check, describe
and load a Whisper folder, and which CUDA devices CTranslate2 can use. It imports
neither CTranslate2 nor faster-whisper until a model is loaded or devices are counted.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..base import Family, Recognizer
from .recognizer import describe


def detect(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def check(path: Path) -> list[str]:
    problems = [f"{n} is missing" for n in ("model.bin", "config.json") if not (path / n).is_file()]
    if not any((path / n).is_file() for n in ("tokenizer.json", "vocabulary.json", "vocabulary.txt")):
        problems.append("tokenizer.json (or vocabulary.json) is missing")
    if (path / "config.json").is_file():
        try:
            json.loads((path / "config.json").read_text())
        except ValueError:
            problems.append("config.json is not valid JSON")
    return problems


def load(model_id: str, path: Path, choice, **options) -> Recognizer:
    from .reference import load as load_whisper

    return load_whisper(model_id, path, choice, **options)


def cuda_devices() -> int:
    """CUDA devices CTranslate2 can run on (0 without a usable CUDA install)."""
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count()
    except Exception:  # a broken CUDA install must not stop CPU use
        return 0


FAMILY = Family("whisper", detect, check, load, describe, cuda_devices=cuda_devices)
