"""Silero VAD on synthetic and real speech: spans follow pauses, long speech is cut in
pauses, and the live (streaming) detector agrees with the file one."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from tingxie.audio import decode
from tingxie.types import OptionsError, SpeechSpan, VadOptions
from tingxie.vad import FRAME, StreamingVad, VadEvent, detect_speech, speech_probabilities

SR = 16000
PHRASES = ["Good morning everyone.", "The meeting will start in five minutes.", "Please take your seats."]
LEAD, GAP, TAIL = 0.6, 1.0, 0.8
PARAGRAPH = (
    "the quick brown fox jumps over the lazy dog and then it runs across the wide green field "
    "towards the old wooden barn where the farmer keeps his tools and his horses and his many "
    "chickens that cluck all day long in the warm summer sun while the children play by the river "
    "and the birds sing in the tall trees above the quiet village where nothing much ever happens "
    "except on market day when people come from far away to sell their vegetables and fruit and "
    "bread and cheese and all kinds of things that you cannot find anywhere else in the whole wide "
    "country and everybody is happy and the music plays until late in the evening when the stars "
    "come out over the hills and the moon rises slowly over the dark forest where the owls and the "
    "foxes live together in peace and the old miller tells long stories about the winters of his "
    "youth when the snow was so deep that nobody could leave the house for weeks"
)


@pytest.fixture(scope="module")
def phrases(tmp_path_factory: pytest.TempPathFactory, synth_speech) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Three phrases separated by 1 s of silence, and where each phrase really sounds."""
    d = tmp_path_factory.mktemp("vad")
    parts: list[np.ndarray] = [np.zeros(int(LEAD * SR), np.float32)]
    truth, pos = [], int(LEAD * SR)
    for k, text in enumerate(PHRASES):
        x = decode(synth_speech(text, d / f"p{k}.wav"))
        loud = np.flatnonzero(np.abs(x) > 0.01)
        x = x[loud[0] : loud[-1] + 1]
        truth.append((pos, pos + x.size))
        parts += [x, np.zeros(int((GAP if k < len(PHRASES) - 1 else TAIL) * SR), np.float32)]
        pos += x.size + parts[-1].size
    return np.concatenate(parts), truth


@pytest.fixture(scope="module")
def paragraph(tmp_path_factory: pytest.TempPathFactory, synth_speech) -> np.ndarray:
    """About 90 s of continuous speech (no punctuation, so no sentence pauses)."""
    x = decode(synth_speech(f"{PARAGRAPH} and then {PARAGRAPH}", tmp_path_factory.mktemp("vad") / "para.wav"))
    assert x.size / SR > 60
    return x


def stream_spans(x: np.ndarray, vad: StreamingVad, seed: int = 0, max_chunk: int = 4000) -> list[SpeechSpan]:
    """Feed `x` in random-sized chunks; pair the events into spans, checking their order."""
    rng = np.random.default_rng(seed)
    events: list[VadEvent] = []
    i = 0
    while i < x.size:
        n = int(rng.integers(1, max_chunk))
        events += vad.feed(x[i : i + n])
        i += n
    events += vad.flush()
    assert vad.position == x.size and not vad.in_speech
    assert [e.kind for e in events] == ["start", "end"] * (len(events) // 2)
    return [SpeechSpan(a.sample, b.sample) for a, b in zip(events[::2], events[1::2], strict=False)]


def assert_close(a: list[SpeechSpan], b: list[SpeechSpan], tol: int = 2 * FRAME) -> None:
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b, strict=False):
        assert abs(x.start - y.start) <= tol and abs(x.end - y.end) <= tol, (x, y)


def assert_well_formed(spans: list[SpeechSpan], length: int, max_s: float) -> None:
    for s in spans:
        assert 0 <= s.start < s.end <= length
        assert s.end - s.start <= int(max_s * SR)
    for a, b in zip(spans, spans[1:], strict=False):
        assert a.end <= b.start


def test_silence_and_noise_have_no_speech() -> None:
    assert detect_speech(np.zeros(10 * SR, np.float32)) == []
    noise = np.random.default_rng(0).normal(0, 0.003, 10 * SR).astype(np.float32)
    assert detect_speech(noise) == []
    assert detect_speech(np.zeros(0, np.float32)) == []


def test_probabilities_are_per_frame_and_track_speech(phrases) -> None:
    x, truth = phrases
    p = speech_probabilities(x[:-100])
    assert p.shape == (-(-(x.size - 100) // FRAME),) and p.dtype == np.float32
    assert ((p >= 0) & (p <= 1)).all()
    for s, e in truth:
        assert p[s // FRAME + 3 : e // FRAME - 3].mean() > 0.7
    for (_, e), (s, _) in zip(truth, truth[1:], strict=False):
        assert p[e // FRAME + 10 : s // FRAME - 3].max() < 0.2  # the 1 s pauses


def test_spans_follow_the_pauses(phrases) -> None:
    x, truth = phrases
    opts = VadOptions(min_silence_ms=300, speech_pad_ms=200)  # split at the 1 s pauses
    spans = detect_speech(x, opts)
    assert_well_formed(spans, x.size, opts.max_speech_s)
    assert len(spans) == len(truth)
    pad = opts.speech_pad_ms * SR // 1000
    for span, (s, e) in zip(spans, truth, strict=False):
        # The padded span covers the phrase, with at most pad + ~0.15 s of slack per side.
        assert s - pad - 0.15 * SR <= span.start <= s + 0.05 * SR
        assert e - 0.05 * SR <= span.end <= e + pad + 0.15 * SR


def test_min_silence_and_min_speech(phrases) -> None:
    x, truth = phrases
    # Pauses shorter than min_silence do not split speech.
    merged = detect_speech(x, VadOptions(min_silence_ms=1500))
    assert len(merged) == 1 and merged[0].start < truth[0][0] and merged[0].end > truth[-1][1]
    # Speech shorter than min_speech is dropped: only the 2.2 s phrase survives 1.8 s.
    longest = max(range(3), key=lambda k: truth[k][1] - truth[k][0])
    kept = detect_speech(x, VadOptions(min_speech_ms=1800))
    assert len(kept) == 1 and kept[0].start < truth[longest][0] < truth[longest][1] < kept[0].end


def test_long_speech_is_cut_in_pauses_below_max(paragraph) -> None:
    x = paragraph
    opts = VadOptions(max_speech_s=10, min_silence_ms=2000)
    p = speech_probabilities(x)
    spans = detect_speech(x, opts, probs=p)
    assert_well_formed(spans, x.size, opts.max_speech_s)
    cut_spans = [a for a, b in zip(spans, spans[1:], strict=False) if a.end == b.start]
    assert len(cut_spans) >= 5
    quiet = 0
    for a in cut_spans:
        # The cut is at the quietest frame of the last 30 % before the limit ...
        assert 7 * SR <= a.end - a.start <= 10 * SR
        zone = p[-(-(a.start + 7 * SR) // FRAME) : (a.start + 10 * SR) // FRAME]
        assert p[a.end // FRAME] <= zone.min() + 0.05, f"cut at {a.end / SR:.2f}s is not the quietest"
        quiet += p[a.end // FRAME] < opts.threshold - 0.15
    # ... which in speech with word gaps is nearly always a pause.
    assert quiet >= 0.8 * len(cut_spans)
    # Cutting loses no speech: every confident speech frame is inside a span.
    covered = np.zeros(p.size, bool)
    for s in spans:
        covered[s.start // FRAME : -(-s.end // FRAME)] = True
    assert covered[p >= opts.threshold].all()


def test_streaming_matches_offline_on_pauses(phrases) -> None:
    x, _ = phrases
    offline = detect_speech(x, VadOptions())
    for seed in range(3):
        assert_close(stream_spans(x, StreamingVad(VadOptions()), seed=seed), offline)
    assert_close(stream_spans(x, StreamingVad(VadOptions()), max_chunk=3), offline)


def test_streaming_matches_offline_on_long_speech_with_cuts(paragraph) -> None:
    opts = VadOptions(max_speech_s=10, min_silence_ms=2000)
    offline = detect_speech(paragraph, opts)
    live = stream_spans(paragraph, StreamingVad(opts), seed=7)
    assert_close(live, offline)
    assert_well_formed(live, paragraph.size, opts.max_speech_s)


def test_streaming_endpoint_silence_and_latency(phrases) -> None:
    x, truth = phrases
    # A live endpoint longer than the pauses keeps the phrases in one utterance.
    assert len(stream_spans(x, StreamingVad(VadOptions(), endpoint_silence_ms=1500))) == 1
    # With 20 ms packets, 'start' and 'end' arrive soon enough for live captions.
    vad, chunk = StreamingVad(VadOptions(), endpoint_silence_ms=500), 320
    heard: list[tuple[VadEvent, int]] = []
    for i in range(0, x.size, chunk):
        heard += [(e, vad.position) for e in vad.feed(x[i : i + chunk])]
        if truth[0][0] + SR // 2 <= vad.position < truth[0][1] - SR // 10:
            assert vad.in_speech
    assert len(heard) == 2 * len(truth)
    for (start, at_start), (end, at_end), (s, e) in zip(heard[::2], heard[1::2], truth, strict=False):
        assert start.kind == "start" and at_start - s < 0.4 * SR
        assert end.kind == "end" and at_end - e < 0.8 * SR
        assert start.sample <= s <= e <= end.sample


def test_trailing_quiet_and_quietest_point(phrases) -> None:
    """What the live endpointer builds on: where the current pause began, and where the
    quietest point of the open speech lies (a long sentence is split there)."""
    x, truth = phrases
    vad = StreamingVad(VadOptions(), endpoint_silence_ms=1500)  # the phrases stay one span
    vad.feed(x[: truth[0][1] + SR // 2])  # half a second into the first pause
    assert vad.in_speech and vad.silence_since is not None
    assert abs(vad.silence_since - truth[0][1]) <= 3 * FRAME
    vad.feed(x[truth[0][1] + SR // 2 : (truth[1][0] + truth[1][1]) // 2])  # speaking again
    assert vad.in_speech and vad.silence_since is None
    assert truth[0][1] < vad.quietest(truth[0][0], vad.position) < truth[1][0]


def test_flush_closes_open_speech(phrases) -> None:
    x, truth = phrases
    mid = (truth[1][0] + truth[1][1]) // 2
    vad = StreamingVad()
    events = vad.feed(x[:mid])
    assert vad.in_speech and events[-1].kind == "start"
    tail = vad.flush()
    assert [e.kind for e in tail] == ["end"] and tail[0].sample == mid
    with pytest.raises(RuntimeError):
        vad.feed(x[mid:])


def test_threads_share_the_model_safely(phrases) -> None:
    x, _ = phrases
    ref = speech_probabilities(x)
    results: list[np.ndarray | None] = [None] * 4

    def work(k: int) -> None:
        results[k] = speech_probabilities(x)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, ref)


def test_bad_options_are_refused() -> None:
    x = np.zeros(SR, np.float32)
    with pytest.raises(OptionsError, match="threshold"):
        detect_speech(x, VadOptions(threshold=1.5))
    with pytest.raises(OptionsError, match="max_speech_s"):
        StreamingVad(VadOptions(max_speech_s=0))
    with pytest.raises(ValueError, match="probabilities"):
        detect_speech(x, VadOptions(), probs=np.zeros(3, np.float32))


@pytest.mark.eval
def test_real_recordings(corpus_dir: Path) -> None:
    items = [json.loads(line) for line in (corpus_dir / "manifest.jsonl").read_text().splitlines() if line]
    for item in items:
        x = decode(corpus_dir / item["audio"])
        spans = detect_speech(x)
        assert spans, f"no speech found in {item['id']}"
        assert sum(s.end - s.start for s in spans) > 0.3 * x.size, item["id"]
    longest = max(items, key=lambda it: it["duration_s"])
    x = decode(corpus_dir / longest["audio"])
    opts = VadOptions(max_speech_s=5)
    offline = detect_speech(x, opts)
    assert_well_formed(offline, x.size, opts.max_speech_s)
    assert_close(stream_spans(x, StreamingVad(opts), seed=3), offline)


def _probs(*stretches: tuple[float, float]) -> np.ndarray:
    """Frame probabilities: (seconds, probability) stretches one after another."""
    return np.concatenate([np.full(round(s * SR / FRAME), p, np.float32) for s, p in stretches])


def test_speech_that_ends_a_recording_quietly_is_kept_not_dropped() -> None:
    # a falsetto or trailing-off ending: a few frames over the threshold, then voice the
    # VAD scores under it until the recording ends (no 2 s of silence to close it)
    probs = _probs((1.0, 0.0), (0.1, 0.6), (1.5, 0.3), (0.5, 0.02))
    x = np.zeros(len(probs) * FRAME, np.float32)
    start = int(np.argmax(probs > 0.5)) * FRAME - VadOptions().speech_pad_ms * SR // 1000
    spans = detect_speech(x, VadOptions(), probs=probs)
    assert [(s.start, s.end) for s in spans] == [(start, len(x))]
    # the live detector ends the stream with the same span
    vad = StreamingVad()
    vad._model.run = lambda frames: probs[: len(frames)]  # the same scores, no model
    events = vad.feed(x) + vad.flush()
    assert [(e.kind, e.sample) for e in events] == [("start", start), ("end", len(x))]


def test_a_click_before_the_end_of_a_recording_is_still_dropped() -> None:
    # the same short burst followed by silence (or hum) is a click, not speech
    for after in (0.0, 0.1):
        probs = _probs((1.0, 0.0), (0.1, 0.6), (1.5, after))
        spans = detect_speech(np.zeros(len(probs) * FRAME, np.float32), VadOptions(), probs=probs)
        assert spans == []


def test_a_last_word_scored_between_the_thresholds_stays_in_its_span() -> None:
    # falsetto, whispered or trailing-off words: Silero scores them above threshold-0.15
    # but under the threshold once the speech before has dipped below (mfa_falsetto's
    # "pitched", 0.38–0.46); they end the span, they are not cut off by the pad
    pad = VadOptions().speech_pad_ms * SR // 1000
    probs = _probs((1.0, 0.0), (1.0, 0.8), (0.2, 0.1), (0.2, 0.42), (2.5, 0.02), (1.0, 0.8), (2.5, 0.0))
    frames = lambda seconds: round(seconds * SR / FRAME)  # noqa: E731 — as _probs counts them
    word_end = (2 * frames(1.0) + 2 * frames(0.2)) * FRAME  # the end of the 0.42 stretch
    x = np.zeros(len(probs) * FRAME, np.float32)
    spans = detect_speech(x, VadOptions(), probs=probs)
    assert len(spans) == 2 and spans[0].end == word_end + pad, spans
    # and after a quiet with nothing between the thresholds, the span ends where the quiet begins
    plain = _probs((1.0, 0.0), (1.0, 0.8), (2.5, 0.02))
    (span,) = detect_speech(np.zeros(len(plain) * FRAME, np.float32), VadOptions(), probs=plain)
    assert span.end == 2 * frames(1.0) * FRAME + pad
    # the live detector ends the sentence at the same sample
    vad = StreamingVad()
    vad._model.run = lambda frames: probs[vad._frames : vad._frames + len(frames)]
    events = vad.feed(x) + vad.flush()
    ends = [e.sample for e in events if e.kind == "end"]
    assert ends[0] == spans[0].end and len(ends) == 2, events


def test_a_new_speaker_after_a_long_one_is_heard_from_the_start() -> None:
    """Silero's recurrent state, carried from one speaker's 27 s, scored the next
    speaker's first 12 s under 0.1 (eval-extra's mfa_acoustic_corpus, a pause, then
    mfa_cold_corpus: "uh so this is the sick corpus…" was lost in a joined recording).
    After two seconds without a trace of speech the state starts afresh, as every file
    starts, and the second speaker is found from the start. Fed in small pieces, as a
    live stream feeds it, the detector scores the same."""
    extra = (Path(__file__).resolve().parent.parent / ".." / "shared" / "eval-extra").resolve()
    first, second = extra / "mfa_acoustic_corpus.wav", extra / "mfa_cold_corpus.wav"
    if not (first.is_file() and second.is_file()):
        pytest.skip(f"eval-extra's mfa_acoustic_corpus / mfa_cold_corpus not present under {extra}")
    a, b = decode(str(first)), decode(str(second))
    x = np.concatenate([a, np.zeros(SR // 2, np.float32), b])
    offset = (len(a) + SR // 2) / SR
    spans = [s for s in detect_speech(x, VadOptions()) if s.end / SR > offset]
    assert spans and spans[0].start / SR - offset < 3.0, [(s.start / SR - offset, s.end / SR - offset) for s in spans]
    from tingxie.vad import _Model

    frames = x[: len(x) // FRAME * FRAME].reshape(-1, FRAME)
    whole = speech_probabilities(frames.reshape(-1))
    model, cuts = _Model(), list(range(0, len(frames), 37)) + [len(frames)]  # pieces across every block edge
    fed = np.concatenate([model.run(frames[i:j]) for i, j in zip(cuts, cuts[1:], strict=False)])
    assert np.allclose(fed, whole, atol=1e-5)
