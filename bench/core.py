"""Core pipeline benchmark: tingxie vs the serial baseline vs per-file batching, one run.

    python bench/core.py [--shared ../shared] [--long 10] [--repeats 3] [--halves calibration,validation]
    python bench/core.py --limit 2 --long 1 --long-seconds 30 --repeats 1   # a small end-to-end check

The real speech is split into a calibration half and a validation half by source and so by
speaker (tingxie/bench/split.py: ../shared/eval's calibration sources; the rest of eval and
all of ../shared/eval-extra are validation). Every tuned constant is chosen on calibration;
the throughput target (≥ 2.8× serial and ≥ 1.15× the batched peer at CER ≤ serial's) is
judged on the validation half, which stands in for speech nobody here tuned on.
Sets, per half: (a) its utterances as they are; (b) N three-minute Mandarin recordings built
by concatenating that half's utterances with 0.5–3 s pauses (written to a temp dir, never to
the repo). Each method runs --repeats times, interleaved (serial, batched, tingxie, serial,
…); figures are medians with every run's wall time shown.
Methods, each in its own process so peak RSS is its own:
  serial   faster-whisper WhisperModel.transcribe(beam_size=5, vad_filter=True), one file
           at a time — the reference system's architecture
  batched  faster-whisper BatchedInferencePipeline(batch_size=8), one file at a time
  tingxie  `tingxie transcribe` on all files at once (cross-file batching)
The faster-whisper methods run as faster-whisper ships: without the memory and thread
settings that importing tingxie applies (TINGXIE_SYSTEM_MALLOC=1 in their process).
Prints RTF, audio seconds per wall second, peak RSS, CER/WER and ratios; writes JSON and
Markdown to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tingxie import audio as audio_mod  # noqa: E402
from tingxie.bench.monitor import MachineLoad  # noqa: E402
from tingxie.bench.score import error_rate  # noqa: E402
from tingxie.bench.split import half_of, shared_sets  # noqa: E402


def write_wav(path: Path, x: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())


def load_manifest(eval_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (eval_dir / "manifest.jsonl").read_text().splitlines() if line.strip()]


def halves(shared: Path) -> dict[str, list[dict]]:
    """Every manifest row of ../shared's real-speech sets, by half; each row gains
    `path` (its audio) and `set`."""
    out: dict[str, list[dict]] = {"calibration": [], "validation": []}
    for name, d in shared_sets(shared):
        for r in load_manifest(d):
            out[half_of(r, name)].append(dict(r, path=str(d / r["audio"]), set=name))
    return out


def build_long(items: list[dict], n: int, seconds: float, out: Path, tag: str, seed: int = 0) -> list[dict]:
    """N recordings of `seconds` each from the Mandarin utterances in `items` (one half)
    with 0.5–3 s pauses (the same builder `tingxie bench` uses)."""
    from tingxie.bench.corpus import Utterance, concat_speech

    utts = [Utterance(m["id"], audio_mod.decode(m["path"]), "zh", m["text"]) for m in items if m["lang"] == "zh"]
    if not utts:
        return []
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        x, text, _ = concat_speech(utts, seconds, rng)
        path = out / f"long_{tag}_{k:02d}.wav"
        write_wav(path, x)
        rows.append({"id": path.stem, "path": str(path), "lang": "zh", "text": text, "duration": len(x) / 16000})
    return rows


# -- methods (run in a child process) -------------------------------------------------
def run_method(method: str, rows: list[dict], model_dir: str, out_dir: Path) -> dict:
    hyps: dict[str, str] = {}
    stages: dict[str, float] = {}  # tingxie only: model time per stage, summed over files
    windows: dict[str, int] = {}  # tingxie only: windows, and decodes (fallbacks, continuations, retries included)
    t0 = time.perf_counter()
    if method in ("serial", "batched"):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
        pipe = BatchedInferencePipeline(model) if method == "batched" else None
        t0 = time.perf_counter()
        for r in rows:
            lang = r.get("lang_hint")
            if pipe:
                segs, _ = pipe.transcribe(r["path"], batch_size=8, language=lang)
            else:
                segs, _ = model.transcribe(r["path"], beam_size=5, vad_filter=True, language=lang)
            hyps[r["id"]] = "".join(s.text for s in segs)
    else:
        cmd = [
            sys.executable,
            "-m",
            "tingxie",
            "transcribe",
            "--quiet",
            "--format",
            "json",
            "-o",
            str(out_dir),
            *[r["path"] for r in rows],
        ]
        subprocess.run(cmd, check=True)
        for r in rows:
            d = json.loads((out_dir / (Path(r["path"]).stem + ".json")).read_text())
            sep = "" if r["lang"] == "zh" else " "
            hyps[r["id"]] = sep.join(s["raw_text"] for s in d["segments"])
            for k, v in d["options"].get("stage_seconds", {}).items():
                stages[k] = stages.get(k, 0.0) + v
            for k, v in d["options"].get("windows", {}).items():
                windows[k] = windows.get(k, 0) + v
    return {"wall": time.perf_counter() - t0, "hyps": hyps, "stage_seconds": stages, "windows": windows}


def child(args: argparse.Namespace) -> None:
    rows = json.loads(Path(args.rows).read_text())
    res = run_method(args.child, rows, args.model_dir, Path(args.out_dir))
    Path(args.result).write_text(json.dumps(res, ensure_ascii=False))


LOAD = MachineLoad()


def measure(method: str, rows: list[dict], model_dir: str, work: Path) -> dict:
    """Run one method in a child process; return wall time, hyps and the child's peak RSS."""
    tag = f"{method}-{int(time.time() * 1000)}"
    rows_f, res_f, out_d = work / f"{tag}.rows.json", work / f"{tag}.res.json", work / f"{tag}.out"
    out_d.mkdir()
    rows_f.write_text(json.dumps(rows, ensure_ascii=False))
    env = dict(os.environ)
    if method != "tingxie":  # the baselines as faster-whisper ships (see the module docstring)
        env["TINGXIE_SYSTEM_MALLOC"] = "1"
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            method,
            "--rows",
            str(rows_f),
            "--result",
            str(res_f),
            "--model-dir",
            model_dir,
            "--out-dir",
            str(out_d),
        ],
        env=env,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{method} failed with status {status}")
    res = json.loads(res_f.read_text())
    LOAD.add_ended(usage.ru_utime + usage.ru_stime)
    res["peak_rss_mb"] = usage.ru_maxrss / 1024  # includes the tingxie CLI grandchild via ru_maxrss of children
    return res


def score(rows: list[dict], hyps: dict[str, str]) -> dict:
    out = {}
    for lang in ("zh", "en"):
        sel = [r for r in rows if r["lang"] == lang]
        if sel:
            out[lang] = round(100 * error_rate([r["text"] for r in sel], [hyps.get(r["id"], "") for r in sel], lang), 2)
    return out


def summarize(runs: list[dict], rows: list[dict], audio_s: float) -> dict:
    """The median run of one method (its transcripts are scored) and every wall time."""
    walls = sorted(r["wall"] for r in runs)
    res = sorted(runs, key=lambda r: r["wall"])[(len(runs) - 1) // 2]
    wall = float(np.median(walls))
    m = {
        "wall_s": round(wall, 2),
        "wall_s_all": [round(w, 2) for w in walls],
        "rtf": round(wall / audio_s, 4),
        "audio_s_per_s": round(audio_s / wall, 2),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 0),
        "error_pct": score(rows, res["hyps"]),
    }
    if res.get("windows"):
        w = res["windows"]
        m["redecoded_share"] = round(w.get("decoded", 0) / max(1, w.get("count", 0)) - 1, 3)
        m["stage_seconds"] = {k: round(v, 1) for k, v in sorted(res["stage_seconds"].items())}
    return m


TARGET_SERIAL, TARGET_PEER = 2.8, 1.15


def verdict(rs: dict) -> str | None:
    """The target on one set: ≥ 2.8× serial and ≥ 1.15× the peer, at CER ≤ serial's."""
    t, s = rs["methods"].get("tingxie"), rs["methods"].get("serial")
    if not t or not s:
        return None
    cer_t, cer_s = t["error_pct"].get("zh"), s["error_pct"].get("zh")
    ok = t["speedup_vs_serial"] >= TARGET_SERIAL and (cer_t is None or cer_s is None or cer_t <= cer_s)
    if "speedup_vs_peer" in t:
        ok = ok and t["speedup_vs_peer"] >= TARGET_PEER
    return (
        f"{'MET' if ok else 'NOT MET'}: {t['speedup_vs_serial']}× serial (target ≥ {TARGET_SERIAL})"
        + (f", {t['speedup_vs_peer']}× the peer (target ≥ {TARGET_PEER})" if "speedup_vs_peer" in t else "")
        + f", zh CER {cer_t} % vs serial {cer_s} %"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="folder holding eval/ and eval-extra/")
    ap.add_argument("--long", type=int, default=10, help="three-minute recordings per half")
    ap.add_argument("--long-seconds", type=float, default=180.0)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each method per set; medians reported")
    ap.add_argument("--limit", type=int, default=0, help="at most this many utterances per half's utterance set")
    ap.add_argument("--halves", default="calibration,validation")
    ap.add_argument("--methods", default="serial,batched,tingxie")
    ap.add_argument("--sets", default="utterances,long")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--child")
    ap.add_argument("--rows")
    ap.add_argument("--result")
    ap.add_argument("--model-dir")
    ap.add_argument("--out-dir")
    args = ap.parse_args()
    if args.child:
        return child(args)

    from tingxie import models as models_mod
    from tingxie.settings import Settings

    shared = Path(args.shared)
    if not shared_sets(shared):
        raise SystemExit(f"no eval set (eval/manifest.jsonl) under {shared}")
    if args.repeats < 1:
        raise SystemExit("--repeats must be ≥ 1")
    model_dir = str(models_mod.assemble_bundled(Settings().models_dir))
    by_half = halves(shared)
    work = Path(tempfile.mkdtemp(prefix="tingxie-bench-"))
    sets: dict[str, list[dict]] = {}
    for half in args.halves.split(","):
        items = by_half[half]
        if "utterances" in args.sets:
            sel = items[: args.limit] if args.limit else items
            sets[f"{half}/utterances"] = [
                {
                    "id": m["id"],
                    "path": m["path"],
                    "lang": m["lang"],
                    "text": m["text"],
                    "duration": m.get("duration_s") or audio_mod.probe(m["path"]).duration,
                }
                for m in sel
            ]
        if "long" in args.sets:
            sets[f"{half}/long"] = build_long(items, args.long, args.long_seconds, work, half)

    report: dict = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "repeats": args.repeats,
        "halves": {
            h: sorted({r["set"] + ":" + r.get("source", "").split(":")[0] for r in by_half[h]}) for h in by_half
        },
        "sets": {},
    }
    methods = args.methods.split(",")
    LOAD.__enter__()
    for name, rows in sets.items():
        if not rows:
            continue
        audio_s = sum(r["duration"] for r in rows)
        print(f"\n== set {name}: {len(rows)} files, {audio_s / 60:.1f} min audio, {args.repeats} runs each", flush=True)
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for _ in range(args.repeats):
            for method in methods:
                runs[method].append(measure(method, rows, model_dir, work))
        res_set = {"files": len(rows), "audio_seconds": round(audio_s, 1), "methods": {}}
        for method in methods:
            m = summarize(runs[method], rows, audio_s)
            res_set["methods"][method] = m
            print(
                f"  {method:<8} wall {m['wall_s']:7.1f} s (runs {m['wall_s_all']})  RTF {m['rtf']:.4f}  RSS {m['peak_rss_mb']:.0f} MB  err% {m['error_pct']}",
                flush=True,
            )
            if "stage_seconds" in m:
                print(f"           decoded again {m['redecoded_share']:.1%}; stage s {m['stage_seconds']}", flush=True)
        for base_name, key in (("serial", "speedup_vs_serial"), ("batched", "speedup_vs_peer")):
            base = res_set["methods"].get(base_name)
            if base:
                for m in res_set["methods"].values():
                    m[key] = round(base["wall_s"] / m["wall_s"], 2)
                print(
                    f"  speed-up vs {base_name}: " + ", ".join(f"{k} {m[key]}x" for k, m in res_set["methods"].items())
                )
        res_set["target"] = verdict(res_set)
        if res_set["target"]:
            print(f"  target: {res_set['target']}")
        report["sets"][name] = res_set
    LOAD.__exit__(None, None, None)
    report["machine_load"] = ml = LOAD.to_dict()
    load_line = (
        f"Machine load during the run: other processes used {ml.get('others_cpu_cores')} of {ml['cpus']} CPUs, "
        f"steal {ml.get('steal_percent')} % — "
        + ("figures trustworthy." if ml["trustworthy"] else f"FIGURES NOT TRUSTWORTHY ({ml['why_not']}).")
    )
    print(load_line)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / "core.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    lines = [
        f"# Core pipeline benchmark ({stamp})",
        "",
        f"Machine: {report['machine']['cores']} cores, whisper-base int8, CPU. Median of {args.repeats} run(s) per method "
        "(interleaved); every run's wall time in brackets.",
        "",
        load_line,
        "",
        "Halves (tingxie/bench/split.py; constants are tuned on calibration, the target is judged on validation):",
        "",
        *(f"- {h}: {', '.join(srcs)}" for h, srcs in report["halves"].items()),
        "",
    ]
    for name, rs in report["sets"].items():
        lines += [
            f"## Set `{name}`: {rs['files']} files, {rs['audio_seconds'] / 60:.1f} min of audio",
            "",
            "| method | wall s (median) | runs | RTF | audio s / s | × serial | × peer | peak RSS MB | zh CER % | en WER % |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for k, m in rs["methods"].items():
            lines.append(
                f"| {k} | {m['wall_s']} | {', '.join(map(str, m['wall_s_all']))} | {m['rtf']} | {m['audio_s_per_s']} | {m.get('speedup_vs_serial', '')} | {m.get('speedup_vs_peer', '')} | {m['peak_rss_mb']:.0f} | {m['error_pct'].get('zh', '')} | {m['error_pct'].get('en', '')} |"
            )
        if rs.get("target"):
            lines += [
                "",
                f"Target (≥ {TARGET_SERIAL}× serial, ≥ {TARGET_PEER}× peer, CER ≤ serial's): **{rs['target']}**",
            ]
        t = rs["methods"].get("tingxie", {})
        if "stage_seconds" in t:
            lines += [
                "",
                f"tingxie: windows decoded again (fallback, continuation of what Whisper left out, retry of lost speech): {t['redecoded_share']:.1%} of the windows; "
                "model seconds per stage (summed over files, threads overlap): "
                + ", ".join(f"{k} {v}" for k, v in t["stage_seconds"].items()),
            ]
        lines.append("")
    (out / "core.md").write_text("\n".join(lines))
    print(f"\nwrote {out / 'core.json'} and {out / 'core.md'}")


if __name__ == "__main__":
    main()
