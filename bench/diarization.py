"""Speaker diarization with the real prepared models: DER (0.25 s collar, overlap scored)
and speaker-count error, RTF beside them.

    python -m tingxie models --prepare diarization      # once
    python bench/diarization.py                         # ~10 min on 2 shared cores

Sets:
  joined      recordings built from ../shared/eval and ../shared/eval-extra clips of
              different speakers (one source repository = one speaker; clips that are
              themselves dialogues left out): 2–5 speakers, pauses of 0.3–1.5 s, some
              turns starting 0.4–0.8 s before the last ended (overlap), the first speaker
              returning at the end with the other half of their clip. Built separately from
              the calibration and the validation half (tingxie/bench/split.py). The
              reference turns are each clip's speech by Silero VAD (pauses inside a clip,
              long in the spontaneous ones, are not speech).
  meetings    ../shared/diar: AMI meeting excerpts and a phone call with RTTM references.
The clustering threshold is chosen on the calibration recordings (lowest DER, then count
error; the middle of tied thresholds) and reported on the validation recordings and the
meetings.
Writes bench/results/diarization.md and diarization.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tingxie.audio import decode  # noqa: E402
from tingxie.bench.der import Score, read_rttm, score  # noqa: E402
from tingxie.bench.split import half_of, source_repo  # noqa: E402
from tingxie.engines.diarization import Diarizer  # noqa: E402
from tingxie.engines.diarization import find as diarization_models  # noqa: E402
from tingxie.settings import get_settings  # noqa: E402
from tingxie.types import DiarizeOptions, VadOptions  # noqa: E402
from tingxie.vad import detect_speech  # noqa: E402

SHARED = ROOT.parent / "shared"
RATE = 16000
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
MAX_TURN_S = 9.0


def _trimmed(x: np.ndarray) -> np.ndarray:
    """The clip without its leading and trailing silence (20 ms frames 35 dB below the
    loudest), so the reference turn is the speech."""
    n = len(x) // 320
    if n == 0:
        return x
    e = (x[: n * 320].reshape(n, 320) ** 2).mean(axis=1)
    loud = np.nonzero(e > e.max() * 10 ** (-3.5))[0]
    return x[loud[0] * 320 : (loud[-1] + 1) * 320] if len(loud) else x


def speakers_of(half: str) -> dict[str, list[np.ndarray]]:
    """Per speaker (source repository) of a half, its clips (trimmed, ≥ 3 s)."""
    out: dict[str, list[np.ndarray]] = {}
    for set_name in ("eval", "eval-extra"):
        man = SHARED / set_name / "manifest.jsonl"
        if not man.is_file():
            continue
        for line in man.read_text().splitlines():
            row = json.loads(line)
            if half_of(row, set_name) != half or "dialogue" in row["id"]:
                continue
            x = _trimmed(decode(SHARED / set_name / row["audio"]))
            if len(x) >= 3 * RATE:
                out.setdefault(source_repo(row), []).append(x[: int(2 * MAX_TURN_S * RATE)])
    return out


def build(half: str, count: int, seed: int) -> list[tuple[str, np.ndarray, list]]:
    """`count` recordings of 2–5 speakers from one half, with their reference turns."""
    rng = random.Random(seed)
    pool = speakers_of(half)
    names = sorted(pool)
    out = []
    for k in range(count):
        n = min(2 + k % 4, len(names))
        chosen = rng.sample(names, n)
        turns_audio = []
        for i, who in enumerate(chosen):
            clip = rng.choice(pool[who])
            if i == 0:  # the first speaker returns at the end with the clip's other half
                half_at = len(clip) // 2
                turns_audio.append((who, clip[:half_at][: int(MAX_TURN_S * RATE)]))
                back = (who, clip[half_at:][: int(MAX_TURN_S * RATE)])
            else:
                turns_audio.append((who, clip[: int(MAX_TURN_S * RATE)]))
        turns_audio.append(back)
        at = 0.5
        total = np.zeros(
            int((sum(len(a) for _, a in turns_audio) / RATE + 2 * len(turns_audio) + 2) * RATE), np.float32
        )
        ref = []
        for i, (who, a) in enumerate(turns_audio):
            if i and rng.random() < 0.3:
                at -= rng.uniform(0.4, 0.8)  # this one starts before the last one ended
            elif i:
                at += rng.uniform(0.3, 1.5)
            s = int(at * RATE)
            total[s : s + len(a)] += a
            # the reference is the clip's speech (Silero VAD, 100 ms pad), not its pauses
            for span in detect_speech(a, VadOptions(min_silence_ms=300, speech_pad_ms=100)):
                ref.append((at + span.start / RATE, at + span.end / RATE, who))
            at += len(a) / RATE
        total = total[: int((at + 0.5) * RATE)]
        out.append((f"{half}-{k + 1}-{n}spk", total, ref))
    return out


def run(d: Diarizer, items, threshold: float) -> tuple[Score, list[dict], float, float]:
    total = None
    rows = []
    wall = audio = 0.0
    for name, x, ref in items:
        t0 = time.perf_counter()
        turns = d.process(x, DiarizeOptions(threshold=threshold))
        wall += time.perf_counter() - t0
        audio += len(x) / RATE
        hyp = [(t.start, t.end, str(t.speaker)) for t in turns]
        s = score(ref, hyp, collar=0.25, duration=len(x) / RATE)
        rows.append(
            {
                "id": name,
                "der": round(s.der, 4),
                "speakers": s.ref_speakers,
                "found": s.hyp_speakers,
                "s": round(len(x) / RATE, 1),
            }
        )
        total = s if total is None else total + s
    assert total is not None
    return total, rows, wall, audio


def count_error(rows: list[dict]) -> tuple[float, float]:
    errs = [abs(r["found"] - r["speakers"]) for r in rows]
    return sum(errs) / len(errs), sum(e == 0 for e in errs) / len(errs)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--recordings", type=int, default=8, help="joined recordings per half")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--thresholds", default=",".join(map(str, THRESHOLDS)), help="the calibration sweep")
    args = p.parse_args()
    found = diarization_models.find_diarization(get_settings().models_dir)
    if found is None:
        sys.exit("no diarization models: run `tingxie models --prepare diarization` first")
    d = Diarizer(found.segmentation, found.embedding, threads=args.threads)
    calibration = build("calibration", args.recordings, seed=1)
    validation = build("validation", args.recordings, seed=2)
    meetings = []
    man = SHARED / "diar" / "manifest.jsonl"
    if man.is_file():
        for line in man.read_text().splitlines():
            row = json.loads(line)
            meetings.append(
                (row["id"], decode(SHARED / "diar" / row["audio"]), read_rttm(SHARED / "diar" / row["rttm"]))
            )

    sweep = []
    for th in [float(x) for x in args.thresholds.split(",")]:
        s, rows, wall, audio = run(d, calibration, th)
        mae, exact = count_error(rows)
        sweep.append(
            {"threshold": th, "der": round(s.der, 4), "count_mae": round(mae, 3), "count_exact": round(exact, 3)}
        )
        print(f"calibration threshold {th}: DER {s.der:.3f}, count error {mae:.2f}", flush=True)
    # the lowest DER (then count error); of thresholds that tie, the middle one (widest margin)
    low = min((r["der"], r["count_mae"]) for r in sweep)
    tied = [r["threshold"] for r in sweep if (r["der"], r["count_mae"]) == low]
    best = min(tied, key=lambda th: abs(th - (tied[0] + tied[-1]) / 2))
    results = {"models": found.name, "threshold": best, "sweep": sweep, "sets": {}}
    for name, items in (("validation (joined)", validation), ("meetings (../shared/diar)", meetings)):
        if not items:
            continue
        s, rows, wall, audio = run(d, items, best)
        mae, exact = count_error(rows)
        results["sets"][name] = {
            "der": round(s.der, 4),
            "missed": round(s.missed / s.reference, 4),
            "false_alarm": round(s.false_alarm / s.reference, 4),
            "confusion": round(s.confusion / s.reference, 4),
            "count_mae": round(mae, 3),
            "count_exact": round(exact, 3),
            "rtf": round(wall / audio, 4),
            "audio_s": round(audio, 1),
            "recordings": rows,
        }
        print(f"{name}: DER {s.der:.3f}, count error {mae:.2f}, RTF {wall / audio:.3f}", flush=True)
    out = ROOT / "bench" / "results"
    (out / "diarization.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    lines = [
        "# Speaker diarization (bench/diarization.py)",
        "",
        f"Models: {found.name} (`tingxie models --prepare diarization`), sherpa-onnx 2.0.1, "
        f"{args.threads} thread, CPU, a shared 2-core machine (contended: RTF is an upper bound).",
        "DER with a 0.25 s collar, overlapping speech scored; count error = |speakers found − speakers|.",
        "",
        "## Threshold, chosen on the calibration half (joined recordings)",
        "",
        "| threshold | DER | count error (mean abs) | count exact |",
        "|---|---|---|---|",
        *[
            f"| {r['threshold']}{' (chosen)' if r['threshold'] == best else ''} | {r['der']:.1%} | {r['count_mae']:.2f} | {r['count_exact']:.0%} |"
            for r in sweep
        ],
        "",
        f"## At threshold {best}",
        "",
        "| set | audio | DER | missed | false alarm | confusion | count error | count exact | RTF |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {k} | {v['audio_s']:.0f} s | {v['der']:.1%} | {v['missed']:.1%} | {v['false_alarm']:.1%} | {v['confusion']:.1%} "
            f"| {v['count_mae']:.2f} | {v['count_exact']:.0%} | {v['rtf']:.3f} |"
            for k, v in results["sets"].items()
        ],
        "",
        "Per recording (speakers / found, DER):",
        "",
        *[
            f"- {k}: " + "; ".join(f"{r['id']} {r['speakers']}/{r['found']} {r['der']:.1%}" for r in v["recordings"])
            for k, v in results["sets"].items()
        ],
        "",
    ]
    (out / "diarization.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
