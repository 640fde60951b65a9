"""Scoring transcripts against references: CER (Chinese, Japanese) or WER (other
languages), the way the eval README defines them. Used by the benchmarks and the
accuracy tests, never by the server; needs `jiwer` (the `test` extra)."""

from __future__ import annotations

import re
import unicodedata

from tingxie.text import is_chinese, is_cjk, t2s


def normalize_for_scoring(text: str, language: str) -> str:
    """The form references and hypotheses are compared in (see the eval README):
    NFKC; for Chinese Simplified script, no punctuation and no spaces (CER counts
    characters); otherwise lower case, punctuation removed except apostrophes inside
    words, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    if is_cjk(language):
        if is_chinese(language):
            text = t2s(text)
        return "".join(c for c in text if not c.isspace() and not unicodedata.category(c).startswith("P"))
    text = text.lower().replace("’", "'").replace("‘", "'")
    text = "".join(c if c == "'" or not unicodedata.category(c).startswith("P") else " " for c in text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def error_rate(refs: list[str], hyps: list[str], language: str) -> float:
    """Corpus CER (Chinese, Japanese: characters) or WER (other languages) after
    normalize_for_scoring: total edits over total reference units."""
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    refs_n = [normalize_for_scoring(r, language) for r in refs]
    hyps_n = [normalize_for_scoring(h, language) for h in hyps]
    if not any(refs_n):
        raise ValueError("the references are empty; nothing to score against")
    return float(jiwer.cer(refs_n, hyps_n) if is_cjk(language) else jiwer.wer(refs_n, hyps_n))
