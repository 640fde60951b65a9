"""Real-time recognition end to end: a real `tingxie serve`, real WebSocket clients
(`websockets`), real model inference on espeak and AISHELL speech."""

from __future__ import annotations

import asyncio
import json
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from server_fixture import Server

from tingxie.bench.score import error_rate

SR = 16000


def read_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == SR and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def write_wav(path: Path, pcm: np.ndarray, rate: int = SR) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), "<i2")


async def stream(
    url: str,
    pcm: np.ndarray,
    options: dict,
    paced: bool,
    chunk_ms: int = 100,
    stop_after: float | None = None,
    speed: float = 1.0,
) -> list[dict]:
    """Send `pcm` (16 kHz PCM16) in chunks, then stop; return every message received,
    each stamped with `_t`, seconds since the first audio was sent. `paced`: at `speed`
    times real time, else as fast as the socket takes it."""
    msgs: list[dict] = []
    async with websockets.connect(url.replace("http", "ws") + "/v1/stream") as ws:
        await ws.send(json.dumps(options))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready" and ready["session_id"]
        t0 = time.monotonic()

        async def reader() -> None:
            async for m in ws:
                d = json.loads(m)
                d["_t"] = time.monotonic() - t0
                msgs.append(d)

        task = asyncio.create_task(reader())
        n = SR * chunk_ms // 1000
        end = len(pcm) if stop_after is None else int(stop_after * SR)
        for i in range(0, end, n):
            await ws.send(pcm[i : min(i + n, end)].tobytes())
            if paced:
                await asyncio.sleep(max(0.0, t0 + (i + n) / SR / speed - time.monotonic()))
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(task, 120)
    return msgs


def finals(msgs: list[dict]) -> list[dict]:
    return [m for m in msgs if m["type"] == "final"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("stream-home")) as srv:
        yield srv


@pytest.fixture(scope="module")
def english(tmp_path_factory, synth_speech) -> np.ndarray:
    d = tmp_path_factory.mktemp("en")
    a = read_pcm(synth_speech("The quick brown fox jumps over the lazy dog.", d / "a.wav"))
    b = read_pcm(synth_speech("Please call Stella and ask her to bring these things.", d / "b.wav"))
    global FIRST_S
    FIRST_S = len(a) / SR
    return np.concatenate([silence(0.5), a, silence(1.2), b, silence(1.2)])


FIRST_S = 2.9  # length of the first sentence, set by the fixture


def _words_in_order(text: str, words: list[str]) -> bool:
    low, pos = text.lower(), 0
    for w in words:
        pos = low.find(w, pos)
        if pos < 0:
            return False
    return True


EXPECTED = ["quick", "brown", "fox", "lazy", "dog", "please", "ask", "bring", "things"]


def test_english_paced_partials_then_finals_in_order(server, english):
    msgs = asyncio.run(stream(server.url, english, {"language": "en"}, paced=True))
    fs = finals(msgs)
    assert [f["segment_id"] for f in fs] == list(range(len(fs))) and len(fs) == 2
    assert _words_in_order(" ".join(f["text"] for f in fs), EXPECTED), fs
    assert fs[0]["start"] < fs[0]["end"] <= fs[1]["start"] < fs[1]["end"] <= len(english) / SR + 0.01
    # At real-time pace the first sentence shows partial text before its final.
    first_partial = next(m for m in msgs if m["type"] == "partial")
    assert first_partial["_t"] < fs[0]["_t"] and first_partial["segment_id"] == 0 and first_partial["text"]
    end = msgs[-1]
    assert end["type"] == "end" and end["stats"]["final_s"]["n"] == 2


def test_english_flat_out(server, english):
    msgs = asyncio.run(stream(server.url, english, {"language": "auto", "partials": False}, paced=False, chunk_ms=320))
    fs = finals(msgs)
    assert len(fs) == 2 and not [m for m in msgs if m["type"] == "partial"]
    assert _words_in_order(" ".join(f["text"] for f in fs), EXPECTED), fs


RUN_ON = (
    "the farmer keeps his tools and his horses and his many chickens that cluck all day long in the warm "
    "summer sun while the children play by the river and the birds sing in the tall trees above the quiet "
    "village where nothing much ever happens except on market day when people come from far away to sell "
    "their vegetables and fruit and bread and cheese"
)


def test_run_on_sentence_is_decoded_in_parts_without_losing_words(server, synth_speech, tmp_path):
    """25 s without a pause: decoded in parts while spoken, delivered as one final
    whose text reads through the cuts (nothing dropped or doubled there)."""
    pcm = read_pcm(synth_speech(RUN_ON, tmp_path / "run_on.wav"))
    assert len(pcm) / SR > 20
    msgs = asyncio.run(stream(server.url, pcm, {"language": "en"}, paced=False, chunk_ms=200))
    fs = finals(msgs)
    assert len(fs) == 1, fs
    assert msgs[-1]["stats"]["parts"] >= 2
    words = fs[0]["text"].lower().split()
    assert 0.85 <= len(words) / len(RUN_ON.split()) <= 1.15, fs[0]["text"]  # nothing dropped or doubled
    key = [
        "farmer",
        "horses",
        "summer",
        "children",
        "river",
        "birds",
        "village",
        "market",
        "far",
        "vegetables",
        "cheese",
    ]
    assert _words_in_order(fs[0]["text"], key), fs[0]["text"]


def test_stop_mid_sentence_keeps_partial_sentence_in_history(server, english):
    # Stop 1.0 s into the second sentence: its first words still come back as a final.
    cut = (0.5 + FIRST_S + 1.2) + 1.3
    msgs = asyncio.run(stream(server.url, english, {"language": "en", "save_audio": True}, paced=False, stop_after=cut))
    fs = finals(msgs)
    assert len(fs) == 2 and "please" in fs[1]["text"].lower() and "things" not in fs[1]["text"].lower(), fs
    job_id = msgs[-1]["job_id"]
    jobs = httpx.get(server.url + "/api/jobs", params={"kind": "stream", "limit": 500}).json()["jobs"]
    job = next(j for j in jobs if j["id"] == job_id)
    assert job["state"] == "done" and job["filename"].startswith("realtime-")
    result = httpx.get(f"{server.url}/api/jobs/{job_id}/result", params={"format": "json"}).json()
    assert [s["text"] for s in result["segments"]] == [f["text"] for f in fs]
    audio = httpx.get(f"{server.url}/api/jobs/{job_id}/audio")
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
    assert abs(len(audio.content) - 44 - 2 * int(cut * SR)) < 2 * SR // 10  # the session's audio, 16 kHz


def test_disconnect_mid_utterance_keeps_every_final_in_history(server, english):
    """The client vanishes 1.3 s into the second sentence (no stop): the final it already
    had and the cut-off sentence both end up in the saved session."""
    cut = int(((0.5 + FIRST_S + 1.2) + 1.3) * SR)

    async def run() -> tuple[str, list[dict]]:
        got: list[dict] = []
        async with websockets.connect(server.url.replace("http", "ws") + "/v1/stream") as ws:
            await ws.send(json.dumps({"language": "en", "partials": False}))
            sid = json.loads(await ws.recv())["session_id"]
            for i in range(0, cut, SR // 10):
                await ws.send(english[i : min(i + SR // 10, cut)].tobytes())
            while not got:
                d = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if d["type"] == "final":
                    got.append(d)
        return sid, got  # leaving the block closes the socket mid-sentence

    sid, got = asyncio.run(run())
    assert "fox" in got[0]["text"].lower()
    deadline, job = time.time() + 60, {}
    while time.time() < deadline and job.get("state") != "done":
        job = httpx.get(f"{server.url}/api/jobs/{sid}").json()
        time.sleep(0.5)
    assert job.get("state") == "done", job
    segs = httpx.get(f"{server.url}/api/jobs/{sid}/result", params={"format": "json"}).json()["segments"]
    assert len(segs) == 2 and segs[0]["text"] == got[0]["text"] and "please" in segs[1]["text"].lower(), segs


def test_bad_frames_get_errors_naming_the_problem(server, english):
    async def run() -> list[dict]:
        async with websockets.connect(server.url.replace("http", "ws") + "/v1/stream") as ws:
            await ws.send(json.dumps({"language": "en", "partials": False}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(b"\x00" * 3201)
            odd = json.loads(await ws.recv())
            await ws.send("{not json")
            bad_json = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "pause"}))
            bad_type = json.loads(await ws.recv())
            await ws.send(english.tobytes())  # the session survived: audio still works
            await ws.send(json.dumps({"type": "stop"}))
            rest = [json.loads(m) async for m in ws]
            return [odd, bad_json, bad_type, *rest]

    odd, bad_json, bad_type, *rest = asyncio.run(run())
    assert odd["type"] == "error" and "odd number of bytes (3201)" in odd["message"]
    assert bad_json["type"] == "error" and "not valid JSON" in bad_json["message"]
    assert bad_type["type"] == "error" and "'pause'" in bad_type["message"]
    assert _words_in_order(" ".join(f["text"] for f in finals(rest)), EXPECTED)


@pytest.mark.parametrize(
    "options, named",
    [
        ({"language": "en", "speed": 2}, "unknown option(s): speed"),
        ({"sample_rate": 22050}, "sample_rate"),
        ({"endpoint_silence_ms": "fast"}, "endpoint_silence_ms"),
        ({"language": "klingon"}, "klingon"),
    ],
)
def test_bad_options_refused_with_4400(server, options, named):
    async def run():
        async with websockets.connect(server.url.replace("http", "ws") + "/v1/stream") as ws:
            await ws.send(json.dumps(options))
            msg = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            return msg, e.value.rcvd.code

    msg, code = asyncio.run(run())
    assert msg["type"] == "error" and named in msg["message"] and code == 4400


def test_invalid_first_message(server):
    async def run():
        async with websockets.connect(server.url.replace("http", "ws") + "/v1/stream") as ws:
            await ws.send("language=en")
            return json.loads(await ws.recv())

    msg = asyncio.run(run())
    assert msg["type"] == "error" and "not valid JSON" in msg["message"]


def test_too_many_streams_refused(tmp_path):
    async def run(url: str):
        async with websockets.connect(url + "/v1/stream") as first:
            await first.send(json.dumps({"language": "en"}))
            assert json.loads(await first.recv())["type"] == "ready"
            async with websockets.connect(url + "/v1/stream") as second:
                await second.send(json.dumps({"language": "en"}))  # a slot is taken by a valid first message
                with pytest.raises(websockets.ConnectionClosed) as e:
                    await second.recv()
                return e.value.rcvd

    with Server(tmp_path, env={"TINGXIE_MAX_STREAMS": "1"}, wait_ready=False) as srv:
        close = asyncio.run(run(srv.url.replace("http", "ws")))
    assert close.code == 1013 and close.reason == "server at capacity: 1 streams"


# ----------------------------------------------------------------- real Mandarin speech


def _mandarin(corpus_dir: Path, out: Path, n: int):
    rows = [json.loads(line) for line in (corpus_dir / "manifest.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["lang"] == "zh"][:n]
    parts = [silence(0.5)]
    for r in rows:
        parts += [read_pcm(corpus_dir / r["audio"]), silence(1.0)]
    pcm = np.concatenate(parts)
    return pcm, [r["text"] for r in rows], write_wav(out / "zh.wav", pcm)


@pytest.fixture(scope="module")
def mandarin(corpus_dir, tmp_path_factory):
    return _mandarin(corpus_dir, tmp_path_factory.mktemp("zh"), 14)


@pytest.fixture(scope="module")
def mandarin_offline(server, mandarin) -> str:
    """The same recording as one file request: what the stream is measured against."""
    with mandarin[2].open("rb") as f:
        r = httpx.post(
            server.url + "/v1/audio/transcriptions",
            files={"file": ("zh.wav", f, "audio/wav")},
            data={"model": "whisper-base", "language": "zh"},
            timeout=300,
        )
    r.raise_for_status()
    return r.json()["text"]


# paced: at three times real time (~27 s for ~80 s of speech), so the stream is still
# decoded while it arrives (partials, early finals), in a third of the time
@pytest.mark.parametrize("paced", [False, True], ids=["flat-out", "paced"])
def test_mandarin_stream_matches_offline_accuracy(server, mandarin, mandarin_offline, paced):
    pcm, refs, _ = mandarin
    chunk_ms = 100 if paced else 200
    msgs = asyncio.run(stream(server.url, pcm, {"language": "zh"}, paced=paced, chunk_ms=chunk_ms, speed=3.0))
    streamed = "".join(f["text"] for f in finals(msgs))
    offline = mandarin_offline
    ref = "".join(refs)
    cer_stream, cer_offline = error_rate([ref], [streamed], "zh"), error_rate([ref], [offline], "zh")
    assert cer_stream <= cer_offline + 0.02, (cer_stream, cer_offline, streamed, offline)
    assert len(finals(msgs)) >= len(refs) - 1  # one final per utterance (1 s pauses)


# ----------------------------------------------------------------- FunASR protocol


async def funasr_client(url: str, pcm: np.ndarray, mode: str, chunk_ms: int = 60) -> list[dict]:
    """A client written from FunASR's runtime/docs/websocket_protocol.md."""
    msgs: list[dict] = []
    async with websockets.connect(url.replace("http", "ws") + "/funasr") as ws:
        await ws.send(
            json.dumps(
                {
                    "mode": mode,
                    "wav_name": "test",
                    "wav_format": "pcm",
                    "is_speaking": True,
                    "chunk_size": [5, 10, 5],
                    "chunk_interval": 10,
                    "audio_fs": SR,
                    "hotwords": json.dumps({"Stella": 20}),
                    "itn": True,
                }
            )
        )
        n = SR * chunk_ms // 1000
        for i in range(0, len(pcm), n):
            await ws.send(pcm[i : i + n].tobytes())
        await ws.send(json.dumps({"is_speaking": False}))
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 120))
            msgs.append(m)
            if m["is_final"]:
                return msgs


def test_funasr_wav_header_with_an_absurd_rate_is_refused_not_resampled(server, english, tmp_path):
    """A WAV header in front of the PCM sets the input rate; 1 Hz would make every
    byte cost 8000 samples. The header's frame is refused by name, the stream goes on
    at the configured 16 kHz."""
    header = write_wav(tmp_path / "header.wav", silence(0), rate=1).read_bytes()  # a header, no samples

    async def run() -> list[dict]:
        msgs: list[dict] = []
        async with websockets.connect(server.url.replace("http", "ws") + "/funasr") as ws:
            await ws.send(json.dumps({"mode": "2pass", "wav_name": "hdr", "is_speaking": True, "audio_fs": SR}))
            await ws.send(header)
            for i in range(0, len(english), 960):
                await ws.send(english[i : i + 960].tobytes())
            await ws.send(json.dumps({"is_speaking": False}))
            while not msgs or not msgs[-1]["is_final"]:
                msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 120)))
        return msgs

    msgs = asyncio.run(run())
    errors = [m["error"] for m in msgs if m.get("error")]
    assert errors == ["the WAV header's rate must be a sample rate in Hz (4000 to 192000), not 1; frame dropped"]
    final_text = " ".join(m["text"] for m in msgs if m["mode"] == "2pass-offline")
    assert _words_in_order(final_text, EXPECTED), msgs


def test_funasr_2pass_and_offline(server, english):
    for mode in ("2pass", "offline"):
        msgs = asyncio.run(funasr_client(server.url, english, mode))
        for m in msgs:
            assert set(m) >= {"mode", "wav_name", "text", "is_final"} and m["wav_name"] == "test"
            assert isinstance(m["text"], str) and isinstance(m["is_final"], bool)
        kinds = {"2pass": {"2pass-online", "2pass-offline"}, "offline": {"offline"}}[mode]
        assert {m["mode"] for m in msgs} <= kinds
        final_text = " ".join(m["text"] for m in msgs if m["mode"] in ("2pass-offline", "offline"))
        assert _words_in_order(final_text, EXPECTED), msgs
        stamped = [m for m in msgs if m["text"] and m["mode"] != "2pass-online"]
        for m in stamped:
            spans = json.loads(m["timestamp"])  # a JSON string, as in FunASR's doc
            assert all(0 <= a < b for a, b in spans)
