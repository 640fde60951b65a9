"""Real-time streams at capacity: N concurrent paced streams of Mandarin speech from the
validation half (tingxie/bench/split.py: clips the constants were not tuned on) sent to
/v1/stream at real-time pace; client-side latencies, and the finals' CER beside the CER of
the same recordings sent as files.

    python bench/realtime.py                          # 16 streams, 3 runs, validation half
    python bench/realtime.py --streams 8,12,16 --repeats 3 --reference
    python bench/realtime.py --url http://127.0.0.1:8000 --api-key ...   # a running server

Each stream sends its own recording (~25 s: the half's Mandarin utterances joined by
1.2 s pauses, seeded per stream) in 100 ms frames at real-time pace, starts staggered by
0.37 s. first partial: the first partial of a sentence − when the sentence's first
sample was sent; final: the final received − when the sentence's `end` sample was sent
(the endpoint silence is inside). Each level runs --repeats times; the table shows the
median of the runs' figures and every run's p95. Targets (issue 31): at 16 streams on
2 cores, final p95 ≤ 1.0 s and first-partial p95 ≤ 1.0 s, finals' CER no worse than the
files'. `--reference` adds the serial approach (`--pipeline reference`: each sentence
decoded whole after a 1500 ms endpoint, no partials). The machine's load is measured
during the run. Writes bench/results/realtime.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tingxie import audio as audio_mod  # noqa: E402
from tingxie.bench.clients import StreamAudio, post_files, stream_level  # noqa: E402
from tingxie.bench.corpus import Utterance, concat_speech, write_wav  # noqa: E402
from tingxie.bench.monitor import MachineLoad, load_sentence  # noqa: E402
from tingxie.bench.report import md_table  # noqa: E402
from tingxie.bench.score import error_rate  # noqa: E402
from tingxie.bench.split import half_of, shared_sets  # noqa: E402
from tingxie.localserver import LocalServer  # noqa: E402

FIGURES = ("first_update_p50", "first_update_p95", "final_p50", "final_p95", "lag_p95", "audio_s_per_wall_s")
COLS = [(c, c) for c in ("mode", "streams", "runs", *FIGURES, "finals", "error_pct", "final_p95_runs")]


def utterances(shared: Path, half: str) -> list[Utterance]:
    """The half's Mandarin utterances (eval and eval-extra)."""
    out = []
    for name, folder in shared_sets(shared):
        for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            if r["lang"] == "zh" and half_of(r, name) == half:
                out.append(Utterance(r["id"], audio_mod.decode(str(folder / r["audio"])), "zh", r["text"]))
    return out


def recordings(utts: list[Utterance], n: int, seconds: float, pause: float) -> list[StreamAudio]:
    """N different recordings of `seconds`, utterances joined by `pause` s of silence."""
    out = []
    for k in range(n):
        x, ref, lang = concat_speech(utts, seconds, random.Random(1000 + k), pause=(pause, pause))
        out.append(StreamAudio((np.clip(x, -1, 1) * 32767).astype("<i2"), ref, lang))
    return out


def file_error(url: str, speeches: list[StreamAudio], work: Path, api_key: str | None) -> float:
    """CER (%) of the same recordings sent as files (one at a time)."""
    rows = []
    for k, s in enumerate(speeches):
        p = work / f"stream_{k:02d}.wav"
        write_wav(p, s.pcm)
        rows.append({"id": str(k), "path": str(p)})
    r = asyncio.run(post_files(url, rows, 1, api_key, "zh"))
    if r["errors"]:
        raise RuntimeError(f"file requests failed: {r['errors'][:2]}")
    return round(
        100 * error_rate([s.reference for s in speeches], [r["hyps"][str(k)] for k in range(len(rows))], "zh"), 2
    )


def median_row(mode: str, n: int, runs: list[dict]) -> dict:
    row: dict = {"mode": mode, "streams": n, "runs": len(runs)}
    for f in FIGURES:
        vals = [r[f] for r in runs if r.get(f) is not None]
        row[f] = round(statistics.median(vals), 3) if vals else None
    row["finals"] = runs[0]["finals"]
    errs = [r["error_pct"] for r in runs if r.get("error_pct") is not None]
    row["error_pct"] = round(statistics.median(errs), 2) if errs else None
    row["final_p95_runs"] = " / ".join(f"{r['final_p95']:.2f}" for r in runs)
    row["first_update_p95_runs"] = " / ".join(f"{r['first_update_p95']:.2f}" for r in runs if r["first_update_p95"])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="use a running server instead of starting one")
    ap.add_argument("--api-key")
    ap.add_argument("--streams", default="16", help="stream counts, comma-separated (default 16)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per level; medians reported (default 3)")
    ap.add_argument("--seconds", type=float, default=25.0, help="audio per stream (default 25)")
    ap.add_argument("--pause", type=float, default=1.2, help="seconds between utterances (default 1.2)")
    ap.add_argument("--half", default="validation", choices=("calibration", "validation"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="folder holding eval/ and eval-extra/")
    ap.add_argument("--reference", action="store_true", help="also measure the serial approach")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()
    utts = utterances(Path(a.shared), a.half)
    if not utts:
        ap.error(f"no Mandarin utterances of the {a.half} half under {a.shared}")
    levels = [int(x) for x in a.streams.split(",")]
    speeches = recordings(utts, max(levels), a.seconds, a.pause)
    modes = [("streaming", [], {"language": "zh"})]
    if a.reference:
        modes.append(
            ("serial", ["--pipeline", "reference"], {"language": "zh", "partials": False, "endpoint_silence_ms": 1500})
        )
    rows, runs_out = [], []
    load = MachineLoad()
    work = Path(tempfile.mkdtemp(prefix="tx-rt-"))
    file_cer = None
    with load:
        for name, args, opts in modes:
            srv = None if a.url else LocalServer(args).start()
            if srv and srv.proc:
                load.watch(srv.proc.pid)
            url = a.url or srv.url
            try:
                if name == "streaming":
                    file_cer = file_error(url, speeches, work, a.api_key)
                for n in levels:
                    runs = []
                    for k in range(a.repeats):
                        r = asyncio.run(stream_level(url.replace("http", "ws", 1), speeches, n, opts, a.api_key))
                        runs.append(r)
                        runs_out.append({"mode": name, "run": k + 1, **r})
                        print(json.dumps({"mode": name, "run": k + 1, **r}), flush=True)
                    rows.append(median_row(name, n, runs))
            finally:
                if srv:
                    srv.stop()
    shutil.rmtree(work, ignore_errors=True)
    ml = load.to_dict()
    meta = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python bench/realtime.py " + " ".join(sys.argv[1:]),
        "half": a.half,
        "audio_s_per_stream": round(a.seconds, 1),
        "recordings": len(speeches),
        "utterances": len(utts),
        "file_cer_pct": file_cer,
        "machine_load": ml,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "realtime.json").write_text(json.dumps({"meta": meta, "rows": rows, "runs": runs_out}, indent=2))
    trust = load_sentence(ml)
    md = (
        f"# Real-time streams ({a.half} half, {meta['audio_s_per_stream']} s of Mandarin per stream, paced)\n\n"
        f"`{meta['command']}` — {meta['time']}; {len(speeches)} different recordings built from "
        f"{len(utts)} {a.half}-half utterances ({a.pause} s pauses); machine during the run: {trust}.\n\n"
        f"Medians of {a.repeats} runs per level (`final_p95_runs`: each run's final p95). Latencies in seconds; "
        f"`error_pct`: CER of the finals; the same recordings sent as files: **CER {file_cer} %**.\n\n"
        + md_table(rows, COLS)
        + "\n"
    )
    (out / "realtime.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
