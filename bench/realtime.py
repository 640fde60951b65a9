"""Real-time WebSocket benchmark, in the style of FunASR's realtime benchmark: N
concurrent streams of Mandarin eval speech (utterances with 1 s pauses) sent at
real-time pace to /v1/stream; client-side latencies.

    python bench/realtime.py --streams 1,2,4,8,16 --seconds 60
    python bench/realtime.py --url http://127.0.0.1:8000   # an already running server

first_update: first partial of a sentence received − when the sentence's first sample
(its `start`) was sent. final: final received − when the sentence's `end` sample was
sent (so it includes the endpoint silence). lag: seconds of audio sent but not yet
covered by the latest update, sampled at each update. The `serial` mode is the
reference approach: partials off, 1500 ms endpoint, one instance, batch size 1.
Writes bench/results/realtime.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
SR = 16000


def eval_audio(seconds: float) -> np.ndarray:
    d = ROOT.parent / "shared" / "eval"
    rows = [json.loads(x) for x in (d / "manifest.jsonl").read_text().splitlines() if x.strip()]
    parts, total = [np.zeros(SR // 2, "<i2")], 0.5
    for r in (r for r in rows if r["lang"] == "zh"):
        with wave.open(str(d / r["audio"])) as w:
            parts += [np.frombuffer(w.readframes(w.getnframes()), "<i2"), np.zeros(SR, "<i2")]
        total += w.getnframes() / SR + 1
        if total >= seconds:
            break
    return np.concatenate(parts)


async def one_stream(url: str, pcm: np.ndarray, options: dict, offset_s: float, chunk_ms: int = 100) -> dict:
    await asyncio.sleep(offset_s)  # stagger starts so sentences do not align across streams
    sent_at: list[float] = []  # wall time each chunk was sent
    n = SR * chunk_ms // 1000
    first, final, lag = [], [], []
    seen: set[int] = set()
    async with websockets.connect(url + "/v1/stream", max_size=None) as ws:
        await ws.send(json.dumps(options))
        json.loads(await ws.recv())
        t0 = time.monotonic()

        def when(sec: float) -> float:
            i = min(int(sec * SR) // n, len(sent_at) - 1)
            return sent_at[max(i, 0)]

        async def reader() -> None:
            async for m in ws:
                d, now = json.loads(m), time.monotonic()
                sent_s = len(sent_at) * n / SR
                if d["type"] == "partial" and d["segment_id"] not in seen:
                    seen.add(d["segment_id"])
                    first.append(now - when(d["start"]))
                elif d["type"] == "final":
                    final.append(now - when(d["end"]))
                    lag.append(max(0.0, sent_s - d["end"]))

        task = asyncio.create_task(reader())
        for i in range(0, len(pcm), n):
            sent_at.append(time.monotonic())
            await ws.send(pcm[i : i + n].tobytes())
            await asyncio.sleep(max(0.0, t0 + (i + n) / SR - time.monotonic()))
        await ws.send(json.dumps({"type": "stop"}))
        await task
    return {"first": first, "final": final, "lag": lag, "audio_s": len(pcm) / SR}


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


async def run_level(url: str, pcm: np.ndarray, streams: int, options: dict) -> dict:
    t0 = time.monotonic()
    res = await asyncio.gather(*[one_stream(url, pcm, options, 0.37 * i) for i in range(streams)])
    wall = time.monotonic() - t0
    first = [x for r in res for x in r["first"]]
    final = [x for r in res for x in r["final"]]
    lag = [x for r in res for x in r["lag"]]
    return {
        "streams": streams,
        "first_update_p50": pct(first, 50), "first_update_p95": pct(first, 95),
        "final_p50": pct(final, 50), "final_p95": pct(final, 95),
        "lag_p95": pct(lag, 95),
        "audio_s_per_wall_s": round(sum(r["audio_s"] for r in res) / wall, 2),
        "finals": len(final),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="use a running server instead of starting one")
    ap.add_argument("--streams", default="1,2,4,8,16")
    ap.add_argument("--seconds", type=float, default=60.0, help="audio per stream")
    ap.add_argument("--no-serial", action="store_true", help="skip the reference (serial) mode")
    a = ap.parse_args()
    from server_fixture import Server

    pcm = eval_audio(a.seconds)
    levels = [int(x) for x in a.streams.split(",")]
    modes = [("streaming", [], {"language": "zh"})]
    if not a.no_serial:
        modes.append(("serial", ["--instances", "1", "--batch-size", "1"],
                      {"language": "zh", "partials": False, "endpoint_silence_ms": 1500}))
    rows = []
    for name, args, opts in modes:
        srv = None
        if a.url:
            url = a.url
        else:
            srv = Server(Path(tempfile.mkdtemp(prefix="tx-bench-")), args=args).start()
            url = srv.url
        try:
            for n in levels:
                r = asyncio.run(run_level(url.replace("http", "ws"), pcm, n, opts))
                r["mode"] = name
                rows.append(r)
                print(json.dumps(r), flush=True)
        finally:
            if srv:
                srv.stop()
    cols = ["mode", "streams", "first_update_p50", "first_update_p95", "final_p50", "final_p95", "lag_p95", "audio_s_per_wall_s", "finals"]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join("-" if r[c] is None else str(r[c]) for c in cols) + " |" for r in rows]
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"audio_s_per_stream": round(len(pcm) / SR, 1), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "realtime.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (out / "realtime.md").write_text(f"# Real-time streaming ({meta['audio_s_per_stream']} s of AISHELL speech per stream, paced)\n\n" + "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
