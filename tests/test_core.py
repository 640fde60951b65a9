"""Core pipeline: model assembly, device choice, windows, scheduler, transcription, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tingxie import device as device_mod
from tingxie import models as models_mod
from tingxie import windows as windows_mod
from tingxie.engine import WindowResult
from tingxie.manager import ModelManager
from tingxie.reference import FifoLock
from tingxie.scheduler import BATCH, INTERACTIVE, Overloaded, Scheduler
from tingxie.settings import Settings
from tingxie.transcribe import transcribe, transcribe_many
from tingxie.types import DecodeOptions, OptionsError, SpeechSpan, TextOptions, VadOptions

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path.home() / ".cache" / "tingxie" / "models"


def write_wav(path: Path, x: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


@pytest.fixture(scope="module")
def manager():
    models_mod.assemble_bundled(MODELS)
    m = ModelManager(Settings(home=MODELS.parent))
    yield m
    m.close()


@pytest.fixture(scope="module")
def sched(manager):
    return manager.scheduler()


@pytest.fixture(scope="module")
def english_wav(tmp_path_factory, synth_speech):
    d = tmp_path_factory.mktemp("speech")
    return synth_speech("The quick brown fox jumps over the lazy dog. Please call me tomorrow morning.", d / "fox.wav")


# -- models ----------------------------------------------------------------------------
def test_bundled_model_is_assembled_once_and_verified(tmp_path):
    d = models_mod.assemble_bundled(tmp_path)
    assert (d / "model.bin").stat().st_size == models_mod.BUNDLED_SIZE
    assert models_mod._sha256(d / "model.bin") == models_mod.BUNDLED_SHA256
    for f in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert (d / f).is_file()
    mtime = (d / "model.bin").stat().st_mtime_ns
    assert models_mod.assemble_bundled(tmp_path) == d
    assert (d / "model.bin").stat().st_mtime_ns == mtime  # not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{models_mod.BUNDLED}.tmp")]


def test_half_written_model_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setattr(models_mod, "BUNDLED_SHA256", "0" * 64)
    with pytest.raises(OptionsError, match="sha256"):
        models_mod.assemble_bundled(tmp_path)
    assert not (tmp_path / models_mod.BUNDLED).exists()
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]


def test_concurrent_assembly_gives_one_model(tmp_path):
    errors = []

    def run():
        try:
            models_mod.assemble_bundled(tmp_path)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert models_mod.is_model_dir(tmp_path / models_mod.BUNDLED)


def test_model_paths_and_unknown_models(tmp_path):
    with pytest.raises(OptionsError, match="unknown model"):
        models_mod.resolve("whisper-huge", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OptionsError, match="not a model directory tingxie knows"):
        models_mod.resolve(str(tmp_path / "empty"), tmp_path)
    model_id, path = models_mod.resolve(str(MODELS / models_mod.BUNDLED), tmp_path)
    assert path == (MODELS / models_mod.BUNDLED).resolve()


# -- device ----------------------------------------------------------------------------
def test_device_choice_on_cpu():
    c = device_mod.choose()
    assert (c.device, c.compute_type) == ("cpu", "int8")
    assert c.instances * c.threads <= max(1, device_mod.cpu_cores())
    with pytest.raises(OptionsError, match="no CUDA device"):
        device_mod.choose("cuda")
    with pytest.raises(OptionsError, match="needs a GPU"):
        device_mod.choose("cpu", "float16")
    with pytest.raises(OptionsError, match="unknown device"):
        device_mod.choose("tpu")


def test_mps_falls_back_to_cpu_with_a_note():
    c = device_mod.choose("mps")
    assert c.device == "cpu" and "Metal" in c.note


def test_device_choice_with_gpus(monkeypatch):
    # A GPU cannot exist here: stand in for CTranslate2's device count only.
    monkeypatch.setattr(device_mod, "cuda_device_count", lambda: 2)
    c = device_mod.choose()
    assert (c.device, c.index, c.compute_type) == ("cuda", 0, "float16")
    assert device_mod.choose("cuda:1", "int8_float16").index == 1
    with pytest.raises(OptionsError, match="only 2 CUDA"):
        device_mod.choose("cuda:2")


# -- windows ---------------------------------------------------------------------------
def test_packing_keeps_windows_under_30s_and_maps_time_back():
    sr = 16000
    audio = np.zeros(sr * 120, np.float32)
    spans = [SpeechSpan(s * sr, (s + 7) * sr) for s in range(0, 110, 10)]  # 7 s speech, 3 s pause
    wins = windows_mod.pack(audio, spans)
    assert all(w.seconds <= windows_mod.PACK_LIMIT_S for w in wins)
    assert sum(w.num_samples for w in wins) == sum(s.end - s.start for s in spans)
    w = wins[0]
    # 8 s into the packed window is 1 s into the second span (which starts at 10 s)
    assert w.to_absolute(8.0) == pytest.approx(11.0)
    assert w.to_absolute(7.0, is_end=True) == pytest.approx(7.0)
    assert w.to_absolute(7.0) == pytest.approx(10.0)
    rest = windows_mod.remainder(w, 11.0)
    assert rest.start == pytest.approx(11.0) and rest.num_samples == w.num_samples - 8 * sr


# -- scheduler -------------------------------------------------------------------------
def test_windows_of_different_requests_share_batches(manager, english_wav):
    from tingxie import audio

    s = Scheduler(manager.engine("whisper-base"), max_batch_size=4, max_wait_ms=50, instances=1)
    try:
        x = audio.decode(english_wav)
        futs = [s.submit(windows_mod.pack(x, [SpeechSpan(0, len(x))], DecodeOptions(language="en"))[0], BATCH, owner=f"req-{i}") for i in range(4)]
        texts = [f.result().segments[0].text.lower() for f in futs]
        assert all("fox" in t for t in texts)
        assert max(s.stats.batch_sizes) > 1
    finally:
        s.close()


def test_interactive_lane_goes_first_and_batch_owners_share_fairly(manager, english_wav):
    from tingxie import audio

    x = audio.decode(english_wav)
    short = lambda: windows_mod.pack(x, [SpeechSpan(0, len(x) // 3)], DecodeOptions(language="en", beam_size=1))[0]  # noqa: E731
    s = Scheduler(manager.engine("whisper-base"), max_batch_size=1, max_wait_ms=0, instances=1)
    order: list[str] = []
    try:
        blocker = s.submit(short(), BATCH, "big")  # occupies the instance
        big = [s.submit(short(), BATCH, "big") for _ in range(4)]
        other = s.submit(short(), BATCH, "other")
        urgent = s.submit(short(), INTERACTIVE, "sync")
        for name, f in [("big", f) for f in big] + [("other", other), ("urgent", urgent)]:
            f.add_done_callback(lambda _f, n=name: order.append(n))
        for f in [blocker, *big, other, urgent]:
            f.result()
        assert order[0] == "urgent"
        assert order.index("other") <= 2  # not behind all of the big batch
    finally:
        s.close()


def test_interactive_admission_control(manager, english_wav):
    from tingxie import audio

    x = audio.decode(english_wav)
    s = Scheduler(manager.engine("whisper-base"), max_batch_size=1, instances=1, interactive_limit=1)
    try:
        w = windows_mod.pack(x, [SpeechSpan(0, len(x) // 4)], DecodeOptions(language="en", beam_size=1))[0]
        futs = [s.submit(w, INTERACTIVE, "a", check_capacity=True)]
        with pytest.raises(Overloaded):
            for _ in range(5):
                futs.append(s.submit(w, INTERACTIVE, "b", check_capacity=True))
        for f in futs:
            f.result()
    finally:
        s.close()


class _OomEngine:
    """Stands in for a GPU that runs out of memory on batches larger than one."""

    def __init__(self, real):
        self.real = real
        self.calls: list[int] = []

    def batch_key(self, w):
        return self.real.batch_key(w)

    def prompt_prefix(self, w):
        return self.real.prompt_prefix(w)

    def decode(self, windows):
        self.calls.append(len(windows))
        if len(windows) > 1:
            raise RuntimeError("CUDA failed with error out of memory")
        return self.real.decode(windows)


def test_gpu_out_of_memory_splits_the_batch_without_failing(manager, english_wav):
    from tingxie import audio

    x = audio.decode(english_wav)
    fake = _OomEngine(manager.engine("whisper-base"))
    s = Scheduler(fake, max_batch_size=4, max_wait_ms=100, instances=1)
    try:
        w = lambda: windows_mod.pack(x, [SpeechSpan(0, len(x) // 3)], DecodeOptions(language="en", beam_size=1))[0]  # noqa: E731
        futs = [s.submit(w(), BATCH, f"r{i}") for i in range(4)]
        assert all(isinstance(f.result(), WindowResult) for f in futs)
        assert s.stats.oom_splits >= 1 and 1 in fake.calls and max(fake.calls) > 1
    finally:
        s.close()


# -- pipeline --------------------------------------------------------------------------
def test_transcribes_english_with_timestamps_and_words(sched, english_wav):
    t = transcribe(english_wav, sched, DecodeOptions(word_timestamps=True), VadOptions(), TextOptions())
    assert t.language == "en"
    text = t.text.lower()
    assert "quick brown fox" in text and "lazy dog" in text
    assert 0 <= t.segments[0].start < t.segments[-1].end <= t.duration + 0.05
    words = [w for s in t.segments for w in (s.words or [])]
    assert len(words) >= 10
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    assert t.to_dict()["segments"][0]["raw_text"]


def test_silent_and_noise_files_give_no_text(sched, tmp_path):
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000 * 20, np.float32))
    hiss = write_wav(tmp_path / "hiss.wav", np.random.default_rng(0).normal(0, 0.002, 16000 * 20).astype(np.float32))
    for f in (silent, hiss):
        t = transcribe(f, sched, DecodeOptions(), VadOptions(), TextOptions())
        assert t.text == "" and t.segments == []
    t = transcribe(silent, sched, DecodeOptions(), None, TextOptions())  # --vad off: Whisper's own silence rule
    assert t.text.strip() == ""


def test_long_speech_is_cut_below_max_segment_and_timestamps_stay_absolute(sched, tmp_path, synth_speech):
    a = synth_speech("Good morning. This is the first recording.", tmp_path / "a.wav")
    from tingxie import audio

    x = audio.decode(a)
    gap = np.zeros(16000 * 40, np.float32)
    f = write_wav(tmp_path / "gap.wav", np.concatenate([gap, x, gap, x]))
    t = transcribe(f, sched, DecodeOptions(language="en"), VadOptions(), TextOptions())
    spans = [(s.start, s.end) for s in t.segments]
    second = 80 + len(x) / 16000
    assert any(39 < a < 41 for a, _ in spans), spans  # first speech at 40 s
    assert any(second - 1 < a < second + 1 for a, _ in spans), spans
    # no subtitle runs through the 40 s pause, although both were packed into one window
    assert all(not (a < second - 5 and b > second - 35) for a, b in spans), spans


def test_cross_file_batching_returns_every_file(sched, tmp_path, synth_speech):
    sentences = {"window": "Please open the window before you leave the office.", "green": "My favourite colour is green, like the trees in spring.",
                 "london": "The train to London leaves at noon every day.", "coffee": "We need to buy more coffee and milk for the kitchen.",
                 "football": "The children are playing football in the park."}
    files = [synth_speech(text, tmp_path / f"f{i}.wav") for i, text in enumerate(sentences.values())]
    before = sched.stats.batches
    outs = sorted(transcribe_many(files, sched, DecodeOptions(language="en"), VadOptions(), TextOptions(itn=False)), key=lambda o: o.index)
    assert [o.index for o in outs] == list(range(5))
    for o, word in zip(outs, sentences):
        assert o.error is None and word in o.transcript.text.lower(), (word, o.transcript.text)
    assert sched.stats.batches - before < 5  # fewer batches than files: they were shared


def test_hotwords_are_accepted_and_bias_the_decoder(sched, tmp_path, synth_speech):
    f = synth_speech("Please send the report to Xiaoming Wang.", tmp_path / "h.wav")
    t = transcribe(f, sched, DecodeOptions(language="en", hotwords=["Xiaoming Wang"]), VadOptions(), TextOptions())
    assert "xiaoming" in t.text.lower().replace(" ", "")


def test_fifo_lock_serves_in_arrival_order():
    lock, order, threads = FifoLock(), [], []

    def take(k: int) -> None:
        with lock:
            order.append(k)

    with lock:
        for k in range(5):
            t = threading.Thread(target=take, args=(k,))
            t.start()
            threads.append(t)
            time.sleep(0.05)  # k is waiting before k + 1 arrives
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_serial_reference_mode_serves_whole_requests_in_arrival_order(manager, english_wav, tmp_path, synth_speech):
    """`tingxie serve --serial`, the comparison baseline: one request at a time, first
    come first served (a later interactive request waits), decoded by faster-whisper's
    sequential transcribe, with the same Transcript and text stage as tingxie."""
    from tingxie.reference import ReferenceWhisper

    sched = Scheduler(ReferenceWhisper(manager.load().engine), max_batch_size=1, instances=1)
    long = synth_speech("The train to London leaves at noon every day. " * 4, tmp_path / "long.wav")
    done: dict[str, float] = {}
    outs: dict[str, object] = {}

    def run(name, path, lane):
        outs[name] = transcribe(path, sched, DecodeOptions(language="en"), VadOptions(), TextOptions(), lane=lane)
        done[name] = time.monotonic()

    a = threading.Thread(target=run, args=("long", long, BATCH))
    a.start()
    time.sleep(0.2)
    b = threading.Thread(target=run, args=("short", english_wav, INTERACTIVE))
    b.start()
    a.join(120)
    b.join(120)
    sched.close()
    assert done["long"] < done["short"]
    assert "london" in outs["long"].text.lower() and "fox" in outs["short"].text.lower()
    assert outs["short"].options["serial"] and outs["short"].segments[0].end > outs["short"].segments[0].start
    assert sched.stats.batches == 0  # nothing went through the batcher


# -- CLI -------------------------------------------------------------------------------
def _cli(*args, home: Path):
    env = {"TINGXIE_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "tingxie", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / models_mod.BUNDLED).symlink_to(MODELS / models_mod.BUNDLED)
    return home


def test_cli_writes_one_output_per_file_and_reports_bad_ones(tmp_path, english_wav):
    home = _home(tmp_path)
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    r = _cli("transcribe", str(english_wav), str(bad), str(empty), str(tmp_path / "missing.m4a"), "--format", "srt,json", "-o", str(out), home=home)
    assert r.returncode == 1
    assert "files ok: 1, failed: 3" in r.stdout and "RTF" in r.stdout
    assert "notes.wav" in r.stderr and "not an audio file" in r.stderr
    assert "empty.mp3" in r.stderr and "empty" in r.stderr
    assert "missing.m4a" in r.stderr and "not found" in r.stderr
    srt = (out / "fox.srt").read_text()
    assert srt.startswith("1\n00:00:") and "fox" in srt.lower()
    d = json.loads((out / "fox.json").read_text())
    assert d["language"] == "en" and d["segments"][0]["raw_text"] and d["rtf"] > 0
    assert not (out / "notes.srt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "docx"], "unknown output format"),
        (["--language", "klingon"], "unknown language"),
        (["--beam-size", "0"], "beam size"),
        (["--vad-max-segment-s", "45"], "vad max segment"),
        (["--device", "tpu"], "unknown device"),
    ],
)
def test_cli_refuses_bad_options_before_work(tmp_path, english_wav, args, message):
    r = _cli("transcribe", str(english_wav), *args, "-o", str(tmp_path / "o"), home=_home(tmp_path))
    assert r.returncode == 2 and message in r.stderr
    assert not (tmp_path / "o" / "fox.txt").exists()


def test_cli_models_lists_the_bundled_model(tmp_path):
    r = _cli("models", home=_home(tmp_path))
    assert r.returncode == 0 and "whisper-base" in r.stdout and "ready" in r.stdout and "device: cpu" in r.stdout


def test_packing_cuts_long_spans_at_pauses_to_fill_windows():
    sr = 16000
    audio = np.zeros(sr * 60, np.float32)
    probs = np.full(len(audio) // 512, 0.9, np.float32)
    for pause_s in (12.0, 20.0, 40.0):  # pauses inside the second span
        probs[int(pause_s * sr) // 512 : int((pause_s + 0.6) * sr) // 512] = 0.02
    spans = [SpeechSpan(0, 5 * sr), SpeechSpan(6 * sr, 34 * sr), SpeechSpan(35 * sr, 50 * sr)]
    wins = windows_mod.pack(audio, spans, probs=probs)
    assert wins[0].seconds > 15  # filled up to the pause at 20 s instead of closing at 5 s
    first_cut = wins[0].pieces[-1]
    assert 20.0 <= (first_cut.start + first_cut.length) / sr <= 20.6
    assert sum(w.num_samples for w in wins) == sum(s.end - s.start for s in spans)
    assert all(w.seconds <= windows_mod.PACK_LIMIT_S for w in wins)
