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
    """One client: options, the audio as fast as the socket takes it, stop; the end message."""
    async with websockets.connect(url) as ws:
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
            await asyncio.sleep(0)  # as fast as it goes, still reading what the server says
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


def test_a_flooding_client_is_served_at_the_decoders_pace_then_closed_with_the_reason(tmp_path, speech_pcm):
    """Speech sent as fast as the socket takes it: the server holds what the decoder has
    not taken, up to the bound; past it the client is closed with 1008 and the reason
    (not by a keepalive timeout), its slot is free, and its session is kept."""
    bound = 20.0

    async def run(url: str):
        msgs: list[dict] = []
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"language": "zh"}))
            ready = json.loads(await ws.recv())

            async def reader() -> None:
                async for m in ws:
                    msgs.append(json.loads(m))

            task = asyncio.create_task(reader())
            n = SR // 10
            with pytest.raises(websockets.ConnectionClosed) as e:
                for _ in range(20):  # 30 min of audio at most: it is closed long before
                    for i in range(0, len(speech_pcm), n):
                        await ws.send(speech_pcm[i : i + n].tobytes())
                        await asyncio.sleep(0)  # let the client read what the server says
                await ws.send(json.dumps({"type": "stop"}))
                await ws.recv()
            await asyncio.gather(task, return_exceptions=True)
            return e.value.rcvd, msgs, ready["session_id"]

    env = {"TINGXIE_STREAM_MAX_BACKLOG_S": str(bound), "TINGXIE_MAX_STREAMS": "1"}
    with Server(tmp_path, env=env) as srv:
        close, msgs, sid = asyncio.run(run(ws_url(srv)))
        again = asyncio.run(_session(ws_url(srv), speech_pcm[: 6 * SR]))  # the one slot is free again
        kept = httpx.get(f"{srv.url}/api/jobs/{sid}/result", timeout=10).json()
    assert close is not None and close.code == 1008, close
    assert "faster than it can be decoded" in close.reason
    errors = [m["message"] for m in msgs if m["type"] == "error"]
    assert errors and "send audio in real time" in errors[-1], msgs[-3:]
    stats = kept["options"]["stats"]
    assert stats["max_backlog_s"] <= bound + 0.5, stats  # held no more than the bound (one frame over)
    assert again["finals"] and again["end"]["job_id"]


def test_a_client_ahead_of_real_time_within_the_bound_is_served_whole(tmp_path, speech_pcm):
    """30 s of speech flat out, under the bound: held and fed at the decoder's pace,
    every sentence transcribed, and the end reports how much waited."""
    with Server(tmp_path, env={"TINGXIE_STREAM_MAX_BACKLOG_S": "60"}) as srv:
        got = asyncio.run(_session(ws_url(srv), speech_pcm[: 30 * SR]))
    stats = got["end"]["stats"]
    assert 20 < stats["max_backlog_s"] <= 60, stats  # it arrived far ahead of the decoder
    assert len(got["finals"]) >= 4, got["finals"]


def _metric(srv: Server, name: str) -> float:
    text = httpx.get(srv.url + "/metrics", timeout=10).text
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_departed_client_frees_its_slot_and_drops_its_queued_windows_at_once(tmp_path, speech_pcm):
    """One slot; a client floods 90 s of speech (no backlog bound, so its windows queue)
    and vanishes without stop. Its slot is free as soon as the server sees it gone (not
    after its queued windows were decoded for nobody), and a new client is admitted."""
    depth = 'tingxie_queue_depth{lane="interactive"}'

    async def run(url: str, srv: Server) -> tuple[float, float, dict, str]:
        ws = await websockets.connect(url, ping_interval=None)
        await ws.send(json.dumps({"language": "zh"}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready"
        n = SR // 10
        for i in range(0, len(speech_pcm), n):
            await ws.send(speech_pcm[i : i + n].tobytes())
        deadline = time.time() + 60
        while _metric(srv, depth) < 4 and time.time() < deadline:
            await asyncio.sleep(0.2)
        before = _metric(srv, depth)
        ws.transport.abort()  # gone: no stop, no close handshake
        # the server first works through the frames it had already received (seconds on a
        # busy machine); then it sees the client gone
        deadline = time.time() + 120
        while _metric(srv, "tingxie_active_streams") > 0 and time.time() < deadline:
            await asyncio.sleep(0.2)
        after = _metric(srv, depth)
        got = await _session(url, speech_pcm[: 6 * SR])  # the one slot is free again
        return before, after, got, ready["session_id"]

    env = {"TINGXIE_MAX_STREAMS": "1", "TINGXIE_STREAM_MAX_BACKLOG_S": "0"}
    with Server(tmp_path, env=env) as srv:
        before, after, got, sid = asyncio.run(run(ws_url(srv), srv))
        jobs = httpx.get(srv.url + "/api/jobs?kind=stream", timeout=10).json()["jobs"]
        left = httpx.get(f"{srv.url}/api/jobs/{sid}/result", timeout=10).json()
    assert before >= 4, "the flooding client's windows never queued: the test did not bite"
    assert after == 0, (before, after)  # nothing of it waits for the model any more
    assert left["options"]["stats"]["dropped_windows"] > 0, left["options"]["stats"]  # dropped, not decoded for nobody
    assert got["finals"] and got["end"]["job_id"]
    assert len(jobs) == 2  # the departed session is still kept in the history
