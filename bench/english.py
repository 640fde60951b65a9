"""English accuracy: tingxie vs the serial faster-whisper baseline, per set of real speech.

    python bench/english.py                      # all sets (~10 min on 2 shared cores)
    python bench/english.py --sets eval,packaged # only the untouched recordings

Sets (all real recordings; none synthesized):
  eval       ../shared/eval's English items (skipped when absent)
  packaged   English speech shipped in installed packages (tingxie.bench.corpus.packaged_english:
             Debian pocketsphinx-testdata; skipped with the reason when absent)
  quiet      the short clips of both at -20 dB (a far microphone)
  joined     the short clips joined with 0.3–2.5 s pauses into four ~80 s recordings, so a
             file spans several windows (packing across pauses, windows decoded apart)
Methods, on the same model (whisper-base int8, CPU), ITN off:
  serial     WhisperModel.transcribe(path, beam_size=5, vad_filter=True), one file at a time
  files      tingxie's pipeline in-process for all files at once (transcribe_many: the CLI,
             jobs and workers; as tests/test_accuracy.py)
  sync       tingxie's pipeline one file at a time in the interactive lane, as
             POST /v1/audio/transcriptions runs it
Scores: corpus WER with tingxie.text.error_rate; and the same with number words and digits
left out of both sides ("numbers out"), because the references spell numbers ("ten of
clubs") while Whisper writes either form, a choice that flips on context. Writes
bench/results/english.md and english.json with per-clip texts.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tingxie.bench.corpus import packaged_english, write_wav  # noqa: E402
from tingxie.bench.score import error_rate, normalize_for_scoring  # noqa: E402

NUMBER_WORDS = set(
    "zero oh one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million".split()
)
LONG_S = 30.0  # clips longer than this are not varied (quiet, joined)


def numbers_out(text: str) -> str:
    words = normalize_for_scoring(text, "en").replace("-", " ").split()
    return " ".join(w for w in words if w not in NUMBER_WORDS and not any(c.isdigit() for c in w))


def load_sets(eval_dir: Path, work: Path, wanted: list[str]) -> tuple[dict[str, list[dict]], list[str]]:
    """Rows {id, path, text} per set, and notes on what was skipped."""
    from tingxie.audio import decode

    notes: list[str] = []
    clips: list[tuple[dict, np.ndarray]] = []  # short real clips, for the varied sets
    sets: dict[str, list[dict]] = {}
    manifest = eval_dir / "manifest.jsonl"
    if manifest.is_file():
        rows = []
        for line in manifest.read_text().splitlines():
            m = json.loads(line) if line.strip() else None
            if m and m["lang"] == "en":
                row = {"id": m["id"], "path": str(eval_dir / m["audio"]), "text": m["text"]}
                rows.append(row)
                x = decode(row["path"])
                if len(x) / 16000 <= LONG_S:
                    clips.append((row, x))
        sets["eval"] = rows
    else:
        notes.append(f"eval: no eval set at {eval_dir}")
    packaged, why = packaged_english()
    if packaged:
        rows = []
        for s in packaged:
            path = work / f"{s.id}.wav"
            write_wav(path, s.audio)
            rows.append({"id": s.id, "path": str(path), "text": s.text, "source": s.source, "licence": s.licence})
            clips.append((rows[-1], s.audio))
        sets["packaged"] = rows
    else:
        notes.append(f"packaged: {why}")
    if clips:
        quiet = []
        for row, x in clips:
            path = work / f"{row['id']}.quiet.wav"
            write_wav(path, x * 0.1)
            quiet.append({"id": f"{row['id']}.quiet", "path": str(path), "text": row["text"]})
        sets["quiet"] = quiet
        rng = random.Random(0)
        joined = []
        for k in range(4):
            order = clips[:]
            rng.shuffle(order)
            parts: list[np.ndarray] = []
            for _, x in order:
                parts += [x, np.zeros(int(rng.uniform(0.3, 2.5) * 16000), np.float32)]
            path = work / f"joined_{k}.wav"
            write_wav(path, np.concatenate(parts))
            joined.append({"id": f"joined_{k}", "path": str(path), "text": " ".join(r["text"] for r, _ in order)})
        sets["joined"] = joined
    return {k: v for k, v in sets.items() if k in wanted}, notes


def serial(rows: list[dict], model_dir: str) -> dict[str, str]:
    from faster_whisper import WhisperModel

    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
    out = {}
    for r in rows:
        segs, _ = model.transcribe(r["path"], beam_size=5, vad_filter=True)
        out[r["id"]] = "".join(s.text for s in segs).strip()
    return out


def tingxie(rows: list[dict], home: Path) -> dict[str, dict[str, str]]:
    """{"files": {id: text}, "sync": {id: text}}."""
    from tingxie.manager import ModelManager
    from tingxie.scheduler import INTERACTIVE
    from tingxie.settings import Settings
    from tingxie.transcribe import transcribe, transcribe_many
    from tingxie.types import DecodeOptions, TextOptions, VadOptions

    manager = ModelManager(Settings(home=home))
    try:
        sched = manager.scheduler()
        outs = list(
            transcribe_many([r["path"] for r in rows], sched, DecodeOptions(), VadOptions(), TextOptions(itn=False))
        )
        bad = [o.error for o in outs if o.error]
        if bad:
            raise SystemExit(f"tingxie failed: {bad}")
        files = {rows[o.index]["id"]: o.transcript.text for o in outs if o.transcript}
        sync = {
            r["id"]: transcribe(
                r["path"], sched, DecodeOptions(), VadOptions(), TextOptions(itn=False), lane=INTERACTIVE
            ).text
            for r in rows
        }
    finally:
        manager.close()
    return {"files": files, "sync": sync}


def score(rows: list[dict], hyps: dict[str, str]) -> dict[str, float]:
    refs = [r["text"] for r in rows]
    hs = [hyps[r["id"]] for r in rows]
    return {
        "wer": round(100 * error_rate(refs, hs, "en"), 2),
        "wer_numbers_out": round(
            100 * error_rate([numbers_out(x) for x in refs], [numbers_out(x) for x in hs], "en"), 2
        ),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval-dir", default=str(ROOT.parent / "shared" / "eval"))
    ap.add_argument("--sets", default="eval,packaged,quiet,joined")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()

    from tingxie import models as models_mod
    from tingxie.settings import Settings

    settings = Settings()
    model_dir = str(models_mod.assemble_bundled(settings.models_dir))
    work = Path(tempfile.mkdtemp(prefix="tingxie-english-"))
    sets, notes = load_sets(Path(args.eval_dir), work, args.sets.split(","))
    for n in notes:
        print(f"skipped {n}", file=sys.stderr)
    if not sets:
        print("no English sets to measure", file=sys.stderr)
        return 2
    rows = [r for rs in sets.values() for r in rs]
    t0 = time.perf_counter()
    hyps = {"serial": serial(rows, model_dir)}
    t1 = time.perf_counter()
    hyps.update(tingxie(rows, settings.home))
    t2 = time.perf_counter()
    methods = list(hyps)
    report: dict = {"notes": notes, "wall_s": {"serial": round(t1 - t0, 1), "tingxie": round(t2 - t1, 1)}, "sets": {}}
    lines = [
        f"# English accuracy: tingxie vs serial faster-whisper ({time.strftime('%Y%m%d-%H%M%S')})",
        "",
        "`python bench/english.py` — whisper-base int8, CPU, ITN off; corpus WER % (tingxie.text.error_rate). "
        "*serial*: faster-whisper `transcribe(beam_size=5, vad_filter=True)`; *files*: tingxie's CLI/jobs path "
        "(transcribe_many); *sync*: one request at a time in the interactive lane, as "
        "`POST /v1/audio/transcriptions`. *Numbers out*: the same with number words and digits removed "
        "from both sides (references spell numbers; Whisper writes either form).",
        "",
        "| set | clips | "
        + " | ".join(f"{m} WER" for m in methods)
        + " | "
        + " | ".join(f"{m}, numbers out" for m in methods)
        + " |",
        "|---|---|" + "---|" * (2 * len(methods)),
    ]
    for name, rs in sets.items():
        scores = {m: score(rs, hyps[m]) for m in methods}
        report["sets"][name] = {
            "clips": len(rs),
            **scores,
            "items": [{**r, **{m: hyps[m][r["id"]] for m in methods}} for r in rs],
        }
        lines.append(
            f"| {name} | {len(rs)} | "
            + " | ".join(str(scores[m]["wer"]) for m in methods)
            + " | "
            + " | ".join(str(scores[m]["wer_numbers_out"]) for m in methods)
            + " |"
        )
        print(f"{name:9s} {len(rs):3d} clips  " + "  ".join(f"{m} {scores[m]}" for m in methods), flush=True)
    lines += ["", *[f"Skipped {n}." for n in notes]]
    packaged = sets.get("packaged") or []
    if packaged:
        lines += ["", "Packaged English (not committed; found at run time):", ""]
        lines += [f"- `{r['id']}`: {r['source']} ({r['licence']}): “{r['text']}”" for r in packaged]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "english.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    (out / "english.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'english.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
