"""Load clients over the API: concurrent POSTs of files, and paced WebSocket streams.
`tingxie bench`, bench/load.py and bench/realtime.py all measure through these."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..text import is_cjk
from .corpus import SR, Corpus, concat_speech
from .figures import MEAN, pct

# Streams start this far apart, so that sentences do not end together across streams,
# all within the first few seconds: a level of N streams must hold N streams at once.
# (Starts 0.37 s apart whatever N put 32 streams' starts over 11.5 s of a 16 s stream:
# that level carried 19 streams on average, and its count claimed 32.)
STREAM_STAGGER_S = 0.37
STREAM_STARTS_WITHIN_S = 4.0


def stream_start(i: int, streams: int) -> float:
    """When stream i of `streams` starts, in seconds after the first."""
    return i * min(STREAM_STAGGER_S, STREAM_STARTS_WITHIN_S / streams)


@dataclass
class StreamAudio:
    pcm: np.ndarray  # PCM16
    reference: str  # what is said ("" when the corpus has no transcripts)
    language: str


def _headers(api_key: str | None) -> dict:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def post_files(
    url: str,
    rows: list[dict],
    concurrency: int,
    api_key: str | None = None,
    language: str | None = None,
    timeout: float = 3600,
) -> dict:
    """POST every row to /v1/audio/transcriptions with `concurrency` clients; latencies,
    transcripts and wall time."""
    import httpx

    queue = list(enumerate(rows))
    lat: list[float] = []
    per_id: dict[str, float] = {}
    hyps: dict[str, str] = {}
    errors: list[str] = []
    data = {"response_format": "verbose_json"}
    if language:
        data["language"] = language

    async def client(c: httpx.AsyncClient) -> None:
        while queue:
            i, r = queue.pop(0)
            body = Path(r["path"]).read_bytes()
            t0 = time.perf_counter()
            resp = await c.post(
                url + "/v1/audio/transcriptions", files={"file": (Path(r["path"]).name, body)}, data=data
            )
            lat.append(time.perf_counter() - t0)
            per_id[r["id"]] = lat[-1]
            if resp.status_code != 200:
                errors.append(f"{resp.status_code}: {resp.text[:200]}")
                continue
            hyps[r["id"]] = resp.json().get("text", "")

    async with httpx.AsyncClient(timeout=timeout, headers=_headers(api_key)) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*[client(c) for _ in range(max(1, concurrency))])
        wall = time.perf_counter() - t0
    return {"latencies": lat, "latency_by_id": per_id, "hyps": hyps, "errors": errors, "wall": wall}


def request_level(
    url: str,
    rows: list[dict],
    concurrency: int,
    n_requests: int,
    api_key: str | None = None,
    language: str | None = None,
) -> dict:
    """`n_requests` short files (cycled) at `concurrency`: requests/s, latency mean/p50/p95."""
    reqs = [dict(rows[k % len(rows)], id=f"{rows[k % len(rows)]['id']}#{k}") for k in range(n_requests)]
    r = asyncio.run(post_files(url, reqs, concurrency, api_key, language))
    audio = sum(x["duration"] for x in reqs)
    return {
        "concurrency": concurrency,
        "requests": n_requests,
        "ok": n_requests - len(r["errors"]),
        "errors": r["errors"][:3],
        "wall_seconds": round(r["wall"], 4),
        "requests_per_s": round(len(r["latencies"]) / r["wall"], 3),
        "latency_mean": MEAN.of(r["latencies"]),
        "latency_p50": pct(r["latencies"], 50),
        "latency_p95": pct(r["latencies"], 95),
        "audio_s_per_wall_s": round(audio / r["wall"], 2),
        "latencies": sorted(round(x, 3) for x in r["latencies"]),  # for the count's interval
    }


async def one_stream(
    ws_url: str, pcm: np.ndarray, options: dict, offset_s: float, chunk_ms: int = 100, api_key: str | None = None
) -> dict:
    """One paced stream to /v1/stream. first: first partial of a sentence − when its
    first sample was sent; final: final received − when its `end` sample was sent (so
    it includes the endpoint silence); lag: audio sent but not covered by the final."""
    import websockets

    await asyncio.sleep(offset_s)  # stagger starts so sentences do not align across streams
    sent_at: list[float] = []
    n = SR * chunk_ms // 1000
    first, final, lag = [], [], []
    texts: list[str] = []
    seen: set[int] = set()
    q = f"?api_key={api_key}" if api_key else ""
    async with websockets.connect(ws_url + "/v1/stream" + q, max_size=None) as ws:
        await ws.send(json.dumps(options))
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            raise RuntimeError(f"stream refused: {ready}")
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
                    texts.append(d["text"])
                    lag.append(max(0.0, sent_s - d["end"]))

        task = asyncio.create_task(reader())
        for i in range(0, len(pcm), n):
            sent_at.append(time.monotonic())
            await ws.send(pcm[i : i + n].tobytes())
            await asyncio.sleep(max(0.0, t0 + (i + n) / SR - time.monotonic()))
        await ws.send(json.dumps({"type": "stop"}))
        await task
    return {"first": first, "final": final, "lag": lag, "audio_s": len(pcm) / SR, "texts": texts}


async def stream_level(
    ws_url: str,
    speech: StreamAudio | list[StreamAudio],
    streams: int,
    options: dict,
    api_key: str | None = None,
) -> dict:
    """N concurrent paced streams: latencies, and the error rate of the finals against
    the reference (accuracy beside every speed figure). Given a list, stream i sends
    speech[i % len]: different recordings, so sentences do not end together."""
    speeches = speech if isinstance(speech, list) else [speech]
    mine = [speeches[i % len(speeches)] for i in range(streams)]
    t0 = time.monotonic()
    done = await asyncio.gather(
        *[one_stream(ws_url, mine[i].pcm, options, stream_start(i, streams), api_key=api_key) for i in range(streams)],
        return_exceptions=True,
    )
    wall = time.monotonic() - t0
    # a stream the server refused (at its admission limit) or dropped fails the level
    refused = [f"{type(x).__name__}: {x}"[:200] for x in done if isinstance(x, BaseException)]
    res = [x for x in done if not isinstance(x, BaseException)]
    mine = [m for m, x in zip(mine, done, strict=True) if not isinstance(x, BaseException)]
    first = [x for r in res for x in r["first"]]
    final = [x for r in res for x in r["final"]]
    lag = [x for r in res for x in r["lag"]]
    return {
        "streams": streams,
        "first_update_p50": pct(first, 50),
        "first_update_p95": pct(first, 95),
        "final_p50": pct(final, 50),
        "final_p95": pct(final, 95),
        "final_latencies": sorted(round(x, 3) for x in final),  # for the count's interval
        "lag_p95": pct(lag, 95),
        "audio_s_per_wall_s": round(sum(r["audio_s"] for r in res) / wall, 2),
        "finals": len(final),
        "refused": len(refused),
        "errors": refused[:3],
        "error_pct": _finals_error(mine, res) if res else None,
    }


def _finals_error(speeches: list[StreamAudio], res: list[dict]) -> float | None:
    """Corpus CER/WER (%) of every stream's finals joined, None without references."""
    if not all(s.reference for s in speeches):
        return None
    from .score import error_rate

    lang = speeches[0].language
    sep = "" if is_cjk(lang) else " "
    hyps = [sep.join(r["texts"]) for r in res]
    return round(100 * error_rate([s.reference for s in speeches], hyps, lang), 2)


def stream_audio(corpus: Corpus, seconds: float, seed: int = 0) -> StreamAudio:
    """Utterances with 1 s pauses (sentences the endpointer can close), each used once
    before any is used again: the quick run's 10 s stream drawn with replacement was one
    clip twice (cards whose numbers Whisper writes as digits, 44 % WER against the
    spelled-out reference, while the files of the same speech read 17 %)."""
    x, ref, lang = concat_speech(corpus.utterances, seconds, random.Random(seed), pause=(1.0, 1.0), once=True)
    return StreamAudio((np.clip(x, -1, 1) * 32767).astype("<i2"), ref, lang)
