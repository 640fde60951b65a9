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
from tingxie.bench.split import half_of, shared_sets
from tingxie.types import SAMPLE_RATE


def zh_items(corpus: Path) -> list[dict]:
    items = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines() if x.strip()]
    return [m for m in items if m["lang"] == "zh"]


def validation_zh_items(shared: Path) -> list[dict]:
    """Mandarin utterances of the validation half (tingxie.bench.split): ../shared/eval's
    validation sources and all of ../shared/eval-extra. Each row's `audio` is an absolute
    path, so `join` reads them whatever their folder."""
    out = []
    for name, folder in shared_sets(shared):
        for m in zh_items(folder):
            if half_of(m, name) == "validation":
                out.append({**m, "audio": str(folder / m["audio"]), "set": name})
    return out


def join(corpus: Path, items: list[dict], seed: int, quiet: set[int] = frozenset(), **kw) -> tuple[np.ndarray, list]:
    """`join_with_cuts` without the attenuations: (audio, clip times)."""
    audio, times, _ = join_with_cuts(corpus, items, seed, quiet, **kw)
    return audio, times


def join_with_cuts(
    corpus: Path,
    items: list[dict],
    seed: int,
    quiet: set[int] = frozenset(),
    attenuation_db: tuple[float, float] = (20.0, 30.0),
    floor_peak_db: float = -200.0,
    whisper: int | None = None,
) -> tuple[np.ndarray, list[tuple[float, float]], list[float]]:
    """The clips joined with 0.4–1.5 s pauses (faint noise, like a real room); clips
    whose index is in `quiet` are attenuated by `attenuation_db` (a range), never below a
    peak of `floor_peak_db` dBFS; clip `whisper` is set to a whispered level, a peak of
    −38…−40 dBFS. Returns audio, clip times and each clip's attenuation in dB."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    parts, times, cuts, at = [], [], [], 0.0
    for k, m in enumerate(items):
        pause = rng.uniform(0.4, 1.5)
        parts.append(noise.normal(0, 3e-4, int(pause * SAMPLE_RATE)).astype(np.float32))
        at += pause
        clip = audio_mod.decode(corpus / m["audio"])
        peak_db = 20 * np.log10(max(float(np.max(np.abs(clip))), 1e-10))
        cut = 0.0
        if k == whisper:
            cut = peak_db - rng.uniform(-40.0, -38.0)
        elif k in quiet:
            cut = min(rng.uniform(*attenuation_db), peak_db - floor_peak_db)
        clip = clip * 10 ** (-cut / 20)
        cuts.append(round(cut, 1))
        parts.append(clip.astype(np.float32))
        times.append((at, at + len(clip) / SAMPLE_RATE))
        at += len(clip) / SAMPLE_RATE
    parts.append(noise.normal(0, 3e-4, SAMPLE_RATE).astype(np.float32))
    return np.concatenate(parts), times, cuts


# Each digit as the Chinese numeral that reads it. ITN off, Whisper still writes some
# numbers in digits ("三点三零" comes back "330", "一点五倍" as "15倍"): the clip's speech
# came back, only the convention differs. Reading digits one by one (no place values, no
# guess at the decimal point) keeps what they say and adds nothing.
_DIGITS = str.maketrans("0123456789", "零一二三四五六七八九")


def _norm(text: str, language: str) -> str:
    """Scoring form for per-clip recall: normalize_for_scoring, lower case, and for
    Chinese each digit read as its numeral (the same for references and transcripts)."""
    text = normalize_for_scoring(text, language).lower()
    return text.translate(_DIGITS) if language.startswith("zh") else text


def per_clip_texts(refs: list[str], hyp: str, language: str = "zh") -> list[str]:
    """The part of the transcript each reference clip was read as, from aligning the whole
    transcript against all references joined in order (normalised as `_norm`)."""
    norm = [_norm(r, language) for r in refs]
    joined = "".join(norm)
    h = _norm(hyp, language)
    owner = [i for i, r in enumerate(norm) for _ in r]
    parts = [""] * len(refs)
    for op in Levenshtein.opcodes(joined, h):
        if op.dest_end > op.dest_start:
            k = owner[min(op.src_start, len(owner) - 1)] if owner else 0
            parts[k] += h[op.dest_start : op.dest_end]
    return parts


def per_clip_recall(refs: list[str], hyp: str, language: str = "zh") -> list[float]:
    """For each reference clip, the share of its characters found in the transcript when
    the whole transcript is aligned against all references joined in order (a lost clip
    scores ≈ 0 whatever the timestamps say). Digits are read as numerals (`_norm`): a
    clip whose numbers came back in digits is not lost."""
    norm = [_norm(r, language) for r in refs]
    joined = "".join(norm)
    h = _norm(hyp, language)
    owner = [i for i, r in enumerate(norm) for _ in r]
    matched = [0] * len(refs)
    for op in Levenshtein.opcodes(joined, h):
        if op.tag == "equal":
            for p in range(op.src_start, op.src_end):
                matched[owner[p]] += 1
    return [matched[i] / max(1, len(r)) for i, r in enumerate(norm)]
