"""Every request has a bound and nothing half-done stays behind (issue 12, sections 3
and 4): each case against a real `tingxie serve` process with real files."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import sqlite3
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from server_fixture import ROOT, Server

from tingxie.audio import StreamResampler

SR = 16000
SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def speech(tmp_path_factory, synth_speech) -> Path:
    return synth_speech(SENTENCE, tmp_path_factory.mktemp("speech") / "fox.wav")


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory, synth_speech) -> Path:
    """About a minute of speech: a job that cannot finish between two requests."""
    return synth_speech(" ".join([SENTENCE] * 18), tmp_path_factory.mktemp("speech") / "long.wav")


def pcm_of(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert w.getframerate() == SR and w.getnchannels() == 1
        return w.readframes(w.getnframes())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {
        "TINGXIE_MAX_UPLOAD_MB": "2",
        "TINGXIE_MAX_STREAMS": "2",
        "TINGXIE_STREAM_FIRST_MESSAGE_TIMEOUT_S": "1",
        "TINGXIE_STREAM_IDLE_TIMEOUT_S": "3",
    }
    with Server(tmp_path_factory.mktemp("limits"), env=env) as s:
        yield s


def stored_files(srv: Server) -> list[Path]:
    return [p for p in (srv.home / "audio").rglob("*") if p.is_file()]


def job_ids(srv: Server, headers: dict | None = None) -> set[str]:
    return {
        j["id"] for j in httpx.get(f"{srv.url}/api/jobs", params={"limit": 500}, headers=headers or {}).json()["jobs"]
    }


def wait_jobs(url: str, ids: list[str], timeout: float = 600) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = [httpx.get(f"{url}/api/jobs/{i}", timeout=30).json() for i in ids]
        if all(j["state"] in ("done", "failed", "cancelled") for j in jobs):
            return jobs
        time.sleep(0.5)
    raise AssertionError(f"jobs not finished: {[j['state'] for j in jobs]}")


def wait_no_streams(srv: Server, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while httpx.get(f"{srv.url}/api/system", timeout=30).json()["streams"]["open"] and time.time() < deadline:
        time.sleep(0.2)


def assert_error_shape(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.text[:300]
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


# -- 3. every request has a bound ------------------------------------------------------------
def test_funasr_offline_audio_is_capped_like_uploads(server, speech):
    """Offline mode buffers audio until is_speaking false: more than the upload limit
    (2 MB here) is refused with a FunASR-shaped error naming the limit, then closed."""

    async def run() -> tuple[list[dict], int, str]:
        msgs = []
        async with websockets.connect(server.url.replace("http", "ws") + "/funasr", max_size=None) as ws:
            await ws.send(
                json.dumps(
                    {"mode": "offline", "wav_name": "big", "wav_format": "pcm", "is_speaking": True, "audio_fs": SR}
                )
            )
            frame = b"\x00\x01" * 32768  # 64 KB
            try:
                for _ in range(64):  # 4 MB, twice the limit
                    await ws.send(frame)
                await ws.send(json.dumps({"is_speaking": False}))
                while True:
                    msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            except websockets.ConnectionClosed as e:
                return msgs, e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else ""

    msgs, code, reason = asyncio.run(run())
    assert code == 1009 and "2 MB" in reason, (code, reason, msgs)
    assert msgs and msgs[-1]["is_final"] and msgs[-1]["wav_name"] == "big" and "2 MB" in msgs[-1]["error"], msgs

    # the server still serves offline requests under the limit
    async def ok() -> dict:
        async with websockets.connect(server.url.replace("http", "ws") + "/funasr") as ws:
            await ws.send(
                json.dumps(
                    {"mode": "offline", "wav_name": "fox", "wav_format": "pcm", "is_speaking": True, "audio_fs": SR}
                )
            )
            await ws.send(pcm_of(speech))
            await ws.send(json.dumps({"is_speaking": False}))
            return json.loads(await asyncio.wait_for(ws.recv(), 120))

    assert "lazy dog" in asyncio.run(ok())["text"].lower()


async def _closed_by_server(url: str, send: list) -> tuple[list, int | None, str]:
    """Connect, send `send`, then wait (bounded) for the server to close; return what came."""
    msgs = []
    async with websockets.connect(url) as ws:
        for m in send:
            await ws.send(m)
        try:
            while True:
                msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        except websockets.ConnectionClosed as e:
            return msgs, e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else ""
        except TimeoutError:
            return msgs, None, "still open after 60 s"


def test_silent_websockets_give_their_slot_back(server, speech):
    """Clients that connect and send nothing (both protocols) are closed with 4408 and a
    reason, so with every slot of TINGXIE_MAX_STREAMS=2 held by them a real client still
    gets in once they time out."""
    base = server.url.replace("http", "ws")
    wait_no_streams(server)  # the earlier tests' sessions have given their slots back

    async def run():
        idle = await asyncio.gather(_closed_by_server(base + "/v1/stream", []), _closed_by_server(base + "/funasr", []))
        async with websockets.connect(base + "/v1/stream") as ws:
            await ws.send(json.dumps({"language": "en"}))
            ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
            await ws.send(json.dumps({"type": "stop"}))
            end = json.loads(await asyncio.wait_for(ws.recv(), 60))
        return idle, ready, end

    idle, ready, end = asyncio.run(run())
    for msgs, code, reason in idle:
        assert code == 4408 and "within 1 s" in reason, (code, reason)
        assert msgs and "within 1 s" in (msgs[-1].get("message") or msgs[-1].get("error") or ""), msgs
    assert ready["type"] == "ready" and end["type"] == "end"


def test_idle_stream_is_ended_and_its_text_kept(server, speech):
    """A /v1/stream client that goes quiet mid-session: its speech is decoded and sent,
    the session is saved, and the server closes with 4408 naming the idle limit."""
    pcm = pcm_of(speech)
    url = server.url.replace("http", "ws") + "/v1/stream"
    wait_no_streams(server)
    frames = [pcm[i : i + 3200] for i in range(0, len(pcm), 3200)]
    msgs, code, reason = asyncio.run(_closed_by_server(url, [json.dumps({"language": "en"}), *frames]))
    assert code == 4408 and "3 s" in reason, (code, reason)
    text = " ".join(m["text"] for m in msgs if m["type"] == "final").lower()
    assert "lazy dog" in text, msgs
    end = [m for m in msgs if m["type"] == "end"]
    assert end and end[0]["job_id"], msgs
    assert "lazy dog" in httpx.get(f"{server.url}/api/jobs/{end[0]['job_id']}").json()["text"].lower()


def test_idle_realtime_session_is_ended_and_its_text_kept(server, speech):
    """/v1/realtime (OpenAI's protocol): a client that goes quiet mid-session gets its
    speech transcribed (a completed item), an `idle_timeout` error event, and close 4408."""
    r = StreamResampler(SR, 24000)  # the protocol's PCM rate
    x = np.frombuffer(pcm_of(speech), "<i2").astype(np.float32) / 32768
    pcm = (np.clip(np.concatenate([r.feed(x), r.flush()]), -1, 1) * 32767).astype("<i2").tobytes()
    appends = [
        json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + 9600]).decode()})
        for i in range(0, len(pcm), 9600)
    ]
    url = server.url.replace("http", "ws") + "/v1/realtime?intent=transcription"
    wait_no_streams(server)
    msgs, code, reason = asyncio.run(_closed_by_server(url, appends))
    assert code == 4408 and "3 s" in reason, (code, reason)
    done = [m for m in msgs if m["type"] == "conversation.item.input_audio_transcription.completed"]
    assert "lazy dog" in " ".join(m["transcript"] for m in done).lower(), msgs
    assert [m["error"]["code"] for m in msgs if m["type"] == "error"] == ["idle_timeout"], msgs


def test_idle_funasr_online_session_is_ended_and_kept(server, speech):
    pcm = pcm_of(speech)
    url = server.url.replace("http", "ws") + "/funasr"
    wait_no_streams(server)
    first = json.dumps({"mode": "2pass", "wav_name": "quiet", "wav_format": "pcm", "is_speaking": True, "audio_fs": SR})
    msgs, code, reason = asyncio.run(
        _closed_by_server(url, [first, *[pcm[i : i + 1920] for i in range(0, len(pcm), 1920)]])
    )
    assert code == 4408 and "3 s" in reason, (code, reason)
    assert "lazy dog" in " ".join(m["text"] for m in msgs if m["mode"] == "2pass-offline").lower(), msgs
    assert "3 s" in msgs[-1]["error"]


def test_per_key_limit_on_queued_work(tmp_path, long_speech):
    """One key may hold at most TINGXIE_MAX_QUEUED_JOBS_PER_KEY=2 queued + running jobs:
    a request over it is refused whole (429, Retry-After, nothing stored); another key is
    not affected."""
    home = tmp_path / "quota"
    home.mkdir()
    env = {"TINGXIE_HOME": str(home), "PATH": "/usr/bin:/bin"}

    def key(name: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "tingxie", "keys", "create", name],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {"Authorization": "Bearer " + out.split("secret (shown once, store it now): ")[1].strip()}

    alice, bob = key("alice"), key("bob")
    data = long_speech.read_bytes()
    with Server(home, env={"TINGXIE_MAX_QUEUED_JOBS_PER_KEY": "2"}) as srv:

        def post(n: int, headers: dict) -> httpx.Response:
            files = [("files", (f"f{i}.wav", data)) for i in range(n)]
            return httpx.post(f"{srv.url}/api/jobs", files=files, headers=headers, timeout=120)

        err = assert_error_shape(post(3, alice), 429)
        assert "limit is 2" in err["message"] and err["code"] == "too_many_jobs"
        assert job_ids(srv, alice) == set() and stored_files(srv) == []  # refused whole: nothing stored
        assert post(2, alice).status_code == 202
        r = post(1, alice)  # her two minute-long jobs are still queued or running
        err = assert_error_shape(r, 429)
        assert int(r.headers["Retry-After"]) > 0 and "2 queued or running" in err["message"]
        assert post(2, bob).status_code == 202  # one key cannot fill the queue for everyone
        assert len(job_ids(srv, alice)) == 2 and len(stored_files(srv)) == 4


# -- 4. nothing half-done ------------------------------------------------------------------
def test_refused_sync_requests_leave_nothing(tmp_path, speech):
    """Synchronous requests refused with 503 (interactive lane full) or 400 (not audio)
    leave no history row and no stored audio; the answered ones are all kept."""
    with Server(tmp_path / "busy", env={"TINGXIE_INTERACTIVE_QUEUE_LIMIT": "1"}) as srv:
        data = speech.read_bytes()

        def one(i: int) -> int:
            return httpx.post(
                f"{srv.url}/v1/audio/transcriptions",
                files={"file": (f"c{i}.wav", data)},
                data={"language": "en"},
                timeout=600,
            ).status_code

        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            codes = list(pool.map(one, range(24)))
        assert set(codes) <= {200, 503} and codes.count(503) > 0, codes
        r = httpx.post(
            f"{srv.url}/v1/audio/transcriptions",
            files={"file": ("noise.wav", b"RIFF\x24\x00\x00\x00WAVEfmt junk" * 50)},
        )
        assert_error_shape(r, 400)
        jobs = httpx.get(f"{srv.url}/api/jobs", params={"limit": 500}).json()["jobs"]
        assert [j["state"] for j in jobs] == ["done"] * codes.count(200)
        assert len(stored_files(srv)) == codes.count(200)


def test_kill_9_during_upload_write_leaves_no_part_file(tmp_path):
    """kill -9 while an upload is being written to storage, then restart: no `.part`
    file remains."""
    home = tmp_path / "crash"
    srv = Server(home, env={"TINGXIE_MAX_UPLOAD_MB": "600"}, wait_ready=False).start()
    try:
        big = tmp_path / "big.wav"
        with open(big, "wb") as f:
            f.truncate(400 * 1024 * 1024)
        audio = home / "audio"
        stop = threading.Event()

        def upload() -> None:
            try:
                with open(big, "rb") as f:
                    httpx.post(f"{srv.url}/api/jobs", files={"files": ("big.wav", f)}, timeout=300)
            except httpx.HTTPError:
                pass
            finally:
                stop.set()

        threading.Thread(target=upload, daemon=True).start()
        parts: list[Path] = []
        while not stop.is_set() and not parts:
            parts = list(audio.rglob("*.part"))
            time.sleep(0.002)
        assert parts, "the upload finished before its .part file was seen"
        srv.kill()
        assert all(p.exists() for p in parts)  # the crash left it
        srv.proc = None
        srv.start()
        assert list(audio.rglob("*.part")) == []
        assert "removed 1 partial upload" in srv.log.read_text()
    finally:
        srv.stop()


def test_chunked_upload_over_the_limit_is_413(server):
    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        for _ in range(64):  # 4 MB against a 2 MB limit, no Content-Length
            yield b"\x00" * 65536
        yield b"\r\n--b--\r\n"

    for path in ("/v1/audio/transcriptions", "/api/jobs"):
        r = httpx.post(
            server.url + path, content=body(), headers={"Content-Type": "multipart/form-data; boundary=b"}, timeout=60
        )
        err = assert_error_shape(r, 413)
        assert "2 MB" in err["message"], err


@pytest.mark.parametrize("length", [300, 5000])
def test_over_long_file_name_is_named(server, speech, length):
    name = "会议" + "x" * (length - 6) + ".wav"
    before = set(stored_files(server))
    for path, field in (("/v1/audio/transcriptions", "file"), ("/api/jobs", "files")):
        err = assert_error_shape(httpx.post(server.url + path, files={field: (name, speech.read_bytes())}), 400)
        assert "file name too long" in err["message"] and "255" in err["message"], err
    assert set(stored_files(server)) == before


def test_audio_that_is_no_longer_a_file_is_a_json_404(server, speech):
    r = httpx.post(
        f"{server.url}/api/jobs", files={"files": ("memo.wav", speech.read_bytes())}, data={"language": "en"}
    )
    job_id = r.json()["jobs"][0]["id"]
    wait_jobs(server.url, [job_id])
    (stored,) = [p for p in stored_files(server) if p.name.startswith(job_id)]
    stored.unlink()
    stored.mkdir()
    err = assert_error_shape(httpx.get(f"{server.url}/api/jobs/{job_id}/audio"), 404)
    assert err["code"] == "audio_gone" and str(server.home) not in err["message"]
    assert "Traceback" not in server.log.read_text()


def test_internal_failure_is_a_json_500_without_details(tmp_path):
    """Any unexpected exception (here: the database lost its jobs table) answers the JSON
    error shape; the log names the exception type, with no traceback, SQL or path."""
    with Server(tmp_path / "broken", wait_ready=False) as srv:
        db = sqlite3.connect(srv.home / "tingxie.db")
        db.execute("ALTER TABLE jobs RENAME TO jobs_gone")
        db.commit()
        db.close()
        err = assert_error_shape(httpx.get(f"{srv.url}/api/jobs"), 500)
        assert err["code"] == "internal_error" and "jobs" not in err["message"]
        log = srv.log.read_text()
        assert "OperationalError" in log
        assert "Traceback" not in log and "no such table" not in log
        after_start = log.split("\n", 1)[1]  # the first line is the start-up banner naming the data dir
        assert str(srv.home) not in after_start
