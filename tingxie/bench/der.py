"""Diarization error rate (DER) and speaker-count error, scored as NIST md-eval does
it in the common setting: 10 ms frames, a forgiveness collar around every reference
boundary (0.25 s each side by default) left out of the score, overlapping speech scored,
and the reference and hypothesis speakers paired one-to-one to give the most agreement.

    DER = (missed speech + false alarm + speaker confusion) / reference speech

counted in speaker-frames: a frame where two people speak counts twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from pathlib import Path

import numpy as np

FRAME_S = 0.01

Turns = list[tuple[float, float, str]]  # (start, end, speaker)


@dataclass
class Score:
    reference: float  # seconds of reference speech (speaker-seconds, collars left out)
    missed: float
    false_alarm: float
    confusion: float
    ref_speakers: int
    hyp_speakers: int

    @property
    def der(self) -> float:
        return (self.missed + self.false_alarm + self.confusion) / self.reference if self.reference else 0.0

    def __add__(self, other: Score) -> Score:  # a corpus total: DER weighted by speech
        return Score(
            self.reference + other.reference,
            self.missed + other.missed,
            self.false_alarm + other.false_alarm,
            self.confusion + other.confusion,
            self.ref_speakers + other.ref_speakers,
            self.hyp_speakers + other.hyp_speakers,
        )


def read_rttm(path: Path) -> Turns:
    out: Turns = []
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            out.append((start, start + dur, f[7]))
    return out


def _activity(turns: Turns, speakers: list[str], frames: int) -> np.ndarray:
    a = np.zeros((len(speakers), frames), dtype=bool)
    index = {s: i for i, s in enumerate(speakers)}
    for start, end, who in turns:
        a[index[who], int(round(start / FRAME_S)) : int(round(end / FRAME_S))] = True
    return a


def _best_pairing(overlap: np.ndarray) -> float:
    """The most frames a one-to-one pairing of reference (rows) and hypothesis (columns)
    speakers can agree on (brute force: a handful of speakers)."""
    r, h = overlap.shape
    if r == 0 or h == 0:
        return 0.0
    if r > h:
        return _best_pairing(overlap.T)
    return max(sum(overlap[i, p[i]] for i in range(r)) for p in permutations(range(h), r))


def score(reference: Turns, hypothesis: Turns, collar: float = 0.25, duration: float | None = None) -> Score:
    end = max([e for _, e, _ in reference + hypothesis] + [duration or 0.0])
    frames = int(np.ceil(end / FRAME_S)) + 1
    ref_spk = sorted({s for _, _, s in reference})
    hyp_spk = sorted({s for _, _, s in hypothesis})
    ref = _activity(reference, ref_spk, frames)
    hyp = _activity(hypothesis, hyp_spk, frames)
    keep = np.ones(frames, dtype=bool)
    c = int(round(collar / FRAME_S))
    for start, stop, _ in reference:
        for t in (start, stop):
            f = int(round(t / FRAME_S))
            keep[max(0, f - c) : f + c] = False
    ref, hyp = ref[:, keep], hyp[:, keep]
    n_ref, n_hyp = ref.sum(axis=0), hyp.sum(axis=0)
    overlap = (ref[:, None, :] & hyp[None, :, :]).sum(axis=2).astype(float)
    correct = _best_pairing(overlap)
    return Score(
        reference=float(n_ref.sum()) * FRAME_S,
        missed=float(np.maximum(0, n_ref - n_hyp).sum()) * FRAME_S,
        false_alarm=float(np.maximum(0, n_hyp - n_ref).sum()) * FRAME_S,
        confusion=(float(np.minimum(n_ref, n_hyp).sum()) - correct) * FRAME_S,
        ref_speakers=len(ref_spk),
        hyp_speakers=len(hyp_spk),
    )
