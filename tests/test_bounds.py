"""Issue 12: partly decodable audio is reported, not passed off as success; every request
has a bound (longest audio accepted, queued audio seconds for admission); long silence
costs no memory. Real files, a real `tingxie serve`, the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from server_fixture import Server, shared_models

from tingxie import audio as audio_mod
from tingxie import vad as vad_mod
from tingxie import windows as windows_mod
from tingxie.transcribe import prepare
from tingxie.types import AudioError, DecodeOptions, VadOptions

SENTENCE = "The patient was admitted on Tuesday and discharged three days later."
PARTLY = re.compile(r"decoded (\d+\.\d) s of (\d+\.\d) s declared")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory, synth_speech) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bounds")
    wav = synth_speech(SENTENCE, d / "speech.wav")
    data = wav.read_bytes()
    cut = d / "cut.wav"  # a recording whose upload stopped half way
    cut.write_bytes(data[: len(data) // 2])
    tiny = d / "tiny.wav"  # header and 0.03 s of samples: nothing usable
    tiny.write_bytes(data[:1000])
    mp3 = d / "speech.mp3"
    ffmpeg("-i", str(wav), "-c:a", "libmp3lame", "-b:a", "64k", str(mp3))
    flipped = bytearray(mp3.read_bytes())
    for i in range(2000, len(flipped), 97):  # bit rot through the file
        flipped[i] ^= 0xFF
    (d / "flipped.mp3").write_bytes(bytes(flipped))
    # 70 minutes, over the test server's 4000 s limit
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "4200", "-c:a", "flac", str(d / "long.flac"))
    # a long silent file (cheap to upload, some seconds of decoding and VAD)
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3600", "-c:a", "flac", str(d / "silent1h.flac"))
    return {
        "speech": wav,
        "cut": cut,
        "tiny": tiny,
        "flipped": d / "flipped.mp3",
        "long": d / "long.flac",
        "silent": d / "silent1h.flac",
    }


def assert_partly_decoded(warnings: list[str]) -> None:
    assert warnings, "a partly decodable file came back without a warning"
    m = next((m for m in map(PARTLY.search, warnings) if m), None)
    assert m, warnings
    assert float(m.group(1)) < float(m.group(2)) + 0.05


# -- without a server ------------------------------------------------------------------------
def test_streaming_scan_gives_the_same_windows_and_keeps_only_speech(files, tmp_path):
    """Decoding in chunks through the VAD gives exactly the windows of the whole-array
    path, while silence between speech is not kept in memory."""
    long_gap = tmp_path / "gap.wav"
    ffmpeg(
        "-i", str(files["speech"]), "-af", "apad=whole_dur=120", "-ar", "16000", "-ac", "1", str(tmp_path / "pad.wav")
    )
    (tmp_path / "list.txt").write_text(f"file '{tmp_path / 'pad.wav'}'\nfile '{files['speech']}'\n")
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(tmp_path / "list.txt"), str(long_gap))
    whole = audio_mod.decode(long_gap)
    probs = vad_mod.speech_probabilities(whole)
    old = windows_mod.pack(whole, vad_mod.detect_speech(whole, VadOptions(), probs=probs), DecodeOptions(), probs=probs)
    p = prepare(long_gap, DecodeOptions(), VadOptions())
    assert p.duration == pytest.approx(len(whole) / 16000)
    assert [[(x.start, x.length) for x in w.pieces] for w in p.windows] == [
        [(x.start, x.length) for x in w.pieces] for w in old
    ]
    assert all(np.array_equal(a.samples(), b.samples()) for a, b in zip(p.windows, old, strict=False))
    assert p.audio.kept_samples < len(whole) / 4  # about 2 x (speech + margins) of 128 s


def test_damaged_file_with_nothing_decodable_is_an_audio_error(files):
    with pytest.raises(AudioError, match=r"nothing decodable \(decoded 0\.0\d s of \d+\.\d s declared\)"):
        prepare(files["tiny"], DecodeOptions(), VadOptions())


def test_duration_limit_holds_when_the_header_understates_it(tmp_path):
    """A VBR MP3 without a Xing header: FFmpeg estimates its length from the first
    (loud, high-bitrate) frames at about a third of the truth; decoding still stops
    at the limit instead of trusting the estimate."""
    mp3 = tmp_path / "vbr.mp3"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=a=0.5:r=44100:c=white:d=5",
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=44100:cl=mono",
        "-filter_complex",
        "[0][1]concat=n=2:v=0:a=1,atrim=0:65",
        "-ac",
        "1",
        "-c:a",
        "libmp3lame",
        "-q:a",
        "0",
        "-write_xing",
        "0",
        str(mp3),
    )
    assert audio_mod.probe(mp3).duration < 30  # the header's story
    with pytest.raises(audio_mod.AudioTooLong, match="more than 30 s long; this server accepts at most 30 s"):
        prepare(mp3, DecodeOptions(), VadOptions(), max_seconds=30)


# -- through the real server --------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"TINGXIE_MAX_AUDIO_DURATION_S": "4000", "TINGXIE_MAX_QUEUED_AUDIO_S": "1800"}
    with Server(tmp_path_factory.mktemp("srv"), env=env) as s:
        yield s


def post(srv: Server, path: Path, fmt: str = "verbose_json", name: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{srv.url}/v1/audio/transcriptions",
        files={"file": (name or path.name, path.read_bytes())},
        data={"model": "whisper-base", "response_format": fmt, "language": "en"},
        timeout=600,
    )


@pytest.mark.parametrize("name", ["cut", "flipped"])
def test_partly_decodable_file_carries_a_warning(server, files, name):
    r = post(server, files[name])
    assert r.status_code == 200, r.text
    body = r.json()
    assert_partly_decoded(body.get("warnings", []))
    assert "admitted" in body["text"].lower() or "patient" in body["text"].lower()  # what survived is transcribed
    assert_partly_decoded(post(server, files[name], "json").json().get("warnings", []))
    job = httpx.get(f"{server.url}/api/jobs/{r.headers['X-Tingxie-Job']}/result", timeout=30).json()
    assert_partly_decoded(job.get("warnings", []))


def test_intact_file_has_no_warning(server, files):
    r = post(server, files["speech"])
    assert r.status_code == 200 and not r.json().get("warnings")


def test_nothing_decodable_is_a_400_naming_it(server, files):
    r = post(server, files["tiny"], name="voicemail.wav")
    assert r.status_code == 400, r.text
    msg = r.json()["error"]["message"]
    assert "voicemail.wav" in msg and "nothing decodable" in msg and "declared" in msg


def audio_files(home: Path) -> list[Path]:
    return [p for p in (home / "audio").rglob("*") if p.is_file()]


@pytest.mark.parametrize("endpoint", ["/v1/audio/transcriptions", "/api/jobs"])
def test_too_long_audio_is_refused_naming_the_limit_and_leaves_nothing(server, files, endpoint):
    field = "file" if endpoint.startswith("/v1") else "files"

    def jobs():
        return [j["id"] for j in httpx.get(f"{server.url}/api/jobs", params={"limit": 500}, timeout=30).json()["jobs"]]  # noqa: E731

    before, stored = jobs(), audio_files(server.home)
    r = httpx.post(
        server.url + endpoint,
        files={field: ("meeting.flac", files["long"].read_bytes())},
        data={"model": "whisper-base"},
        timeout=120,
    )
    assert r.status_code == 413, r.text
    msg = r.json()["error"]["message"]
    assert "meeting.flac" in msg and "4200 s" in msg and "at most 4000 s" in msg
    assert jobs() == before and audio_files(server.home) == stored  # no job row, no stored file


def test_admission_counts_queued_audio_seconds(server, files):
    """An hour of silence makes no windows, but it is an hour of decoding and VAD: with
    1800 s of queued audio allowed, a second request while it runs gets 503."""
    first: dict = {}
    t = threading.Thread(target=lambda: first.update(r=post(server, files["silent"], "json")))
    t.start()
    queued = 0.0
    while t.is_alive() and queued == 0.0:
        models = httpx.get(f"{server.url}/api/system", timeout=30).json()["models"]
        queued = max((m["queue"].get("queued_audio_s", 0.0) for m in models), default=0.0)
        time.sleep(0.05)
    assert queued >= 3600, "the hour-long request never showed as queued audio"
    r = post(server, files["speech"], "json")
    t.join()
    assert r.status_code == 503, r.text
    assert r.headers.get("Retry-After") and "audio" in r.json()["error"]["message"]
    assert first["r"].status_code == 200, first["r"].text
    assert post(server, files["speech"], "json").status_code == 200  # the budget is released


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_json_carries_the_warning(files, tmp_path):
    home = tmp_path / "home"
    shared_models(home)
    env = {**os.environ, "TINGXIE_HOME": str(home)}
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "tingxie", "transcribe", str(files["cut"]), "--format", "json", "-o", str(out), "-q"],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert_partly_decoded(json.loads((out / "cut.json").read_text())["warnings"])
    bad = subprocess.run(
        [sys.executable, "-m", "tingxie", "transcribe", str(files["tiny"]), "-o", str(out), "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode != 0 and "nothing decodable" in bad.stderr
