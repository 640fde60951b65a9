"""What one live-stream client may hold: a stream slot only once it has sent a valid
first message, a bounded backlog of audio waiting for the decoder however fast it sends,
and nothing at all once it has left (its slot and its queued windows go at once).

Real servers, real sockets, real Mandarin speech sent faster than real time."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from server_fixture import Server

from tingxie import audio as audio_mod

SR = 16000


@pytest.fixture(scope="module")
def speech_pcm(corpus_dir: Path) -> np.ndarray:
    """~90 s of real Mandarin speech as PCM16 (clips with 1 s pauses)."""
    rows = [json.loads(x) for x in (corpus_dir / "manifest.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["lang"] == "zh" and r["duration_s"] < 30]
    parts, total = [], 0.0
    while total < 90:
        for r in rows:
            parts += [audio_mod.decode(corpus_dir / r["audio"]), np.zeros(SR, np.float32)]
            total += r["duration_s"] + 1
            if total >= 90:
                break
    x = np.concatenate(parts)
    return (np.clip(x, -1, 1) * 32767).astype("<i2")


def ws_url(srv: Server) -> str:
    return srv.url.replace("http", "ws") + "/v1/stream"


async def _session(url: str, pcm: np.ndarray, chunk_s: float = 0.1) -> dict:
    """One client: options, the audio as fast as the socket takes it, stop; the end
    message. No keepalive pings: a client that sends faster than the decoder is slowed by
    TCP backpressure, and its pings would wait behind its own audio (docs/streaming.md)."""
    async with websockets.connect(url, ping_interval=None) as ws:
        await ws.send(json.dumps({"language": "zh"}))
        assert json.loads(await ws.recv())["type"] == "ready"
        msgs: list[dict] = []

        async def reader() -> None:
            async for m in ws:
                msgs.append(json.loads(m))

        task = asyncio.create_task(reader())
        n = int(SR * chunk_s)
        for i in range(0, len(pcm), n):
            await ws.send(pcm[i : i + n].tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(task, 600)
    ends = [m for m in msgs if m["type"] == "end"]
    assert ends, msgs[-3:]
    return {"end": ends[0], "finals": [m for m in msgs if m["type"] == "final"]}


def test_idle_sockets_take_no_stream_slot(tmp_path, speech_pcm):
    """More silent sockets than slots, then a real client: it is served (before, the
    silent ones held every slot for the first-message timeout and it got 1013)."""

    async def run(url: str) -> dict:
        idle = [await websockets.connect(url) for _ in range(5)]
        try:
            return await _session(url, speech_pcm[: 6 * SR])
        finally:
            for ws in idle:
                await ws.close()

    with Server(tmp_path, env={"TINGXIE_MAX_STREAMS": "2"}) as srv:
        got = asyncio.run(run(ws_url(srv)))
    assert got["end"]["job_id"] and got["finals"], got


def test_idle_sockets_beyond_the_handshake_bound_are_closed_with_the_reason(tmp_path):
    async def run(url: str):
        held = [await websockets.connect(url) for _ in range(2)]
        try:
            async with websockets.connect(url) as third:
                with pytest.raises(websockets.ConnectionClosed) as e:
                    await third.recv()
                return e.value.rcvd
        finally:
            for ws in held:
                await ws.close()

    with Server(tmp_path, env={"TINGXIE_MAX_STREAM_HANDSHAKES": "2"}, wait_ready=False) as srv:
        close = asyncio.run(run(ws_url(srv)))
    assert close.code == 1013 and "wait for their first message" in close.reason


def test_a_flooding_client_is_slowed_to_the_decoder_and_its_backlog_bounded(tmp_path, speech_pcm):
    """90 s of speech sent as fast as the socket takes it: the server reads no further
    while more than the bound waits for the decoder, so the backlog (and the memory it
    holds) stays bounded and the end comes once the last sentence is decoded."""
    bound = 5.0
    with Server(tmp_path, env={"TINGXIE_STREAM_MAX_BACKLOG_S": str(bound)}) as srv:
        got = asyncio.run(_session(ws_url(srv), speech_pcm))
    stats = got["end"]["stats"]
    # a sentence closes whole: one window (≤ 29 s) may pass the bound before the wait
    assert 0 < stats["max_backlog_s"] <= bound + 29, stats
    assert stats["throttled_s"] > 0, stats  # it was slowed, not refused
    assert len(got["finals"]) >= 10  # and every sentence was still transcribed


def _metric(srv: Server, name: str) -> float:
    text = httpx.get(srv.url + "/metrics", timeout=10).text
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_departed_client_frees_its_slot_and_drops_its_queued_windows_at_once(tmp_path, speech_pcm):
    """One slot; a client floods 90 s of speech (no backlog bound, so its windows queue)
    and vanishes without stop. Its slot is free as soon as the server sees it gone (not
    after its queued windows were decoded for nobody), and a new client is admitted."""
    depth = 'tingxie_queue_depth{lane="interactive"}'

    async def run(url: str, srv: Server) -> tuple[float, float, dict]:
        ws = await websockets.connect(url, ping_interval=None)
        await ws.send(json.dumps({"language": "zh"}))
        assert json.loads(await ws.recv())["type"] == "ready"
        n = SR // 10
        for i in range(0, len(speech_pcm), n):
            await ws.send(speech_pcm[i : i + n].tobytes())
        deadline = time.time() + 60
        while _metric(srv, depth) < 6 and time.time() < deadline:
            await asyncio.sleep(0.2)
        before = _metric(srv, depth)
        ws.transport.abort()  # gone: no stop, no close handshake
        deadline = time.time() + 20
        while _metric(srv, "tingxie_active_streams") > 0 and time.time() < deadline:
            await asyncio.sleep(0.2)
        after = _metric(srv, depth)
        got = await _session(url, speech_pcm[: 6 * SR])  # the one slot is free again
        return before, after, got

    env = {"TINGXIE_MAX_STREAMS": "1", "TINGXIE_STREAM_MAX_BACKLOG_S": "0"}
    with Server(tmp_path, env=env) as srv:
        before, after, got = asyncio.run(run(ws_url(srv), srv))
        jobs = httpx.get(srv.url + "/api/jobs?kind=stream", timeout=10).json()["jobs"]
        log = (tmp_path / "server.log").read_text(errors="replace")
    assert before >= 6, "the flooding client's windows never queued: the test did not bite"
    assert after == 0, (before, after)  # its queued windows were dropped, not decoded for nobody
    assert "queued window(s) dropped" in log
    assert got["finals"] and got["end"]["job_id"]
    assert len(jobs) == 2  # the departed session is still kept in the history
