"""Quiet speech never lost: joined Mandarin recordings from the validation half, per clip.

    python bench/quiet.py                  # six recordings of 12 clips (≈ 5 min on 2 shared cores)
    python bench/quiet.py --recordings 2

Each recording joins 12 Mandarin utterances of the validation half (tingxie.bench.split:
../shared/eval's validation sources and all of ../shared/eval-extra; none of them chose a
constant) with 0.4–1.5 s pauses of faint noise; four clips are attenuated by 20–40 dB (never
below a −40 dBFS peak) and one is set to a whispered level (peak −38…−40 dBFS). tingxie
transcribes each recording as `tingxie transcribe --language zh --no-itn` does (batch lane);
the whole transcript is aligned against the references in order, so each clip's text is
what the alignment gives it. A clip is lost when under a third of its characters are found
(tests/test_speech_loss.py's rule). Writes bench/results/quiet.md and quiet.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the recordings are built as the speech-loss tests build them

from helpers import write_wav  # noqa: E402
from speech_loss_audio import join_with_cuts, per_clip_recall, per_clip_texts, validation_zh_items  # noqa: E402

from tingxie.bench.score import error_rate  # noqa: E402

CLIPS = 12
QUIET = 4
RECOVERED = 0.34  # as tests/test_speech_loss.py


def recordings(shared: Path, n: int) -> list[tuple[list[dict], set[int], int]]:
    """(clips, attenuated indexes, whispered index) for each recording, seeded."""
    pool = validation_zh_items(shared)
    out = []
    for seed in range(n):
        rng = random.Random(1000 + seed)
        items = rng.sample(pool, min(CLIPS, len(pool)))
        chosen = rng.sample(range(len(items)), min(QUIET + 1, len(items)))
        out.append((items, set(chosen[:-1]), chosen[-1]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--recordings", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()

    from tingxie.manager import ModelManager
    from tingxie.scheduler import BATCH
    from tingxie.settings import Settings
    from tingxie.transcribe import transcribe
    from tingxie.types import DecodeOptions, TextOptions, VadOptions

    shared = Path(args.shared)
    if not validation_zh_items(shared):
        print(f"no validation-half Mandarin under {shared}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tingxie-quiet-"))
    manager = ModelManager(Settings())
    rows: list[dict] = []
    t0 = time.perf_counter()
    try:
        sched = manager.scheduler()
        for k, (items, quiet, whisper) in enumerate(recordings(shared, args.recordings)):
            audio, times, cuts = join_with_cuts(
                Path("/"), items, seed=k, quiet=quiet, attenuation_db=(20.0, 40.0), floor_peak_db=-40.0, whisper=whisper
            )
            path = write_wav(work / f"joined-{k}.wav", audio)
            t = transcribe(path, sched, DecodeOptions(language="zh"), VadOptions(), TextOptions(itn=False), BATCH)
            refs = [m["text"] for m in items]
            recall = per_clip_recall(refs, t.text)
            texts = per_clip_texts(refs, t.text)
            for i, m in enumerate(items):
                rows.append(
                    {
                        "recording": k,
                        "clip": f"{m['set']}/{m['id']}",
                        "at_s": round(times[i][0], 1),
                        "attenuation_db": cuts[i],
                        "whispered": i == whisper,
                        "cer": round(100 * error_rate([m["text"]], [texts[i]], "zh"), 1),
                        "recall": round(recall[i], 2),
                        "lost": recall[i] < RECOVERED,
                        "text": texts[i],
                    }
                )
            lost = sum(r["lost"] for r in rows if r["recording"] == k)
            print(f"recording {k}: {len(items)} clips, {lost} lost; warnings: {len(t.warnings)}", flush=True)
    finally:
        manager.close()
    wall = time.perf_counter() - t0
    lost = [r for r in rows if r["lost"]]
    quiet_rows = [r for r in rows if r["attenuation_db"] > 0]
    lines = [
        f"# Quiet speech on the validation half ({time.strftime('%Y%m%d-%H%M%S')})",
        "",
        f"`python bench/quiet.py --recordings {args.recordings}` — {len(rows)} clips in {args.recordings} joined "
        f"recordings of validation-half Mandarin (eval's validation sources and eval-extra), {QUIET} clips per "
        "recording attenuated by 20–40 dB (peak ≥ −40 dBFS) and one at a whispered level (peak −38…−40 dBFS); "
        "tingxie batch lane, language zh, ITN off; whisper-base int8 on CPU "
        f"({wall:.0f} s on a shared 2-core machine). *found*: the share of the clip's characters the "
        "alignment of the whole transcript against the references (in order) finds; *lost*: under a third "
        "found. *CER*: against the stretch of transcript the alignment assigns to the clip; where the clip "
        "boundaries in the transcript are guessed, that stretch carries a neighbour's first or last "
        "characters, so a clip read right can show a CER near or over 100 %.",
        "",
        f"**Lost: {len(lost)} of {len(rows)} clips** ({sum(r['lost'] for r in quiet_rows)} of "
        f"{len(quiet_rows)} attenuated).",
        "",
        "| recording | clip | at (s) | attenuation (dB) | found % | CER % | lost? |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        att = f"{r['attenuation_db']:.1f}" + (" (whispered level)" if r["whispered"] else "")
        lines.append(
            f"| {r['recording']} | {r['clip']} | {r['at_s']} | {att} | {100 * r['recall']:.0f} | {r['cer']} "
            f"| {'LOST' if r['lost'] else 'no'} |"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quiet.md").write_text("\n".join(lines) + "\n")
    (out / "quiet.json").write_text(json.dumps({"wall_s": round(wall, 1), "clips": rows}, indent=1, ensure_ascii=False))
    print(f"lost {len(lost)} of {len(rows)}; wrote {out / 'quiet.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
