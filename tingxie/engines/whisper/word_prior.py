"""Which of the beam's hypotheses a Chinese window keeps: the decoder's score plus a word prior.

whisper-base hears Mandarin homophones alike: its beam often holds the right words one
or two places down (新股发行 under 辛古发型, 份额 under 分额, 就业机会 under 救验机会).
Chinese written text is made of dictionary words, and a unigram word model — the
likeliest segmentation under jieba's dictionary of 349 000 words with their counts in a
large written corpus — tells those apart where the acoustic score barely does.

A hypothesis's value is CTranslate2's score (log-probability per token) plus
`PRIOR_WEIGHT` × its word log-probability per character. Per character, not per token: a
rare character takes two or three byte-level tokens, and a prior divided by tokens let
洗澡你以后 (18 tokens) beat 希望你以后 (16 tokens) on a calibration clip.

The weight was chosen on the calibration half (docs/accuracy.md, eleventh round; errors
in 485 characters of short clips + 2934 of three-minute recordings): none 96 + 568,
0.1 → 88 + 562, 0.3 → 88 + 559, 0.5 → 84 + 560. Any weight from 0.1 to 0.5 gains alike
(3 % of the errors); 0.3 is the middle of that plateau. The validation half is quoted.

Only the choice among hypotheses the model itself ranked in its beam changes: the prior
never writes a word the model did not.
"""

from __future__ import annotations

import importlib.util
import math
import re
import threading
from pathlib import Path

from ...text import comparison_form

PRIOR_WEIGHT = 0.3
# Latin letters and digits are not in the dictionary's alphabet: a run of them is one
# unknown word (a count of 1), however long, so "iPhone" costs what one rare word costs
# and a number written in digits what one written in characters without a dictionary word.
_RUN = re.compile(r"[0-9A-Za-z]+|.", re.S)


def dictionary_path() -> Path:
    """jieba's word list, found without importing jieba: its package imports
    pkg_resources (200 ms and a deprecation warning) and builds a segmenter we do not use."""
    spec = importlib.util.find_spec("jieba")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("jieba is not installed: it is a dependency of tingxie (scripts/install.sh)")
    return Path(spec.submodule_search_locations[0]) / "dict.txt"


class WordPrior:
    """Unigram word log-probabilities from jieba's dictionary (loaded once, on first use;
    0.7 s and 75 MB). Thread-safe: read-only after loading."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: tuple[dict[str, float], int, float] | None = None

    def load(self) -> tuple[dict[str, float], int, float]:
        """The dictionary as (log-probability per word, longest word, an unknown word's
        log-probability), read once; a server's warm-up calls it so that the first
        Chinese window does not wait for it."""
        if self._table is None:
            with self._lock:
                if self._table is None:
                    counts: dict[str, int] = {}
                    with dictionary_path().open(encoding="utf-8") as f:
                        for line in f:
                            word, count, *_ = line.split(" ")
                            counts[word] = int(count)
                    log_total = math.log(sum(counts.values()))
                    logp = {w: math.log(c) - log_total for w, c in counts.items() if c > 0}
                    self._table = (logp, max(map(len, logp)), -log_total)
        return self._table

    def logprob(self, text: str) -> float:
        """The log-probability of the likeliest split of `text` into dictionary words
        (Simplified script, punctuation and spaces ignored); a character no word covers
        counts as an unknown word."""
        return self.logprob_of(_units(text))

    def logprob_of(self, units: list[str]) -> float:
        """`logprob` of a text already split into units (`_units`)."""
        logp, longest, unknown = self.load()
        n = len(units)
        best = [0.0] * (n + 1)  # best[i]: the likeliest split of units[i:]
        for i in range(n - 1, -1, -1):
            best[i] = unknown + best[i + 1]
            word = ""
            for j in range(i, min(n, i + longest)):
                word += units[j]
                p = logp.get(word)
                if p is not None and p + best[j + 1] > best[i]:
                    best[i] = p + best[j + 1]
        return best[0]


PRIOR = WordPrior()


def _units(text: str) -> list[str]:
    """The text as the prior reads it: its comparison form (Simplified, no punctuation or
    spaces), one unit per character and per run of Latin letters or digits. The units
    joined give the comparison form back."""
    return _RUN.findall(comparison_form(text, "zh"))


def units(text: str) -> int:
    """How many characters (a run of Latin letters or digits counting as one) the prior
    sees in `text`."""
    return len(_units(text))


def choose(texts: list[str], scores: list[float], hotwords: list[str] | tuple[str, ...] = ()) -> int:
    """The index of the hypothesis to keep: CTranslate2's score (per token) plus the
    weighted word prior per character, among the hypotheses as long as the likeliest
    (one unit more or less: 10年 / 十年). The beam holds hypotheses that end early, and
    one chosen freely dropped a 20 s sentence (long validation set, a prior per token):
    the prior may choose which words, never how many. Hypotheses that differ only in
    their timestamps share a text: each text is read and rated once.

    The request's hotwords the likeliest hypothesis holds are kept: a hotword is often a
    name or a term the dictionary lacks, which the prior would trade for common words."""
    top = max(range(len(texts)), key=lambda k: scores[k])
    split = {text: _units(text) for text in dict.fromkeys(texts)}
    size = len(split[texts[top]])
    top_form = "".join(split[texts[top]])
    kept = [f for w in hotwords if (f := comparison_form(w, "zh")) and f in top_form]
    weighted: dict[str, float] = {}  # an eligible text's weighted prior per character
    for text, u in split.items():
        if abs(len(u) - size) <= 1 and all(f in "".join(u) for f in kept):
            weighted[text] = PRIOR_WEIGHT * PRIOR.logprob_of(u) / max(len(u), 1)
    # the likeliest is always eligible; ties go to the earlier hypothesis
    return max((k for k, t in enumerate(texts) if t in weighted), key=lambda k: scores[k] + weighted[texts[k]])
