"""A live final gets the same per-window finishing as a file's window
(`transcribe.finish_window`): the temperature fallback for a looping decode, and speech
that came back without text decoded again (or, failing that, reported).

Both paths hear the same real (espeak) speech, through the real VAD, windows, scheduler
and text stage; only the recognizer is scripted. A loop or an empty decode is what a
model does now and then on some audio, and no GPU-free real model does it on cue, so a
stand-in decides what each decode says: the point is what the pipeline does with it.
"""

from __future__ import annotations

import asyncio
import wave

import numpy as np
import pytest

from tingxie.engines.base import WindowResult
from tingxie.engines.whisper.recognizer import complete, whisper_spec
from tingxie.engines.whisper.result import WhisperResult
from tingxie.request import StreamOptions
from tingxie.scheduler import Scheduler
from tingxie.stream import StreamSession
from tingxie.transcribe import transcribe
from tingxie.types import DecodeOptions, Segment, TextOptions

SR = 16000
CLEAN = "今天天气很好我们去公园散步"
LOOP = "谢谢" * 40  # Whisper's loop on a hard window: compressible, so it falls back


class Scripted:
    """A recognizer whose first decode of a window fails in the way `mode` says:
    "loop": a looping greedy/beam decode, clean once sampled at a higher temperature;
    "empty": nothing while hotwords are in the prompt (a prompt can make Whisper skip
    speech), the words once decoded without them; "brackets": Whisper's memory of
    subtitles (junk) while hotwords are in the prompt, the words without them;
    "silent": never any text.
    Segments span the window's audio, as a decode of its speech would."""

    model_id = "scripted"

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls: list[DecodeOptions] = []

    @property
    def spec(self):
        return whisper_spec(self.model_id, True)

    def batch_key(self, window) -> tuple:
        o = window.options
        return (o.beam_size, o.temperature, tuple(o.hotwords), window.compact)

    def warm_up(self) -> None:
        pass

    def refine(self, window, result, submit) -> WindowResult:
        return complete(window, result, submit)  # Whisper's policy, as WhisperRecognizer's

    def decode(self, windows) -> list[WindowResult]:
        return [self._one(w) for w in windows]

    def _one(self, w) -> WindowResult:
        o = w.options
        self.calls.append(o)
        text, ratio = CLEAN, 1.2
        if self.mode == "loop" and o.temperature == 0:
            text, ratio = LOOP, 8.0
        elif self.mode == "empty" and o.hotwords or self.mode == "silent":
            return WhisperResult([], "zh", 0.99)
        elif self.mode == "brackets" and o.hotwords:
            text = "《iPOP》《iPOP》《iPOP》"
        seg = Segment(0, round(w.start, 3), round(w.end, 3), text, text, avg_logprob=-0.3)
        return WhisperResult([seg], "zh", 0.99, tokens=len(text), avg_logprob=-0.3, compression_ratio=ratio)


@pytest.fixture(scope="module")
def speech(tmp_path_factory, synth_speech) -> np.ndarray:
    """~3 s of real speech with a second of silence either side (the stream's endpoint)."""
    path = synth_speech(
        "The weather is lovely today, so we are going for a walk in the park.",
        tmp_path_factory.mktemp("speech") / "walk.wav",
    )
    with wave.open(str(path)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    pad = np.zeros(SR, np.float32)
    return np.concatenate([pad, x, pad, pad])


def as_file(engine: Scripted, audio: np.ndarray):
    sched = Scheduler(engine, max_batch_size=4, max_wait_ms=0, instances=1)
    try:
        return transcribe(audio, sched, DecodeOptions(language="zh", hotwords=["公园"]), text=TextOptions())
    finally:
        sched.close()


def live(engine: Scripted, audio: np.ndarray) -> tuple[list[dict], StreamSession]:
    sched = Scheduler(engine, max_batch_size=4, max_wait_ms=0, instances=1)
    sent: list[dict] = []

    async def send(m: dict) -> None:
        sent.append(m)

    async def run() -> StreamSession:
        opts = StreamOptions.parse({"language": "zh", "hotwords": ["公园"], "partials": False})
        s = StreamSession(sched, opts, send)
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        for i in range(0, len(pcm), SR // 10):  # 100 ms frames, as a client sends them
            await s.feed(pcm[i : i + SR // 10].tobytes())
        await s.finish()
        return s

    try:
        return sent, asyncio.run(run())
    finally:
        sched.close()


def test_a_looping_live_final_falls_back_exactly_as_a_file_window(speech):
    f_engine, l_engine = Scripted("loop"), Scripted("loop")
    t = as_file(f_engine, speech)
    sent, _ = live(l_engine, speech)
    finals = [m["text"] for m in sent if m["type"] == "final"]
    # the loop was redone at a higher temperature on both paths, and the clean text kept
    assert [s.text for s in t.segments] == finals and len(finals) == 1, (t.segments, finals)
    assert "谢谢" not in finals[0] and "今天天气很好" in finals[0]
    assert any(c.temperature > 0 for c in l_engine.calls)


@pytest.mark.parametrize("mode", ["empty", "brackets"])
def test_a_live_final_that_came_back_empty_or_junk_is_decoded_again(speech, mode):
    f_engine, l_engine = Scripted(mode), Scripted(mode)
    t = as_file(f_engine, speech)
    sent, session = live(l_engine, speech)
    finals = [m["text"] for m in sent if m["type"] == "final"]
    assert [s.text for s in t.segments] == finals and len(finals) == 1, (t.segments, finals)
    assert "今天天气很好" in finals[0]
    assert "retried" in t.segments[0].flags and session.finals[0].text == finals[0]
    # the retry went without the prompt's hotwords, on both paths
    assert [c.hotwords for c in l_engine.calls] == [["公园"], []]


def test_live_speech_that_never_gives_text_is_reported_as_in_a_file(speech):
    t = as_file(Scripted("silent"), speech)
    sent, session = live(Scripted("silent"), speech)
    assert not [m for m in sent if m["type"] == "final"]
    assert t.warnings and session.transcript().warnings
    assert all(w.startswith("no text for ") for w in session.transcript().warnings)
