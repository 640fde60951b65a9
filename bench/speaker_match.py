"""Known speakers: the voice-print match threshold (tingxie.diarize.MATCH_THRESHOLD),
with false accepts and false rejects on real speech.

    python bench/speaker_match.py      # ~1 min on 2 shared cores

Trials from ../shared/eval and ../shared/eval-extra clips of ≥ 7 s: a reference (the
clip's first 5 s, as an enrolment or OpenAI's known_speaker_references[] gives) against
a test (the rest of the same clip: the same speaker) or against the rest of a clip from
another source repository (another speaker). The threshold is the one with the fewest
errors (false accept rate + false reject rate) on the calibration half (the middle of
them when several tie)
(tingxie/bench/split.py) and reported on the validation half. Writes
bench/results/speaker_match.md and .json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tingxie.audio import decode  # noqa: E402
from tingxie.bench.split import half_of, source_repo  # noqa: E402
from tingxie.diarize import MATCH_THRESHOLD  # noqa: E402
from tingxie.engines.diarization import Diarizer, cosine  # noqa: E402
from tingxie.engines.diarization import find as diarization_models  # noqa: E402
from tingxie.settings import get_settings  # noqa: E402

SHARED = ROOT.parent / "shared"
RATE = 16000


def trials(d: Diarizer, half: str) -> tuple[list[float], list[float]]:
    clips = []
    for set_name in ("eval", "eval-extra"):
        man = SHARED / set_name / "manifest.jsonl"
        if not man.is_file():
            continue
        for line in man.read_text().splitlines():
            row = json.loads(line)
            if half_of(row, set_name) != half or "dialogue" in row["id"]:
                continue
            x = decode(SHARED / set_name / row["audio"])
            if len(x) >= 7 * RATE:
                x = x[: 20 * RATE]
                clips.append((source_repo(row), d.embed(x[: 5 * RATE]), d.embed(x[5 * RATE :])))
    same = [cosine(ref, test) for _, ref, test in clips]
    other = [cosine(a[1], b[2]) for a in clips for b in clips if a[0] != b[0]]
    return same, other


def rates(same: list[float], other: list[float], th: float) -> tuple[float, float]:
    fr = sum(c < th for c in same) / len(same)
    fa = sum(c >= th for c in other) / len(other)
    return fa, fr


def main() -> int:
    found = diarization_models.find_diarization(get_settings().models_dir)
    if found is None:
        sys.exit("no diarization models: run `tingxie models --prepare diarization` first")
    d = Diarizer(found.segmentation, found.embedding)
    cal = trials(d, "calibration")
    val = trials(d, "validation")
    grid = [round(x, 2) for x in np.arange(0.2, 0.81, 0.05)]
    # the middle of the thresholds with the fewest calibration errors: the widest margin
    fewest = min(sum(rates(*cal, th)) for th in grid)
    tied = [th for th in grid if sum(rates(*cal, th)) == fewest]
    best = min(grid, key=lambda th: abs(th - (tied[0] + tied[-1]) / 2))
    rows = []
    for th in grid:
        cfa, cfr = rates(*cal, th)
        vfa, vfr = rates(*val, th)
        rows.append({"threshold": th, "cal_fa": cfa, "cal_fr": cfr, "val_fa": vfa, "val_fr": vfr})
    res = {
        "models": found.name,
        "chosen": best,
        "in_code": MATCH_THRESHOLD,
        "trials": {h: {"same": len(t[0]), "other": len(t[1])} for h, t in (("calibration", cal), ("validation", val))},
        "sweep": rows,
        "cosine": {
            h: {"same_mean": float(np.mean(t[0])), "other_mean": float(np.mean(t[1])), "other_max": float(max(t[1]))}
            for h, t in (("calibration", cal), ("validation", val))
        },
    }
    out = ROOT / "bench" / "results"
    (out / "speaker_match.json").write_text(json.dumps(res, indent=2) + "\n")
    md = [
        "# Known speakers: the match threshold (bench/speaker_match.py)",
        "",
        f"Models: {found.name}. Trials: a 5 s reference against the rest of the same clip (same speaker)"
        " or of a clip from another source (another speaker).",
        f"Calibration: {len(cal[0])} same / {len(cal[1])} other trials; validation: {len(val[0])} same /"
        f" {len(val[1])} other. Mean cosine same {np.mean(val[0]):.2f}, other {np.mean(val[1]):.2f}"
        f" (validation).",
        "",
        f"Chosen on calibration (the middle of the thresholds with the fewest false accepts + false rejects): **{best}**"
        f" (tingxie.diarize.MATCH_THRESHOLD = {MATCH_THRESHOLD}).",
        "",
        "| threshold | calibration false accept | calibration false reject | validation false accept | validation false reject |",
        "|---|---|---|---|---|",
        *[
            f"| {r['threshold']}{' (chosen)' if r['threshold'] == best else ''} | {r['cal_fa']:.1%} | {r['cal_fr']:.1%}"
            f" | {r['val_fa']:.1%} | {r['val_fr']:.1%} |"
            for r in rows
        ],
        "",
    ]
    (out / "speaker_match.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
