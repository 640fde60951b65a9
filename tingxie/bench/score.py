"""Scoring transcripts against references: CER (Chinese, Japanese) or WER (other
languages), the way the eval README defines them. Used by the benchmarks and the
accuracy tests, never by the server. The edit distance is our own (numpy), so `tingxie
bench` scores on a plain install: no test extra at run time."""

from __future__ import annotations

import numpy as np

from tingxie.text import comparison_form, is_cjk

# scoring compares in the text stage's comparison form (the eval README's normalisation)
normalize_for_scoring = comparison_form


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two token sequences (substitutions, deletions and
    insertions each cost 1). One numpy row per reference token: the insertion chain
    along a row, row[j] = min(cand[j], row[j-1] + 1), is a running minimum of
    cand[j] - j, so a 3-minute recording (≈ 1000 characters) scores in milliseconds."""
    if not ref or not hyp:
        return len(ref) + len(hyp)
    ids: dict[str, int] = {}
    r = np.array([ids.setdefault(t, len(ids)) for t in ref])
    h = np.array([ids.setdefault(t, len(ids)) for t in hyp])
    j = np.arange(len(h) + 1)
    row = j.copy()
    for i, tok in enumerate(r, 1):
        cand = np.empty_like(row)
        cand[0] = i
        cand[1:] = np.minimum(row[1:] + 1, row[:-1] + (h != tok))  # deletion, substitution/match
        row = np.minimum.accumulate(cand - j) + j  # insertion
    return int(row[-1])


def error_rate(refs: list[str], hyps: list[str], language: str) -> float:
    """Corpus CER (Chinese, Japanese: characters) or WER (other languages) after
    normalize_for_scoring: total edits over total reference units."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    refs_n = [normalize_for_scoring(r, language) for r in refs]
    hyps_n = [normalize_for_scoring(h, language) for h in hyps]
    if not any(refs_n):
        raise ValueError("the references are empty; nothing to score against")
    unit = list if is_cjk(language) else str.split
    edits = sum(edit_distance(unit(r), unit(h)) for r, h in zip(refs_n, hyps_n, strict=True))
    return edits / sum(len(unit(r)) for r in refs_n)
