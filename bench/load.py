"""Load benchmark (issue 3): N concurrent clients (default 8) send a mix of short
utterances and 3-minute recordings to POST /v1/audio/transcriptions; latency p50/p95
per kind and audio seconds per wall second, on the same machine in one run, for

  tingxie  the defaults (dynamic batching across requests, instances per device);
  serial   `tingxie serve --pipeline reference`, the reference system's architecture: one request
           at a time, in arrival order, through faster-whisper's sequential
           transcribe(beam_size=5, vad_filter=True) — the "× serial" baseline;
  batch1   `--max-batch-size 1 --instances 1`: tingxie's own pipeline with batching and
           extra instances switched off (requests still share the one instance), which
           shows how much of the gain batching alone gives on this device.

Audio and client come from tingxie.bench, the server from tingxie.localserver.

    python bench/load.py [--clients 8] [--short 24] [--long 4] [--long-seconds 180]
    python bench/load.py --url http://gpu-box:8000 --api-key ...   # one running server

Writes bench/results/load.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tingxie.bench.clients import post_files  # noqa: E402
from tingxie.bench.corpus import accuracy, load_corpus, recordings, short_files  # noqa: E402
from tingxie.bench.figures import pct  # noqa: E402
from tingxie.bench.report import md_table  # noqa: E402
from tingxie.bench.run import machine  # noqa: E402
from tingxie.localserver import LocalServer  # noqa: E402

MODES = {"tingxie": [], "serial": ["--pipeline", "reference"], "batch1": ["--max-batch-size", "1", "--instances", "1"]}
COLS = [
    (c, c.replace("_", " "))
    for c in (
        "mode",
        "clients",
        "requests",
        "errors",
        "wall_seconds",
        "audio_s_per_wall_s",
        "short_p50",
        "short_p95",
        "long_p50",
        "long_p95",
    )
] + [("accuracy", "CER/WER %")]


def run_load(
    url: str, shorts: list[dict], longs: list[dict], clients: int, api_key: str | None = None, seed: int = 0
) -> dict:
    reqs = [dict(r, kind="short") for r in shorts] + [dict(r, kind="long") for r in longs]
    random.Random(seed).shuffle(reqs)
    res = asyncio.run(post_files(url, reqs, clients, api_key))
    lat = res["latency_by_id"]
    by = {k: [lat[r["id"]] for r in reqs if r["kind"] == k and r["id"] in lat] for k in ("short", "long")}
    audio = sum(r["duration"] for r in reqs)
    return {
        "clients": clients,
        "requests": len(reqs),
        "errors": len(res["errors"]),
        "wall_seconds": round(res["wall"], 2),
        "audio_seconds": round(audio, 1),
        "audio_s_per_wall_s": round(audio / res["wall"], 2),
        "short_p50": pct(by["short"], 50),
        "short_p95": pct(by["short"], 95),
        "long_p50": pct(by["long"], 50),
        "long_p95": pct(by["long"], 95),
        "accuracy_percent": accuracy(reqs, res["hyps"]),
    }


def eval_set(d: str) -> Path | None:
    """The eval set when present; else the bench uses the bundled English speech."""
    return Path(d) if (Path(d) / "manifest.jsonl").is_file() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--short", type=int, default=24, help="short-utterance requests")
    ap.add_argument("--long", type=int, default=4, help="long-recording requests")
    ap.add_argument("--long-seconds", type=float, default=180.0)
    ap.add_argument("--modes", default="tingxie,serial,batch1")
    ap.add_argument("--url")
    ap.add_argument("--api-key")
    ap.add_argument(
        "--eval-dir",
        default=str(ROOT.parent / "shared" / "eval"),
        help="eval set (else the bundled English speech when absent)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()
    if a.clients < 1 or a.short < 0 or a.long < 0 or a.short + a.long == 0:
        ap.error("--clients must be ≥ 1 and --short + --long ≥ 1")
    work = Path(tempfile.mkdtemp(prefix="tx-load-"))
    corpus = load_corpus(None, None, work, eval_set(a.eval_dir))
    base = short_files(corpus, work / "short")
    shorts = [dict(base[k % len(base)], id=f"{base[k % len(base)]['id']}#{k}") for k in range(a.short)]
    longs = recordings(corpus, a.long, a.long_seconds, work / "long")
    rows = []
    for mode in [m.strip() for m in a.modes.split(",")] if not a.url else ["server"]:
        srv = None if a.url else LocalServer(MODES[mode]).start()
        try:
            r = {"mode": mode, **run_load(a.url or srv.url, shorts, longs, a.clients, a.api_key)}
        finally:
            if srv:
                srv.stop()
        rows.append(r)
        print(json.dumps(r, ensure_ascii=False), flush=True)
    base_row = next((r for r in rows if r["mode"] == "serial"), None)
    for r in rows:
        if base_row and r is not base_row:
            r["throughput_vs_serial"] = round(r["audio_s_per_wall_s"] / base_row["audio_s_per_wall_s"], 2)
    meta = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(
            argparse.Namespace(url=a.url, device=None, compute_type=None, threads_per_instance=None, batch_size=None)
        ),
        "audio": corpus.source,
        "short_requests": a.short,
        "long_requests": a.long,
        "long_seconds": a.long_seconds,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, ensure_ascii=False))
    md = md_table(rows, COLS + [("throughput_vs_serial", "× serial")])
    (out / "load.md").write_text(
        f"# Load: {a.clients} concurrent clients, {a.short} short + {a.long} × {a.long_seconds:g} s requests ({meta['time']})\n\n"
        f"{meta['machine'].get('cores')} cores, device {meta['machine'].get('device')}; audio: {corpus.source}. Latencies in seconds.\n\n{md}\n"
    )
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
