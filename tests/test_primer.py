"""The Simplified sentence a short Mandarin window is primed with
(tingxie/engines/whisper/engine.py, `primer`): which windows hear it, that a request's
own prompt replaces it, that the retry of lost speech goes without it, and that the
primer read back never reaches a transcript. Real model, real Mandarin from ../shared
(espeak-ng's Mandarin is too far from speech for whisper-base)."""

from __future__ import annotations

import json

import pytest
from helpers import write_wav
from speech_loss_audio import join

from tingxie.bench.score import error_rate
from tingxie.engines.whisper import engine as engine_mod
from tingxie.scheduler import BATCH
from tingxie.text import comparison_form
from tingxie.transcribe import transcribe
from tingxie.types import DecodeOptions, TextOptions, VadOptions

PRIMER = engine_mod.MANDARIN_PRIMER


@pytest.fixture(scope="module")
def clips(corpus_dir):
    rows = [json.loads(x) for x in (corpus_dir / "manifest.jsonl").read_text().splitlines() if x.strip()]
    return {r["id"]: r for r in rows}


@pytest.fixture
def heard(sched, monkeypatch):
    """{window start and length: the prompt it was decoded with}, for every decode."""
    whisper = sched.engine.engine
    real = whisper.prompt_prefix
    seen: dict[tuple[float, float], str] = {}

    def spy(window):
        ids = real(window)
        seen[(round(window.start, 2), round(window.seconds, 2))] = whisper.tokenizer("en").decode(ids[1:])
        return ids

    monkeypatch.setattr(whisper, "prompt_prefix", spy)
    return seen


def _zh(path, sched, **decode):
    return transcribe(path, sched, DecodeOptions(language="zh", **decode), VadOptions(), TextOptions(itn=False), BATCH)


def test_a_short_mandarin_window_is_primed_and_a_window_of_many_sentences_is_not(
    sched, clips, corpus_dir, heard, tmp_path
):
    clip = clips["aishell_sample_BAC009S0150W0169"]
    t = _zh(corpus_dir / clip["audio"], sched)
    assert list(heard.values()) == [" " + PRIMER]
    assert PRIMER not in t.text and error_rate([clip["text"]], [t.text], "zh") < 0.3, t.text
    heard.clear()
    four = ["aishell_sample_BAC009S0150W0133", "aishell_sample_BAC009S0150W0241", "cosyvoice_pr1212_laoxu"]
    audio, _ = join(corpus_dir, [clips[c] for c in four], seed=5)
    _zh(write_wav(tmp_path / "three.wav", audio), sched)
    long_first = [p for (_, seconds), p in heard.items() if seconds >= engine_mod.PRIMER_MAX_S]
    assert long_first and all(PRIMER not in p for p in long_first)  # continuations hear the text before them


def test_a_request_prompt_replaces_the_primer_and_english_is_never_primed(sched, clips, corpus_dir, heard):
    clip = clips["aishell_sample_BAC009S0150W0169"]
    _zh(corpus_dir / clip["audio"], sched, initial_prompt="房地产市场。")
    assert list(heard.values()) == [" 房地产市场。"]
    heard.clear()
    en = next(c for c in clips.values() if c["lang"] == "en")
    transcribe(corpus_dir / en["audio"], sched, DecodeOptions(language="en"), VadOptions(), TextOptions(), BATCH)
    assert heard and all(PRIMER not in p for p in heard.values())


def test_speech_lost_under_the_primer_is_heard_again_without_it(sched, clips, corpus_dir, heard, monkeypatch):
    """A primed decode that comes back empty (here: every one) is retried without the
    primer, and the clip's speech comes back."""
    recognizer = sched.engine
    real = recognizer.decode

    def primed_decodes_lose_everything(windows):
        out = real(windows)
        for w, r in zip(windows, out, strict=True):
            if engine_mod.primer(w):
                r.segments = []
        return out

    monkeypatch.setattr(recognizer, "decode", primed_decodes_lose_everything)
    clip = clips["aishell_sample_BAC009S0150W0241"]
    t = _zh(corpus_dir / clip["audio"], sched)
    assert " " + PRIMER in heard.values() and "" in heard.values()
    assert error_rate([clip["text"]], [t.text], "zh") < 0.3, t.text
    assert t.segments and all("retried" in s.flags for s in t.segments)


def test_the_primer_read_back_never_reaches_the_transcript(sched, clips, corpus_dir, monkeypatch):
    """Over a breath or noise a primed decoder can write its prompt back. Here every
    primed window's segments read the primer (or its end): none of it is kept, and the
    speech under them is heard again without the primer."""
    whisper = sched.engine.engine
    real = whisper._segments

    def reads_back(w, *args, **kwargs):
        segs = real(w, *args, **kwargs)
        if engine_mod.primer(w):
            for k, s in enumerate(segs):
                s.raw_text = s.text = PRIMER if k % 2 == 0 else "普通话的句子"
        return segs

    monkeypatch.setattr(whisper, "_segments", reads_back)
    clip = clips["aishell_sample_BAC009S0150W0133"]
    t = _zh(corpus_dir / clip["audio"], sched)
    assert "普通话的句子" not in comparison_form(t.text, "zh"), t.text
    assert error_rate([clip["text"]], [t.text], "zh") < 0.3, t.text
    assert t.warnings == []
