"""File transcription end to end on the real model: audio → VAD → windows → batched
decode → text; and the serial reference pipeline it is compared with."""

from __future__ import annotations

import threading
import time

import numpy as np
from helpers import wait_until, write_wav

from tingxie.scheduler import BATCH, INTERACTIVE, Scheduler
from tingxie.server.openai_api import verbose_json
from tingxie.text import s2t, t2s
from tingxie.transcribe import transcribe, transcribe_many
from tingxie.types import DecodeOptions, TextOptions, VadOptions


def test_transcribes_english_with_timestamps_and_words(sched, english_wav):
    t = transcribe(english_wav, sched, DecodeOptions(word_timestamps=True), VadOptions(), TextOptions())
    assert t.language == "en"
    text = t.text.lower()
    assert "quick brown fox" in text and "lazy dog" in text
    assert 0 <= t.segments[0].start < t.segments[-1].end <= t.duration + 0.05
    words = [w for s in t.segments for w in (s.words or [])]
    assert len(words) >= 10
    assert all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))
    assert t.to_dict()["segments"][0]["raw_text"]


def test_words_follow_the_requested_script(sched, corpus_dir):
    """verbose_json's words are in the script the request asked for, as the segment text
    is (Whisper writes 還有, 一個 in Mandarin it reads as Simplified; issue 28 §4)."""
    clip = corpus_dir / "aishell_sample_BAC009S0150W0133.wav"
    for script, convert in (("hans", t2s), ("hant", s2t)):
        opts = TextOptions(itn=False, zh_script=script)
        t = transcribe(clip, sched, DecodeOptions(language="zh", word_timestamps=True), VadOptions(), opts)
        words = verbose_json(t, "transcribe", True)["words"]
        assert words, "no words"
        assert all(convert(w["word"]) == w["word"] for w in words), (script, words)
        said = "".join(c for w in words for c in w["word"] if c.isalnum())  # marks are the text stage's
        assert said == "".join(c for c in t.text if c.isalnum()), (said, t.text)


def test_silent_and_noise_files_give_no_text(sched, tmp_path):
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000 * 20, np.float32))
    hiss = write_wav(tmp_path / "hiss.wav", np.random.default_rng(0).normal(0, 0.002, 16000 * 20).astype(np.float32))
    for f in (silent, hiss):
        t = transcribe(f, sched, DecodeOptions(), VadOptions(), TextOptions())
        assert t.text == "" and t.segments == []
    # --vad off: digital silence is not even decoded (Whisper would decode it five times)
    t = transcribe(silent, sched, DecodeOptions(), None, TextOptions())
    assert t.text == "" and t.options["windows"] == {"count": 0, "decoded": 0}


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
    sentences = {
        "window": "Please open the window before you leave the office.",
        "green": "My favourite colour is green, like the trees in spring.",
        "london": "The train to London leaves at noon every day.",
        "coffee": "We need to buy more coffee and milk for the kitchen.",
        "football": "The children are playing football in the park.",
    }
    files = [synth_speech(text, tmp_path / f"f{i}.wav") for i, text in enumerate(sentences.values())]
    before = sched.stats.batches
    outs = sorted(
        transcribe_many(files, sched, DecodeOptions(language="en"), VadOptions(), TextOptions(itn=False)),
        key=lambda o: o.index,
    )
    assert [o.index for o in outs] == list(range(5))
    for o, word in zip(outs, sentences, strict=False):
        assert o.error is None and word in o.transcript.text.lower(), (word, o.transcript.text)
    assert sched.stats.batches - before < 5  # fewer batches than files: they were shared


def test_hotwords_bias_the_decoder(sched, tmp_path, synth_speech):
    """Names the model cannot spell unaided come out right when given as hotwords; the
    control run without them shows they were not spelled right anyway."""
    names = {
        "Siobhan Nguyen": "Please send the report to Siobhan Nguyen.",
        "Ruairi Coughlan": "Ask Ruairi Coughlan to sign the contract.",
    }
    for i, (name, sentence) in enumerate(names.items()):
        f = synth_speech(sentence, tmp_path / f"h{i}.wav")
        plain = transcribe(f, sched, DecodeOptions(language="en"), VadOptions(), TextOptions()).text
        biased = transcribe(f, sched, DecodeOptions(language="en", hotwords=[name]), VadOptions(), TextOptions()).text
        assert name.lower() not in plain.lower(), plain  # the control: unaided, the model misspells it
        assert name.lower() in biased.lower(), biased


def test_a_long_prompt_leaves_a_short_clip_its_text(sched, tmp_path, synth_speech):
    """The prompt counts in CTranslate2's max_length: a 90-token list of names once left
    a 2 s clip no room to generate (an error, no transcript)."""
    f = synth_speech("Please call the office.", tmp_path / "short.wav")
    names = "Dashwood, Norland, Marianne, Elinor, Willoughby, Brandon, Ferrars, Barton Park, Devonshire, " * 3
    t = transcribe(f, sched, DecodeOptions(language="en", initial_prompt=names), VadOptions(), TextOptions())
    assert "office" in t.text.lower(), t.text


def test_reference_pipeline_serves_whole_requests_in_arrival_order(manager, english_wav, tmp_path, synth_speech):
    """`tingxie serve --pipeline reference`, the comparison baseline: one request at a time, first
    come first served (a later interactive request waits), decoded by faster-whisper's
    sequential transcribe, with the same Transcript and text stage as tingxie."""
    from tingxie.engines.whisper.reference import ReferenceWhisper

    reference = ReferenceWhisper(manager.load().engine)
    sched = Scheduler(reference, max_batch_size=1, instances=1)
    long = synth_speech("The train to London leaves at noon every day. " * 4, tmp_path / "long.wav")
    done: dict[str, float] = {}
    outs: dict[str, object] = {}

    def run(name, path, lane):
        outs[name] = transcribe(path, sched, DecodeOptions(language="en"), VadOptions(), TextOptions(), lane=lane)
        done[name] = time.monotonic()

    a = threading.Thread(target=run, args=("long", long, BATCH))
    a.start()
    wait_until(lambda: reference.turn.holders == 1)  # the long request is being served
    b = threading.Thread(target=run, args=("short", english_wav, INTERACTIVE))
    b.start()
    a.join(120)
    b.join(120)
    sched.close()
    assert done["long"] < done["short"]
    assert "london" in outs["long"].text.lower() and "fox" in outs["short"].text.lower()
    assert outs["short"].options["serial"] and outs["short"].segments[0].end > outs["short"].segments[0].start
    assert sched.stats.batches == 0  # nothing went through the batcher


class _CountingEncoder:
    """The real CTranslate2 model, counting its encoder calls."""

    def __init__(self, model):
        self.model, self.encodes = model, 0

    def encode(self, *args, **kwargs):
        self.encodes += 1
        return self.model.encode(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_a_fallback_samples_again_without_encoding_again(sched, english_wav, monkeypatch):
    """Whisper's temperature fallback decodes the same audio up to five more times; the
    first pass's encoder output serves them all (re-encoding made a 1.5 s clip take 5 s)."""
    from tingxie.engines.whisper import result

    engine = sched.engine.engine  # the Whisper engine behind the recognizer
    counting = _CountingEncoder(engine.model)
    monkeypatch.setattr(engine, "model", counting)
    monkeypatch.setattr(result, "LOW_LOGPROB", 0.0)  # every decode "fails": all five temperatures
    t = transcribe(english_wav, sched, DecodeOptions(language="en"), VadOptions(), TextOptions())
    assert t.options["windows"] == {"count": 1, "decoded": 6}
    assert counting.encodes == 1
    assert "fox" in t.text.lower()  # the most likely of the six, as Whisper keeps
