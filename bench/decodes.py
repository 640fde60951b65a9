"""Where tingxie's model time goes on one half's long recordings: decodes by kind, batches by size.

    python bench/decodes.py [--half calibration] [--long 6] [--runs 3] [--batch-size 4]

The same three-minute Mandarin recordings `bench/core.py` builds for the half (same seed),
transcribed in this process by `transcribe_many` (as the CLI does) with every engine call
watched. Each decoded window is counted as one kind:
  first         a window's first decode
  continuation  what Whisper left out at the end of a window, decoded again
  retry         VAD speech no segment covered, decoded again (transcribe.recover)
  fallback      a temperature > 0 decode of a window that failed Whisper's quality rule
with its audio, input frames, tokens and model seconds per stage (a batch's time shared
evenly among its windows). Also: batches by size and the input lengths of lone windows
(a window shares a batch only with windows of its input length, engine.batch_key), and
the windows whose first decode fell back, with their quality figures — a repetition loop
runs to the window's token budget and then samples at up to five temperatures, and which
temperature passes is random, so such windows move the wall time from run to run.
Writes bench/results/decodes-<half>.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import core  # noqa: E402
from accuracy import _patched  # noqa: E402

from tingxie.bench.monitor import MachineLoad  # noqa: E402
from tingxie.bench.score import error_rate  # noqa: E402

KINDS = ("first", "continuation", "retry", "fallback")


def watch(sched) -> tuple[dict, list, list, Callable]:
    """Wrap the engine's decode (this run's engine only); returns (per-kind counters,
    batches, first decodes that fell back), filled as the run goes, and the retry packer
    to put in place of `windows.pack` while the run lasts."""
    from tingxie import transcribe, windows
    from tingxie.engines.whisper.result import hints

    engine = sched.engine.engine
    retry_windows: set[int] = set()
    pack = windows.pack

    def packing(*a, **k):
        out = pack(*a, **k)
        if k.get("limit_s") == transcribe.RETRY_MAX_S:  # recover() cuts its retries this way
            retry_windows.update(id(w) for w in out)
        return out

    kinds: dict[str, collections.Counter] = {k: collections.Counter() for k in KINDS}
    batches: list[dict] = []
    fell_back: list[dict] = []
    lock = threading.Lock()
    decode = engine.decode

    def watched(windows):
        results = decode(windows)
        with lock:
            batches.append({"size": len(windows), "frames": engine.input_frames(windows[0])})
            for w, r in zip(windows, results, strict=True):
                if w.options.temperature > 0:
                    kind = "fallback"
                elif hints(w).continuation:
                    kind = "continuation"
                elif id(w) in retry_windows:
                    kind = "retry"
                else:
                    kind = "first"
                c = kinds[kind]
                c["windows"] += 1
                c["audio_s"] += w.seconds
                c["frames"] += engine.input_frames(w)
                c["tokens"] += r.tokens
                for stage, s in r.timings.items():
                    c[f"{stage}_s"] += s
                if kind == "first" and getattr(r, "needs_fallback", False):
                    fell_back.append(
                        {
                            "seconds": round(w.seconds, 1),
                            "tokens": r.tokens,
                            "avg_logprob": round(r.avg_logprob, 3),
                            "compression_ratio": round(r.compression_ratio, 2),
                        }
                    )
        return results

    engine.decode = watched
    return kinds, batches, fell_back, packing


def one_run(rows: list[dict], batch_size: int) -> dict:
    from tingxie import windows
    from tingxie.manager import ModelManager
    from tingxie.settings import Settings
    from tingxie.transcribe import transcribe_many
    from tingxie.types import DecodeOptions, TextOptions, VadOptions

    manager = ModelManager(Settings(batch_size=batch_size), warm_up=False)
    try:
        sched = manager.scheduler()
        kinds, batches, fell_back, packing = watch(sched)
        t0 = time.perf_counter()
        texts = {}
        with _patched(windows, pack=packing):
            for o in transcribe_many(
                [r["path"] for r in rows], sched, DecodeOptions(language="zh"), VadOptions(), TextOptions(itn=False)
            ):
                if o.error or o.transcript is None:
                    raise SystemExit(f"{rows[o.index]['id']}: {o.error}")
                texts[rows[o.index]["id"]] = "".join(s.raw_text for s in o.transcript.segments)
        wall = time.perf_counter() - t0
    finally:
        manager.close()
    cer = error_rate([r["text"] for r in rows], [texts[r["id"]] for r in rows], "zh")
    return {
        "wall_s": round(wall, 1),
        "cer_pct": round(100 * cer, 2),
        "kinds": {k: {x: round(v, 2) for x, v in c.items()} for k, c in kinds.items() if c},
        "batch_sizes": dict(sorted(collections.Counter(b["size"] for b in batches).items())),
        "lone_window_frames": dict(sorted(collections.Counter(b["frames"] for b in batches if b["size"] == 1).items())),
        "first_decodes_that_fell_back": fell_back,
    }


def markdown(half: str, runs: list[dict], audio_s: float, load: str, batch_size: int) -> str:
    lines = [
        f"# Decodes by kind, {half} half ({time.strftime('%Y%m%d-%H%M%S')})",
        "",
        f"`python bench/decodes.py --half {half} --runs {len(runs)} --batch-size {batch_size}` — "
        f"{audio_s / 60:.1f} min of three-minute Mandarin recordings built as bench/core.py builds them; "
        "whisper-base int8, CPU, in-process `transcribe_many`. Model seconds are summed over the two "
        "instances (a batch's time shared among its windows).",
        "",
        f"Machine load: {load}",
        "",
        "| run | wall s | CER % | batch sizes (size: batches) | lone windows' input frames | first decodes that fell back (s, tokens, logprob, compression) |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        fb = "; ".join(
            f"{x['seconds']} s, {x['tokens']}, {x['avg_logprob']}, {x['compression_ratio']}"
            for x in r["first_decodes_that_fell_back"]
        )
        lines.append(
            f"| {i} | {r['wall_s']} | {r['cer_pct']} | {r['batch_sizes']} | {r['lone_window_frames']} | {fb or '–'} |"
        )
    lines += [
        "",
        "| run | kind | windows | audio s | tokens | encoder s | decoder s | post s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        for kind, c in r["kinds"].items():
            lines.append(
                f"| {i} | {kind} | {c.get('windows', 0):.0f} | {c.get('audio_s', 0):.0f} | {c.get('tokens', 0):.0f} "
                f"| {c.get('encoder_s', 0):.1f} | {c.get('decoder_s', 0):.1f} | {c.get('post_s', 0):.1f} |"
            )
    return "\n".join(lines) + "\n"


def _load_line(d: dict) -> str:
    verdict = "figures trustworthy" if d.get("trustworthy") else f"not trustworthy: {d.get('why_not')}"
    return f"other processes used {d.get('others_cpu_cores')} CPUs, steal {d.get('steal_percent')} % — {verdict}."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--half", default="calibration", choices=("calibration", "validation"))
    ap.add_argument("--long", type=int, default=6, help="three-minute recordings")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    shared = Path(args.shared)
    if not core.shared_sets(shared):
        raise SystemExit(f"no eval set (eval/manifest.jsonl) under {shared}")
    rows = core.build_long(core.halves(shared)[args.half], args.long, 180.0, Path(tempfile.mkdtemp()), args.half)
    audio_s = sum(r["duration"] for r in rows)
    runs = []
    with MachineLoad() as load:
        for i in range(args.runs):
            runs.append(one_run(rows, args.batch_size))
            r = runs[-1]
            print(f"run {i + 1}: wall {r['wall_s']} s, CER {r['cer_pct']} %, batches {r['batch_sizes']}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"decodes-{args.half}"
    stem.with_suffix(".json").write_text(json.dumps({"half": args.half, "runs": runs}, indent=1))
    stem.with_suffix(".md").write_text(markdown(args.half, runs, audio_s, _load_line(load.to_dict()), args.batch_size))
    print(f"wrote {stem}.md")


if __name__ == "__main__":
    main()
