"""OpenAI's Realtime API for transcription sessions (`/v1/realtime`), driven by the
official `openai` package's realtime client against a real `tingxie serve`, on real
speech sent at twice real-time pace (100 ms of audio every 50 ms: the pacing shows
deltas arriving while the speech is still coming, at half the test time)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from server_fixture import ROOT, Server

from tingxie.audio import StreamResampler, decode
from tingxie.bench.score import error_rate

openai = pytest.importorskip("openai")
websockets = pytest.importorskip("websockets")

RATE = 24000  # the protocol's PCM rate
CHUNK_S = 0.1
SPEED = 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("srv")) as s:
        yield s


def clip(corpus: Path, lang: str, rate: int = RATE) -> tuple[bytes, str]:
    """A clip of `lang` from the eval set as PCM16 at `rate`, with 1.2 s of silence
    after it (the server VAD's endpoint), and its reference text."""
    items = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines() if x.strip()]
    m = next(m for m in items if m["lang"] == lang and 4.0 <= m["duration_s"] <= 9.0)
    x = decode(str(corpus / m["audio"]))
    x = np.concatenate([np.zeros(8000, np.float32), x, np.zeros(int(1.2 * 16000), np.float32)])
    r = StreamResampler(16000, rate)
    y = np.concatenate([r.feed(x), r.flush()])
    return (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes(), m["text"]


def g711(pcm: bytes) -> tuple[bytes, dict] | None:
    """8 kHz PCM16 as μ-law by the standard library's own G.711 (audioop, up to Python
    3.12), so the server's decoding is checked against an encoder it does not share."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    return audioop.lin2ulaw(pcm, 2), {"type": "audio/pcmu"}


def client(srv: Server, key: str = "none"):
    return openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)


async def transcribe(
    srv: Server, audio: bytes, fmt: dict, lang: str, turn_detection: dict | None, bytes_per_s: int
) -> list[dict]:
    """Every event of one session: configure, send `pcm` paced, commit when turn
    detection is off, and read until each committed item is done."""
    events: list[dict] = []
    async with client(srv).realtime.connect(model="gpt-4o-transcribe", extra_query={"intent": "transcription"}) as c:
        created = await c.recv()
        assert created.type == "session.created" and created.session.type == "transcription"
        await c.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": fmt,
                        "transcription": {"model": "whisper-1", "language": lang},
                        "turn_detection": turn_detection,
                    }
                },
            }
        )

        async def read() -> None:
            async for raw in c._connection:
                e = json.loads(raw)
                events.append(e)
                if e["type"] == "error":
                    return
                committed = {x["item_id"] for x in events if x["type"] == "input_audio_buffer.committed"}
                done = {x["item"]["id"] for x in events if x["type"] == "conversation.item.done"}
                if committed and committed == done and (turn_detection or sent.is_set()):
                    return

        sent = asyncio.Event()
        reader = asyncio.create_task(read())
        n = int(bytes_per_s * CHUNK_S)
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(audio), n)):
            await c.input_audio_buffer.append(audio=base64.b64encode(audio[i : i + n]).decode())
            await asyncio.sleep(max(0.0, t0 + (k + 1) * CHUNK_S / SPEED - time.monotonic()))
        if turn_detection is None:
            await c.input_audio_buffer.commit()
        sent.set()
        await asyncio.wait_for(reader, 120)
    return events


def first(events: list[dict], kind: str, item: str) -> int:
    return next(
        i for i, e in enumerate(events) if e["type"] == kind and item in (e.get("item_id"), e.get("item", {}).get("id"))
    )


@pytest.mark.parametrize(
    ("lang", "turn_detection", "limit"),
    [
        ("zh", {"type": "server_vad", "silence_duration_ms": 600, "threshold": 0.5}, 0.35),
        # turn detection off: the client's commit ends the turn; telephone audio (G.711)
        ("en", None, 0.35),
    ],
)
def test_official_client_transcribes_live_speech(server, corpus_dir, lang, turn_detection, limit, record_property):
    pcm, ref = clip(corpus_dir, lang)
    audio, fmt, per_s = pcm, {"type": "audio/pcm", "rate": RATE}, RATE * 2
    if lang == "en":
        phone = g711(clip(corpus_dir, lang, 8000)[0])
        if phone:
            (audio, fmt), per_s = phone, 8000
    events = asyncio.run(transcribe(server, audio, fmt, lang, turn_detection, per_s))
    kinds = [e["type"] for e in events]
    assert "error" not in kinds, events
    assert kinds[0] == "session.updated" and events[0]["session"]["audio"]["input"]["turn_detection"] == (
        turn_detection and {**turn_detection}
    )
    done = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert done and all(e["content_index"] == 0 for e in done)
    hyp = " ".join(e["transcript"] for e in done)
    rate = error_rate([ref], [hyp], lang)
    record_property("summary", f"realtime {lang} {fmt['type']}: {'CER' if lang == 'zh' else 'WER'} {rate:.1%}")
    assert rate <= limit, (ref, hyp)
    item = done[0]["item_id"]
    # deltas (partials while the audio arrives, then the rest) come before the completed
    # event; whether the first one beats the end of the turn depends on the machine's
    # load, so it is not asserted
    end = "input_audio_buffer.speech_stopped" if turn_detection else "input_audio_buffer.committed"
    completed = first(events, "conversation.item.input_audio_transcription.completed", item)
    deltas = [i for i, e in enumerate(events) if e["type"].endswith(".delta") and e["item_id"] == item]
    assert deltas and max(deltas) < completed
    assert first(events, "input_audio_buffer.committed", item) < first(events, "conversation.item.added", item)
    if turn_detection:
        assert first(events, "input_audio_buffer.speech_started", item) < first(events, end, item) < completed
    else:
        assert "input_audio_buffer.speech_started" not in kinds  # no server VAD: no speech events
    # the item, done, holds the transcript
    item_done = next(e for e in events if e["type"] == "conversation.item.done" and e["item"]["id"] == item)
    assert item_done["item"]["content"][0]["transcript"] == done[0]["transcript"]


def test_what_does_not_apply_is_refused_with_the_protocols_error_and_the_session_goes_on(server):
    async def run() -> list:
        async with client(server).realtime.connect(extra_query={"intent": "transcription"}) as c:
            assert (await c.recv()).type == "session.created"
            await c.send({"type": "response.create", "event_id": "evt_gen"})
            refused = await c.recv()
            await c.session.update(
                session={"type": "transcription", "audio": {"input": {"transcription": {"model": "no-such-model"}}}},
                event_id="evt_model",
            )
            unknown = await c.recv()
            await c.input_audio_buffer.commit(event_id="evt_empty")
            empty = await c.recv()
            await c.session.update(session={"type": "transcription", "audio": {"input": {"turn_detection": None}}})
            updated = await c.recv()
            return [refused, unknown, empty, updated]

    refused, unknown, empty, updated = asyncio.run(run())
    assert refused.type == "error" and refused.error.code == "unsupported_event"
    assert refused.error.event_id == "evt_gen" and "response.create" in refused.error.message
    assert unknown.type == "error" and unknown.error.code == "model_not_found"
    assert unknown.error.event_id == "evt_model" and "no-such-model" in unknown.error.message
    assert empty.type == "error" and empty.error.code == "input_audio_buffer_commit_empty"
    assert updated.type == "session.updated" and updated.session.audio.input.turn_detection is None


def test_cleared_audio_is_forgotten_and_what_follows_is_one_turn(server, corpus_dir):
    """Turn detection off: speech appended and then cleared is not transcribed; the
    speech appended after it, committed, is one item with its text."""
    items = [json.loads(x) for x in (corpus_dir / "manifest.jsonl").read_text().splitlines() if x.strip()]
    zh = [m for m in items if m["lang"] == "zh" and 3.0 <= m["duration_s"] <= 6.0][:2]

    def pcm(m: dict) -> bytes:
        r = StreamResampler(16000, RATE)
        x = decode(str(corpus_dir / m["audio"]))
        return (np.clip(np.concatenate([r.feed(x), r.flush()]), -1, 1) * 32767).astype("<i2").tobytes()

    async def run() -> list[dict]:
        events: list[dict] = []
        async with client(server).realtime.connect(extra_query={"intent": "transcription"}) as c:
            await c.session.update(
                session={
                    "type": "transcription",
                    "audio": {"input": {"transcription": {"language": "zh"}, "turn_detection": None}},
                }
            )
            for k, m in enumerate(zh):
                audio = pcm(m)
                for i in range(0, len(audio), 9600):
                    await c.input_audio_buffer.append(audio=base64.b64encode(audio[i : i + 9600]).decode())
                await (c.input_audio_buffer.clear() if k == 0 else c.input_audio_buffer.commit())
            async for raw in c._connection:
                events.append(json.loads(raw))
                if events[-1]["type"] in ("conversation.item.done", "error"):
                    return events
        return events

    events = asyncio.run(run())
    kinds = [e["type"] for e in events]
    assert "error" not in kinds and kinds.count("input_audio_buffer.cleared") == 1, kinds
    assert kinds.index("input_audio_buffer.cleared") < kinds.index("input_audio_buffer.committed")
    done = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert len(done) == 1 and kinds.count("input_audio_buffer.committed") == 1, kinds
    first, second = (error_rate([m["text"]], [done[0]["transcript"]], "zh") for m in zh)
    assert second <= 0.35 and first > 0.7, (done[0]["transcript"], [m["text"] for m in zh])


def _new_key(home: Path) -> str:
    env = {**os.environ, "TINGXIE_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "tingxie", "keys", "create", "rt"], env=env, cwd=ROOT, capture_output=True, text=True
    ).stdout
    return out.split("secret (shown once, store it now): ")[1].strip()


def test_a_keyed_server_refuses_a_missing_or_wrong_key_and_serves_the_right_one(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    key = _new_key(home)

    async def run(url: str) -> tuple[dict, int | None, str | None, list[str]]:
        async with websockets.connect(url.replace("http", "ws") + "/v1/realtime?intent=transcription") as ws:
            missing = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            code = ws.close_code
        async with client(srv, "wrong").realtime.connect(extra_query={"intent": "transcription"}) as c:
            wrong = await c.recv()
        async with client(srv, key).realtime.connect(extra_query={"intent": "transcription"}) as c:
            right = await c.recv()
        # a browser cannot set headers: it offers the key as a subprotocol, as OpenAI's own clients do
        offered = ["realtime", f"openai-insecure-api-key.{key}"]
        async with websockets.connect(url.replace("http", "ws") + "/v1/realtime", subprotocols=offered) as ws:
            browser = json.loads(await ws.recv())["type"]
            assert ws.subprotocol == "realtime"
        wrong_code = wrong.error.code if wrong.type == "error" else None
        return missing, code, wrong_code, [right.type, browser]

    with Server(home, wait_ready=False) as srv:
        missing, code, wrong, right = asyncio.run(run(srv.url))
    assert missing["type"] == "error" and missing["error"]["code"] == "missing_api_key", missing
    assert "Authorization: Bearer" in missing["error"]["message"] and code == 4401
    assert wrong == "invalid_api_key"
    assert right == ["session.created", "session.created"]  # the key as a header, and as a browser's subprotocol
