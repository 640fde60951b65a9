"""channels=split: a call recording (agent on one channel, customer on the other) comes
back as a dialogue, each speaker's text on its own channel label, through the CLI, the
OpenAI endpoint and a job; and what split does with files that have nothing to split."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers import MODELS, ROOT, write_call, write_wav
from server_fixture import Server

from tingxie import audio as audio_mod
from tingxie import models as models_mod
from tingxie import output
from tingxie.bench.score import error_rate
from tingxie.transcribe import prepare_channels
from tingxie.types import AudioError, Channel, DecodeOptions, Segment, Transcript, VadOptions

openai = pytest.importorskip("openai")

SR = 16000
CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")


@pytest.fixture(scope="module")
def call(corpus_dir, tmp_path_factory) -> tuple[Path, dict[int, tuple[str, str]]]:
    """The stereo call (helpers.CALL_TURNS) and, per channel, (language, reference text)."""
    path = tmp_path_factory.mktemp("call") / "call.wav"
    return path, write_call(corpus_dir, path)


def by_channel(segments: list[dict]) -> dict[int, str]:
    texts: dict[int, list[str]] = {}
    for s in segments:
        texts.setdefault(s["channel"], []).append(s["text"])
    return {c: " ".join(t) for c, t in texts.items()}


def assert_each_speaker_on_own_label(segments: list[dict], refs: dict[int, tuple[str, str]]) -> None:
    """Each channel's text is its speaker's (loose error bound), and holds nothing of
    the other speaker's language; segments come in time order."""
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts), starts
    texts = by_channel(segments)
    assert set(texts) == {1, 2}, texts
    for channel, (lang, ref) in refs.items():
        rate = error_rate([ref], [texts[channel]], lang)
        assert rate <= 0.35, f"CH{channel} ({lang}) error rate {rate:.0%}: {texts[channel]!r} vs {ref!r}"
    assert not LATIN.search(texts[1]), f"English on the Mandarin speaker's label: {texts[1]!r}"
    assert not CJK.search(texts[2]), f"Chinese on the English speaker's label: {texts[2]!r}"
    # the customer's answer lies between the agent's two turns
    assert all(5.5 < s["start"] and s["end"] < 9.5 for s in segments if s["channel"] == 2), segments


def assert_dialogue(text: str) -> None:
    lines = text.strip().splitlines()
    assert [line[:5] for line in lines] == ["CH1: ", "CH2: ", "CH1: "], text


def assert_labelled_cues(srt: str, vtt: str) -> None:
    cue_texts = [block.splitlines()[2] for block in srt.strip().split("\n\n")]
    assert cue_texts and all(t.startswith(("CH1: ", "CH2: ")) for t in cue_texts), srt
    assert any(t.startswith("CH2: ") for t in cue_texts), srt
    assert vtt.startswith("WEBVTT") and "<v CH1>CH1: " in vtt and "<v CH2>CH2: " in vtt, vtt


# -- the command line ----------------------------------------------------------------------
def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / models_mod.BUNDLED).symlink_to(MODELS / models_mod.BUNDLED)
    return home


@pytest.mark.eval
def test_cli_split_puts_each_speaker_on_its_own_label(call, corpus_dir, tmp_path):
    path, refs = call
    mono = corpus_dir / "funasr_asr_example.wav"
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "tingxie", "transcribe", str(path), str(mono), "--channels", "split"]
        + ["--format", "json,srt,vtt,txt", "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        env={"TINGXIE_HOME": str(_home(tmp_path)), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads((out / "call.json").read_text())
    assert_each_speaker_on_own_label(d["segments"], refs)
    assert [(c["channel"], c["language"]) for c in d["channels"]] == [(1, "zh"), (2, "en")]
    assert_dialogue(d["text"])
    assert (out / "call.txt").read_text() == d["text"] + "\n"
    assert_labelled_cues((out / "call.srt").read_text(), (out / "call.vtt").read_text())
    # a mono file has nothing to split: transcribed as it is, and the result says so
    m = json.loads((out / "funasr_asr_example.json").read_text())
    assert "channels" not in m and all("channel" not in s for s in m["segments"])
    assert error_rate(["欢迎大家来体验达摩院推出的语音识别模型"], [m["text"]], "zh") < 0.3 and "CH" not in m["text"]
    assert m["warnings"] == ["channels=split: the audio has one channel; transcribed as it is"]


# -- the server: OpenAI endpoint and jobs --------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("srv")) as s:
        yield s


@pytest.mark.eval
def test_openai_client_split_verbose_json(server, call):
    path, refs = call
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=300)
    with open(path, "rb") as f:
        v = c.audio.transcriptions.create(
            model="whisper-base", file=f, response_format="verbose_json", extra_body={"channels": "split"}
        )
    d = v.model_dump()
    assert_each_speaker_on_own_label(d["segments"], refs)
    assert [x["channel"] for x in d["channels"]] == [1, 2]
    assert_dialogue(v.text)
    with open(path, "rb") as f:
        srt = c.audio.transcriptions.create(
            model="whisper-base", file=f, response_format="srt", extra_body={"channels": "split"}
        )
    with open(path, "rb") as f:
        mixed = c.audio.transcriptions.create(model="whisper-base", file=f, response_format="verbose_json")
    assert not mixed.text.startswith("CH") and "channels" not in mixed.model_dump()
    assert srt.strip().splitlines()[2].startswith("CH1: ")


def test_split_refuses_what_it_cannot_do(server, tmp_path):
    wav = write_wav(tmp_path / "s.wav", np.zeros((SR, 2), np.float32))
    url = f"{server.url}/v1/audio/transcriptions"
    r = httpx.post(url, files={"file": ("s.wav", wav.read_bytes())}, data={"channels": "both"}, timeout=60)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "option channels must be 'mix' or 'split', not 'both'"
    r = httpx.post(
        url, files={"file": ("s.wav", wav.read_bytes())}, data={"channels": "split", "stream": "true"}, timeout=60
    )
    assert r.status_code == 400 and r.json()["error"]["message"] == "stream=true takes channels=mix, not 'split'"
    ten = write_wav(tmp_path / "ten.wav", np.zeros((SR, 10), np.float32)).read_bytes()
    r = httpx.post(url, files={"file": ("ten.wav", ten)}, data={"channels": "split"}, timeout=60)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "ten.wav: has 10 channels; channels=split takes at most 8"


@pytest.mark.eval
def test_job_split_result_formats_and_history(server, call):
    path, refs = call
    r = httpx.post(
        f"{server.url}/api/jobs", files={"files": ("call.wav", path.read_bytes())}, data={"channels": "split"}
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["jobs"][0]["id"]
    deadline = time.time() + 600
    while (job := httpx.get(f"{server.url}/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.time() < deadline, "job did not finish"
        time.sleep(1)
    assert job["state"] == "done", job
    assert job["options"]["channels"] == "split"
    assert_each_speaker_on_own_label(job["result"]["segments"], refs)
    result = f"{server.url}/api/jobs/{job_id}/result"
    txt = httpx.get(result, params={"format": "txt"}).text
    assert_dialogue(txt)
    assert_labelled_cues(
        httpx.get(result, params={"format": "srt"}).text, httpx.get(result, params={"format": "vtt"}).text
    )
    listed = httpx.get(f"{server.url}/api/jobs", params={"q": "CH2"}).json()["jobs"]
    assert job_id in [j["id"] for j in listed]
    assert next(j for j in listed if j["id"] == job_id)["preview"].startswith("CH1: ")


# -- without the model ----------------------------------------------------------------------
def test_outputs_label_each_channel():
    t = Transcript(
        language="zh",
        duration=9.0,
        segments=[
            Segment(0, 0.5, 2.0, "您好，请问有什么可以帮您？", "您好请问有什么可以帮您", channel=1),
            Segment(1, 2.5, 4.0, "I'd like to check my bill.", "I'd like to check my bill.", channel=2),
            Segment(2, 4.2, 5.0, "My card was charged twice.", "My card was charged twice.", channel=2),
            Segment(3, 5.5, 7.0, "好的，请稍等。", "好的请稍等", channel=1),
        ],
        channels=[Channel(1, "zh", 0.99), Channel(2, "en", 0.9)],
    )
    assert output.to_txt(t) == (
        "CH1: 您好，请问有什么可以帮您？\nCH2: I'd like to check my bill. My card was charged twice.\nCH1: 好的，请稍等。\n"
    )
    srt = output.to_srt(t)
    assert "00:00:02,500 --> 00:00:04,000\nCH2: I'd like to check my bill.\n" in srt
    assert "00:00:04.200 --> 00:00:05.000\n<v CH2>CH2: My card was charged twice.\n" in output.to_vtt(t)
    d = json.loads(output.to_json(t))
    assert [s["channel"] for s in d["segments"]] == [1, 2, 2, 1]
    assert d["channels"][1] == {"channel": 2, "language": "en", "language_probability": 0.9}
    assert Transcript.from_dict(d).to_dict() == t.to_dict()  # the history keeps the channels
    mixed = Transcript("zh", 1.0, [Segment(0, 0.0, 1.0, "好的。", "好的")])
    assert "channels" not in mixed.to_dict() and "channel" not in mixed.to_dict()["segments"][0]
    assert output.to_srt(mixed).splitlines()[2] == "好的。"


def test_split_decoding_keeps_channels_apart_and_bounded(corpus_dir, tmp_path):
    """One decoding pass feeds each channel's VAD; each channel keeps only the audio
    near its own speech, however long the call."""
    speech = audio_mod.decode(corpus_dir / "deepspeech_LDC93S1.wav")
    left, right = np.zeros(240 * SR, np.float32), np.zeros(240 * SR, np.float32)
    left[10 * SR : 10 * SR + speech.size] = speech
    right[200 * SR : 200 * SR + speech.size] = speech
    pc = prepare_channels(
        write_wav(tmp_path / "long.wav", np.stack([left, right], axis=1)), DecodeOptions(), VadOptions()
    )
    assert pc.warnings == [] and pc.duration == pytest.approx(240, abs=0.01)
    (a,), (b,) = pc.channels[0].windows, pc.channels[1].windows
    assert 9 < a.start < 11 and 199 < b.start < 201
    for p in pc.channels:  # speech plus the VAD's margins, not four minutes
        assert p.audio.kept_samples < 12 * SR, p.audio.kept_samples


def test_nothing_to_split_is_said(tmp_path):
    tone = (0.3 * np.sin(np.arange(SR * 2) * 2 * np.pi * 440 / SR)).astype(np.float32)
    mono = prepare_channels(write_wav(tmp_path / "mono.wav", tone), DecodeOptions(), VadOptions())
    assert len(mono.channels) == 1
    assert mono.warnings == ["channels=split: the audio has one channel; transcribed as it is"]
    twice = prepare_channels(
        write_wav(tmp_path / "dual.wav", np.stack([tone, tone], axis=1)), DecodeOptions(), VadOptions()
    )
    assert len(twice.channels) == 1
    assert twice.warnings == ["channels=split: the audio's 2 channels are the same; transcribed once"]
    apart = prepare_channels(write_wav(tmp_path / "st.wav", np.stack([tone, 0 * tone], axis=1)), DecodeOptions(), None)
    assert len(apart.channels) == 2 and apart.warnings == []
    assert np.abs(apart.channels[0].audio).max() > 0.2 and np.abs(apart.channels[1].audio).max() == 0


def test_too_many_channels_is_an_audio_error(tmp_path):
    nine = write_wav(tmp_path / "nine.wav", np.zeros((SR, 9), np.float32))
    with pytest.raises(AudioError, match="has 9 channels; channels=split takes at most 8"):
        list(audio_mod.decode_chunks(nine, split=True))
