"""Real-time WebSocket benchmark, in the style of FunASR's realtime benchmark: N
concurrent streams of Mandarin eval speech (utterances with 1 s pauses) sent at
real-time pace to /v1/stream; client-side latencies. The client is tingxie.bench's
(the same as `tingxie bench`'s real-time section).

    python bench/realtime.py --streams 1,2,4,8,16 --seconds 60
    python bench/realtime.py --url http://127.0.0.1:8000   # an already running server

first_update: first partial of a sentence received − when the sentence's first sample
(its `start`) was sent. final: final received − when the sentence's `end` sample was
sent (so it includes the endpoint silence). lag: seconds of audio sent but not yet
covered by the latest update, sampled at each update. The `serial` mode is the
reference approach: `tingxie serve --pipeline reference` (one instance, batch size 1, each sentence
decoded whole after its endpoint), partials off, 1500 ms endpoint.
Writes bench/results/realtime.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tingxie.bench.clients import stream_audio, stream_level  # noqa: E402
from tingxie.bench.corpus import SR, load_corpus  # noqa: E402
from tingxie.bench.report import md_table  # noqa: E402
from tingxie.localserver import LocalServer  # noqa: E402

COLS = [
    (c, c)
    for c in (
        "mode",
        "streams",
        "first_update_p50",
        "first_update_p95",
        "final_p50",
        "final_p95",
        "lag_p95",
        "audio_s_per_wall_s",
        "finals",
        "error_pct",
    )
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="use a running server instead of starting one")
    ap.add_argument("--api-key")
    ap.add_argument("--streams", default="1,2,4,8,16")
    ap.add_argument("--seconds", type=float, default=60.0, help="audio per stream")
    ap.add_argument("--no-reference", action="store_true", help="skip the serial mode (the reference pipeline)")
    ap.add_argument(
        "--eval-dir",
        default=str(ROOT.parent / "shared" / "eval"),
        help="eval set (else the bundled English speech when absent)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()
    ev = Path(a.eval_dir)
    corpus = load_corpus(
        None, None, Path(tempfile.mkdtemp(prefix="tx-rt-")), ev if (ev / "manifest.jsonl").is_file() else None
    )
    speech = stream_audio(corpus, a.seconds)
    levels = [int(x) for x in a.streams.split(",")]
    modes = [("streaming", [], {"language": "zh"})]
    if not a.no_reference:
        modes.append(
            ("serial", ["--pipeline", "reference"], {"language": "zh", "partials": False, "endpoint_silence_ms": 1500})
        )
    rows = []
    for name, args, opts in modes:
        srv = None if a.url else LocalServer(args).start()
        url = a.url or srv.url
        try:
            for n in levels:
                r = {
                    "mode": name,
                    **asyncio.run(stream_level(url.replace("http", "ws", 1), speech, n, opts, a.api_key)),
                }
                rows.append(r)
                print(json.dumps(r), flush=True)
        finally:
            if srv:
                srv.stop()
    md = md_table(rows, COLS)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"audio_s_per_stream": round(len(speech.pcm) / SR, 1), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "realtime.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (out / "realtime.md").write_text(
        f"# Real-time streaming ({meta['audio_s_per_stream']} s of AISHELL speech per stream, paced)\n\n" + md + "\n"
    )
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
