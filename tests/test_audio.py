"""Decoding real files in the formats users upload, and a clear error for each bad input."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from helpers import write_wav

from tingxie import audio
from tingxie.audio import StreamResampler, decode, pcm16_to_float, probe, resample
from tingxie.types import AudioError

TEXT = "Please transcribe this short sentence. It has two parts."


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory, synth_speech) -> Path:
    return synth_speech(TEXT, tmp_path_factory.mktemp("audio") / "speech.wav")


def ffmpeg(*args: str) -> bool:
    """Run ffmpeg; False when this build cannot do it (e.g. no encoder for a format)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    r = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], capture_output=True)
    return r.returncode == 0


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def best_lag(a: np.ndarray, b: np.ndarray, max_lag: int = 400) -> tuple[int, float]:
    """Lag (samples) and normalised correlation where `a` best matches `b`."""
    a, b = a[4000:36000], b[4000 - max_lag : 36000 + max_lag]
    scores = [float(np.dot(a, b[k : k + a.size])) for k in range(2 * max_lag + 1)]
    k = int(np.argmax(scores))
    seg = b[k : k + a.size]
    return k - max_lag, scores[k] / float(np.sqrt(np.dot(a, a) * np.dot(seg, seg)))


@pytest.mark.parametrize(
    "ext,args",
    [
        ("wav", []),
        ("mp3", ["-b:a", "64k"]),
        ("flac", []),
        ("ogg", ["-c:a", "libvorbis"]),
        ("opus", ["-c:a", "libopus"]),
        ("m4a", ["-c:a", "aac"]),
        ("webm", ["-c:a", "libopus"]),
        ("mp4", ["-f", "lavfi", "-i", "testsrc=d=8:s=64x64:r=5", "-c:v", "mpeg4", "-shortest"]),
    ],
)
def test_decodes_common_formats_to_same_speech(speech_wav: Path, tmp_path: Path, ext: str, args: list[str]) -> None:
    out = tmp_path / f"speech.{ext}"  # .mp4 is a video with a soundtrack
    if not ffmpeg("-i", str(speech_wav), *args, str(out)):
        pytest.skip(f"this ffmpeg cannot encode .{ext}")
    ref = read_wav(speech_wav)
    got = decode(out)
    assert got.dtype == np.float32 and got.ndim == 1
    # Encoder padding (AAC frames) may add a little; the duration must otherwise hold.
    assert abs(got.size - ref.size) / 16000 < 0.1
    lag, corr = best_lag(ref, got)
    assert abs(lag) <= 80, f"audio shifted by {lag} samples"  # 5 ms
    assert corr > 0.95


def test_stereo_44k_becomes_mono_16k_with_same_duration(speech_wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "stereo.wav"
    assert ffmpeg("-i", str(speech_wav), "-ac", "2", "-ar", "44100", str(out))
    info = probe(out)
    assert (info.sample_rate, info.channels, info.codec, info.format) == (44100, 2, "pcm_s16le", "wav")
    ref = read_wav(speech_wav)
    assert info.duration == pytest.approx(ref.size / 16000, abs=0.01)
    got = decode(out)
    assert abs(got.size - ref.size) <= 2
    lag, corr = best_lag(ref, got)
    assert lag == 0 and corr > 0.99
    assert np.abs(got).max() == pytest.approx(np.abs(ref).max(), rel=0.1)  # downmix keeps level


def tone_peaks(x: np.ndarray, freqs: list[int]) -> list[float]:
    """Spectrum magnitude at each frequency (1 s of 16 kHz audio: 1 Hz per bin)."""
    spectrum = np.abs(np.fft.rfft(x[:16000]))
    return [float(spectrum[f]) for f in freqs]


# 7.1 (8 channels) is a named layout; 9 and 10 are layouts swresample cannot remix (PyAV
# failed on 9 and 10 mixed down, and crashed the process on 7.1 kept apart).
@pytest.mark.parametrize("n", [3, 6, 8, 9, 10, 16])
def test_many_channel_files_mix_down_and_split_without_failing(tmp_path: Path, n: int) -> None:
    freqs = [200 + 150 * k for k in range(n)]
    path = tmp_path / f"ch{n}.wav"
    sines = [a for f in freqs for a in ("-f", "lavfi", "-i", f"sine=frequency={f}:duration=2:sample_rate=48000")]
    merge = "".join(f"[{k}]" for k in range(n)) + f"amerge=inputs={n}"
    assert ffmpeg(*sines, "-filter_complex", merge, "-c:a", "pcm_s16le", str(path))
    assert probe(path).channels == n
    mixed = decode(path)
    assert mixed.size == pytest.approx(32000, abs=32)
    peaks = tone_peaks(mixed, freqs)
    assert min(peaks) > 0.2 * max(peaks)  # every channel is in the mix
    if n > audio.MAX_CHANNELS:
        with pytest.raises(AudioError, match=f"has {n} channels; channels=split takes at most 8"):
            list(audio.decode_chunks(path, split=True))
        return
    (rows,) = list(audio.decode_chunks(path, split=True))
    assert rows.shape[0] == n
    for k, row in enumerate(rows):  # each channel alone, in its place
        peaks = tone_peaks(row, freqs)
        assert int(np.argmax(peaks)) == k and sorted(peaks)[-2] < 0.05 * peaks[k]


@pytest.mark.parametrize(
    "codec", ["pcm_u8", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le", "pcm_alaw", "flac"]
)
def test_every_sample_format_decodes_at_the_same_level(tmp_path: Path, codec: str) -> None:
    path = tmp_path / f"tone.{'flac' if codec == 'flac' else 'wav'}"
    tone = "sine=frequency=440:duration=1:sample_rate=22050"
    assert ffmpeg("-f", "lavfi", "-i", tone, "-af", "volume=4", "-ac", "2", "-c:a", codec, str(path))
    x = decode(path)
    assert x.size == 16000
    assert float(np.abs(x).max()) == pytest.approx(0.5, abs=0.02)  # sine's 1/8 full scale, ×4
    assert tone_peaks(x, [440])[0] > 0.9 * np.abs(np.fft.rfft(x)).max()


def test_a_rate_too_low_for_speech_is_refused_by_name(tmp_path: Path) -> None:
    """14400 samples at 1 Hz would resample to 4 hours of audio."""
    slow = write_wav(tmp_path / "slow.wav", np.zeros(14400, np.float32), rate=1)
    with pytest.raises(AudioError, match="^sample rate 1 Hz is below 4000 Hz: not speech audio$"):
        decode(slow)
    phone = write_wav(tmp_path / "phone.wav", np.sin(np.arange(8000) * 0.3) * 0.25, rate=8000)
    assert decode(phone).size == 16000  # telephone audio is fine


def test_bytes_and_file_objects_decode_like_paths(speech_wav: Path, tmp_path: Path) -> None:
    mp3 = tmp_path / "s.mp3"
    assert ffmpeg("-i", str(speech_wav), str(mp3))
    by_path = decode(mp3)
    np.testing.assert_array_equal(decode(mp3.read_bytes()), by_path)
    with mp3.open("rb") as f:
        np.testing.assert_array_equal(decode(f), by_path)
    np.testing.assert_array_equal(decode(str(mp3)), by_path)


def test_probe_reads_headers_only(speech_wav: Path, tmp_path: Path) -> None:
    m4a = tmp_path / "s.m4a"
    assert ffmpeg("-i", str(speech_wav), "-ar", "22050", str(m4a))
    info = probe(m4a)
    assert info.codec == "aac" and info.sample_rate == 22050 and info.channels == 1
    assert "mp4" in info.format
    assert info.duration == pytest.approx(read_wav(speech_wav).size / 16000, abs=0.05)


def test_growing_buffer_when_duration_is_unknown(speech_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container that understates its length must still decode completely."""
    monkeypatch.setattr(audio, "_MAX_RESERVE_S", 0.1)
    np.testing.assert_array_equal(decode(speech_wav), read_wav(speech_wav))


# ---- errors: each names its reason ------------------------------------------------------


def expect_error(source, reason: str, also_probe: bool = True) -> AudioError:
    with pytest.raises(AudioError) as e:
        decode(source)
    assert reason in str(e.value)
    if also_probe:  # reasons found before decoding are probe's too
        with pytest.raises(AudioError, match=re.escape(reason)):
            probe(source)
    return e.value


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.wav", "file not found")


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    (tmp_path / "empty.mp3").write_bytes(b"")
    expect_error(tmp_path / "empty.mp3", "file is empty (0 bytes)")
    expect_error(b"", "file is empty (0 bytes)")
    with pytest.raises(AudioError, match=re.escape("file is empty (0 bytes)")):
        decode(io.BytesIO(b""))


def test_random_bytes_are_not_audio(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(20000)
    (tmp_path / "random.wav").write_bytes(data)
    expect_error(tmp_path / "random.wav", audio.NOT_AUDIO)
    expect_error(data, audio.NOT_AUDIO)


def test_text_file_renamed_wav_is_not_audio_and_message_hides_content(tmp_path: Path) -> None:
    p = tmp_path / "notes.wav"
    p.write_text("Patient John Doe, confidential notes.\n" * 20)
    err = expect_error(p, audio.NOT_AUDIO)
    assert "John" not in str(err) and "confidential" not in str(err)


def test_directory_is_not_audio(tmp_path: Path) -> None:
    expect_error(tmp_path, audio.NOT_AUDIO)


@pytest.mark.parametrize("ext,keep", [("m4a", 0.5), ("flac", 0.02), ("opus", 0.02), ("mp3", 64)])
def test_truncated_files_are_corrupt(speech_wav: Path, tmp_path: Path, ext: str, keep: float) -> None:
    """Cut before any decodable audio (or, for mp4/m4a, before the index at the end)."""
    full = tmp_path / f"full.{ext}"
    if not ffmpeg("-i", str(speech_wav), str(full)):
        pytest.skip(f"this ffmpeg cannot encode .{ext}")
    data = full.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: int(len(data) * keep) if keep < 1 else int(keep)])
    expect_error(cut, audio.CORRUPT, also_probe=False)


def test_wav_header_without_samples(tmp_path: Path) -> None:
    p = tmp_path / "silent.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    expect_error(p, audio.NO_SAMPLES, also_probe=False)


def test_wav_cut_short_keeps_what_is_there(speech_wav: Path, tmp_path: Path) -> None:
    """A half-uploaded recording still transcribes: the decodable half is returned."""
    data, n = speech_wav.read_bytes(), read_wav(speech_wav).size
    p = tmp_path / "half.wav"
    p.write_bytes(data[: len(data) - 2 * n + 2 * (n // 2)])  # header + half the samples
    assert decode(p).size == n // 2


def test_video_without_sound(tmp_path: Path) -> None:
    p = tmp_path / "silent_video.mp4"
    if not ffmpeg("-f", "lavfi", "-i", "testsrc=d=1:s=64x64:r=5", "-c:v", "mpeg4", str(p)):
        pytest.skip("this ffmpeg cannot make an mp4 video")
    expect_error(p, "no audio stream (video without sound?)")


# ---- real-time helpers ------------------------------------------------------------------


def test_pcm16_to_float() -> None:
    b = np.array([0, 16384, -32768, 32767], "<i2").tobytes()
    np.testing.assert_allclose(pcm16_to_float(b), [0.0, 0.5, -1.0, 32767 / 32768])
    assert pcm16_to_float(b).dtype == np.float32
    with pytest.raises(AudioError, match="odd number of bytes"):
        pcm16_to_float(b[:-1])


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resample_keeps_speech_band_and_removes_aliases(rate: int) -> None:
    y = resample(tone(1000, rate, 2.0), rate)
    assert y.dtype == np.float32 and y.size == 32000
    mid = y[1000:-1000]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    spectrum = np.abs(np.fft.rfft(mid))
    assert abs(np.argmax(spectrum) * 16000 / mid.size - 1000) < 2
    if rate > 16000:  # a 10 kHz tone cannot exist at 16 kHz; it must vanish, not alias to 6 kHz
        assert np.sqrt(np.mean(resample(tone(10000, rate), rate)[500:-500] ** 2)) < 0.005


def test_stream_resampler_over_random_chunks_equals_one_shot() -> None:
    x = tone(440, 48000, 1.5) + tone(2500, 48000, 1.5) * 0.3
    r = StreamResampler(48000)
    rng = np.random.default_rng(1)
    out, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 3000))
        out.append(r.feed(x[i : i + n]))
        i += n
    out.append(r.flush())
    np.testing.assert_allclose(np.concatenate(out), resample(x, 48000), atol=1e-6)


def test_same_rate_is_passthrough() -> None:
    x = tone(300, 16000)
    np.testing.assert_array_equal(resample(x, 16000), x)
    np.testing.assert_array_equal(StreamResampler(16000).feed(x), x)


# ---- real recordings --------------------------------------------------------------------


@pytest.mark.eval
def test_real_corpus_durations_match_manifest(corpus_dir: Path) -> None:
    items = [json.loads(line) for line in (corpus_dir / "manifest.jsonl").read_text().splitlines() if line]
    assert items
    for item in items:
        path = corpus_dir / item["audio"]
        got = decode(path)
        assert got.size / 16000 == pytest.approx(item["duration_s"], abs=0.05), item["id"]
        assert np.isfinite(got).all() and np.abs(got).max() <= 1.0
        if os.path.splitext(item["audio"])[1] != ".mp3":  # mp3 headers only estimate
            assert probe(path).duration == pytest.approx(item["duration_s"], abs=0.05), item["id"]
