"""Builders for the speech-loss tests and measurements: eval clips joined into one
recording with short pauses (some clips attenuated), and per-clip recovery scoring by
aligning the whole transcript against the joined references."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from rapidfuzz.distance import Levenshtein

from tingxie import audio as audio_mod
from tingxie.bench.score import normalize_for_scoring
from tingxie.types import SAMPLE_RATE


def zh_items(corpus: Path) -> list[dict]:
    items = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines() if x.strip()]
    return [m for m in items if m["lang"] == "zh"]


def join(
    corpus: Path, items: list[dict], seed: int, quiet: set[int] = frozenset()
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The clips joined with 0.4–1.5 s pauses (faint noise, like a real room); clips
    whose index is in `quiet` are attenuated by 20–30 dB. Returns audio and clip times."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    parts, times, at = [], [], 0.0
    for k, m in enumerate(items):
        pause = rng.uniform(0.4, 1.5)
        parts.append(noise.normal(0, 3e-4, int(pause * SAMPLE_RATE)).astype(np.float32))
        at += pause
        clip = audio_mod.decode(corpus / m["audio"])
        if k in quiet:
            clip = clip * 10 ** (-rng.uniform(20, 30) / 20)
        parts.append(clip.astype(np.float32))
        times.append((at, at + len(clip) / SAMPLE_RATE))
        at += len(clip) / SAMPLE_RATE
    parts.append(noise.normal(0, 3e-4, SAMPLE_RATE).astype(np.float32))
    return np.concatenate(parts), times


def per_clip_recall(refs: list[str], hyp: str, language: str = "zh") -> list[float]:
    """For each reference clip, the share of its characters found in the transcript when
    the whole transcript is aligned against all references joined in order (a lost clip
    scores ≈ 0 whatever the timestamps say)."""
    norm = [normalize_for_scoring(r, language).lower() for r in refs]
    joined = "".join(norm)
    h = normalize_for_scoring(hyp, language).lower()
    owner = [i for i, r in enumerate(norm) for _ in r]
    matched = [0] * len(refs)
    for op in Levenshtein.opcodes(joined, h):
        if op.tag == "equal":
            for p in range(op.src_start, op.src_end):
                matched[owner[p]] += 1
    return [matched[i] / max(1, len(r)) for i, r in enumerate(norm)]
