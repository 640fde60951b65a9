"""The offline pipeline: file → audio → VAD spans → windows → scheduler → Transcript.

`transcribe` handles one source and blocks; it is what a synchronous request, a job and
a worker task call. `transcribe_many` runs many sources at once so their windows share
batches (cross-file batching), bounding how much decoded audio is held in memory.
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import audio as audio_mod
from . import text as text_mod
from . import vad as vad_mod
from . import windows as windows_mod
from .engines.base import TakesWholeRequests, WindowResult, check_options, refine, takes_whole_requests
from .scheduler import BATCH, Scheduler, work_in_flight
from .types import (
    SAMPLE_RATE,
    AudioError,
    Channel,
    DecodeOptions,
    DiarizeOptions,
    Segment,
    SpeechSpan,
    TextOptions,
    Transcript,
    VadOptions,
    channel_label,
)

log = logging.getLogger(__name__)

DEFAULT_VAD = VadOptions()  # None means VAD off, so the default is a value (never mutated)

Source = str | Path | bytes | BinaryIO

# Progress callback: (windows_done, windows_total, audio_seconds_done)
Progress = Callable[[int, int, float], None]


@dataclass
class Prepared:
    audio: np.ndarray | audio_mod.SparseAudio  # sparse (speech only) when decoded from a file with VAD
    duration: float
    windows: list[windows_mod.Window]
    speech_seconds: float
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)  # e.g. a damaged file only partly decoded


def prepare(
    source: Source | np.ndarray, decode: DecodeOptions, vad: VadOptions | None, max_seconds: float = 0.0
) -> Prepared:
    """Decode and cut into windows. `vad=None` means fixed 30 s windows (`--vad off`).

    A file is decoded in chunks that go straight through the VAD, and only the audio
    around speech is kept, so memory follows the speech, not the file's length (a
    2-hour silent file costs next to nothing). Audio longer than `max_seconds`
    (0 = no limit) is refused with AudioTooLong.
    """
    t0 = time.perf_counter()
    report = audio_mod.DecodeReport()
    probs: np.ndarray | None = None
    if isinstance(source, np.ndarray):
        audio: np.ndarray | audio_mod.SparseAudio = source
        if max_seconds > 0 and len(source) / SAMPLE_RATE > max_seconds:
            raise audio_mod.AudioTooLong(audio_mod.too_long(len(source) / SAMPLE_RATE, max_seconds))
        if len(audio) == 0:
            raise AudioError("contains no audio samples")
        t1 = time.perf_counter()
        probs = None if vad is None else vad_mod.speech_probabilities(source)
    elif vad is None:
        audio = audio_mod.decode(source, report=report, max_seconds=max_seconds)
        t1 = time.perf_counter()
    else:
        # decode and VAD interleave here; their shares are not told apart
        audio, probs = vad_mod.scan(audio_mod.decode_chunks(source, report=report, max_seconds=max_seconds), vad)
        t1 = time.perf_counter()
    p = _cut(audio, decode, vad, probs)
    p.timings = {"decode": t1 - t0, "vad": time.perf_counter() - t1}
    p.warnings = [report.warning] if report.warning else []
    return p


def _cut(
    audio: np.ndarray | audio_mod.SparseAudio, decode: DecodeOptions, vad: VadOptions | None, probs: np.ndarray | None
) -> Prepared:
    """Decoded audio (and its VAD probabilities) → windows."""
    if vad is None:
        wins = windows_mod.fixed(audio, decode)
    else:
        spans = vad_mod.detect_speech(audio, vad, probs=probs)
        wins = windows_mod.pack(audio, spans, decode, probs=probs)
    return Prepared(audio, len(audio) / SAMPLE_RATE, wins, sum(w.seconds for w in wins), {})


@dataclass
class PreparedChannels:
    """channels=split: each channel of one file cut into windows on its own, all from
    one decoding pass (a scanner per channel keeps only its speech, as `prepare` does)."""

    channels: list[Prepared]  # one per channel; a single one when there is nothing to split
    duration: float
    timings: dict[str, float]  # of the shared decoding pass
    warnings: list[str]  # about the whole file: damage, or why it was not split


# Channels no further apart than this (peak difference at full scale 1.0) are one signal
# stored twice, as many "stereo" recorders do: splitting them would say everything twice.
SAME_CHANNELS = 1e-3


def prepare_channels(
    source: Source | np.ndarray, decode: DecodeOptions, vad: VadOptions | None, max_seconds: float = 0.0
) -> PreparedChannels:
    """`prepare` for channels=split. `source` may be an array of (channels, samples).
    A file with one channel, or whose channels carry the same audio, is not split, and
    the result says so."""
    t0 = time.perf_counter()
    report = audio_mod.DecodeReport()
    if isinstance(source, np.ndarray):
        rows = source.reshape(1, -1) if source.ndim == 1 else source
        if rows.shape[1] == 0:
            raise AudioError("contains no audio samples")
        if max_seconds > 0 and rows.shape[1] / SAMPLE_RATE > max_seconds:
            raise audio_mod.AudioTooLong(audio_mod.too_long(rows.shape[1] / SAMPLE_RATE, max_seconds))
        chunks: Iterable[np.ndarray] = [rows]
    else:
        chunks = audio_mod.decode_chunks(source, report=report, max_seconds=max_seconds, split=True)
    sinks: list = []  # per channel: a VAD scanner, or (VAD off) the whole signal
    same = True
    for chunk in chunks:
        if not sinks:
            sinks = [vad_mod.Scanner(vad) if vad else audio_mod.Growable.reserved(report) for _ in chunk]
        if same and len(chunk) > 1:
            same = float(np.max(np.abs(chunk[1:] - chunk[0]))) <= SAME_CHANNELS
        for sink, row in zip(sinks, chunk, strict=True):
            (sink.feed if vad else sink.extend)(row)
    t1 = time.perf_counter()
    warnings = [report.warning] if report.warning else []
    if len(sinks) == 1:
        warnings.append("channels=split: the audio has one channel; transcribed as it is")
    elif same:
        warnings.append(f"channels=split: the audio's {len(sinks)} channels are the same; transcribed once")
        sinks = sinks[:1]
    parts = []
    for sink in sinks:
        audio, probs = sink.finish() if vad else (sink.finish(), None)
        parts.append(_cut(audio, decode, vad, probs))
    return PreparedChannels(parts, parts[0].duration, {"decode": t1 - t0, "vad": time.perf_counter() - t1}, warnings)


# A stretch of VAD speech this long (seconds) that no segment covers is decoded again.
MIN_LOST_S = 1.0
COVER_PAD_S = 0.5  # Whisper's segment times are this loose around the speech they cover
MERGE_GAP_S = 0.6  # uncovered speech frames this close belong to one stretch
RETRY_PAD_S = 0.3
RETRY_MAX_S = 10.0  # retried stretches are cut (at pauses) into windows this long at most
FOLLOW_UPS = 4  # windows of one file whose second decodes are under way at once
# A segment whose text, said at SLOW_UNITS_PER_S, takes UNHEARD_MIN_S less than the VAD
# speech under it skipped speech. With a prompt, whisper-base wrote one 19-character
# sentence for 36 s of joined Mandarin utterances, its times claiming all 36 s. Chosen on
# the calibration half: no segment of ≥ 2 s of speech reads slower than 2.3 characters
# (Mandarin) or 2.7 words (English) a second unprompted; prompted, its three-minute
# recordings read 26.9 % CER with no rule, 22.8 % at 1.2 units a second, 21.5 % at 2.0.
SLOW_UNITS_PER_S = 2.0
UNHEARD_MIN_S = 3.0


def lost_speech(frames: list[tuple[float, float]], segments: list[Segment]) -> list[tuple[float, float]]:
    """(start, end) in source seconds of the VAD speech (a window's `speech_frames`) that
    no segment covers: at least MIN_LOST_S of speech frames each."""
    covered = sorted((s.start - COVER_PAD_S, s.end + COVER_PAD_S) for s in segments)
    runs: list[list[float]] = []  # [start, end, speech seconds]
    for a, b in frames:
        mid = (a + b) / 2
        if any(lo <= mid <= hi for lo, hi in covered):
            continue
        if runs and a - runs[-1][1] <= MERGE_GAP_S:
            runs[-1][1] = b
            runs[-1][2] += b - a
        else:
            runs.append([a, b, b - a])
    return [(a, b) for a, b, speech in runs if speech >= MIN_LOST_S]


def skipped_speech(frames: list[tuple[float, float]], seg: Segment) -> bool:
    """Whether a segment's times claim much more VAD speech (a window's `speech_frames`)
    than its text says: Whisper's timestamps jumped over speech it never wrote (a prompt
    or hotwords make it do so on long windows), and `lost_speech` alone would count that
    speech as covered."""
    speech = sum(max(0.0, min(b, seg.end) - max(a, seg.start)) for a, b in frames)
    return speech - text_mod.spoken_units(seg.raw_text) / SLOW_UNITS_PER_S >= UNHEARD_MIN_S


def _overlaps(s: Segment, a: float, b: float) -> bool:
    return s.start < b and s.end > a


def _repeats_kept(seg: Segment, kept: list[Segment]) -> bool:
    """Whether a retried segment only says again what a neighbouring segment says (its
    stretch was covered after all; Whisper's times were off)."""
    text = seg.raw_text.replace(" ", "")
    near = "".join(s.raw_text.replace(" ", "") for s in kept if _overlaps(s, seg.start - 3.0, seg.end + 3.0))
    if not text or not near:
        return False
    same = sum(m.size for m in difflib.SequenceMatcher(None, text, near, autojunk=False).get_matching_blocks())
    return same >= 0.7 * len(text)


def recover(
    engine, window: windows_mod.Window, result: WindowResult, scheduler: Scheduler, lane: str, owner: str
) -> WindowResult:
    """Never lose detected speech silently. Junk (text_mod.junk_reason) and segments
    whose times claim speech their text never says (`skipped_speech`) are set aside;
    VAD speech that no kept segment covers is decoded again in smaller windows without
    the prompt (a prompt can make Whisper skip speech). A suspect whose stretch gave
    text again is replaced by it; what still gives no text comes back as an empty
    segment flagged `no_text`, which the result counts as a warning."""
    language = result.language or window.options.language or ""
    frames = window.speech_frames()  # read once: every segment is measured against them
    kept: list[Segment] = []
    suspect: list[tuple[Segment, str]] = []
    for s in result.segments:
        reason = text_mod.junk_reason(s.raw_text, language) or ("skipped" if skipped_speech(frames, s) else None)
        if reason:
            suspect.append((s, reason))
        else:
            kept.append(s)
    for s, why in suspect:
        if why not in s.flags:
            s.flags.append(why)
    lost = lost_speech(frames, kept)
    if not lost:  # junk over no speech: bracket junk goes, the rest stays flagged
        result.segments = sorted(kept + [s for s, why in suspect if why != "brackets"], key=lambda s: s.start)
        return result
    opts = replace(window.options, initial_prompt=None, hotwords=[], temperature=0.0, language=language or None)
    parts: list[windows_mod.Window] = []
    for a, b in lost:
        part = window.part(a - RETRY_PAD_S, b + RETRY_PAD_S, opts)
        if part is None:
            continue
        spans = [SpeechSpan(p.start, p.start + p.length) for p in part.pieces]
        parts += windows_mod.pack(window.source, spans, opts, limit_s=RETRY_MAX_S, probs=window.probs)
    found: list[Segment] = []
    silent: list[tuple[windows_mod.Window, WindowResult]] = []  # parts that gave no text again
    futures = [scheduler.submit(p, lane, owner, follow_up=True) for p in parts]  # full 30 s input: compact=False
    for part, f in zip(parts, futures, strict=True):
        r = refine(engine, part, f.result(), scheduler.second_looks(lane, owner))
        for k in r.timings:
            result.timings[k] = result.timings.get(k, 0.0) + r.timings[k]
        result.tokens += r.tokens
        result.decodes += r.decodes
        clean = [s for s in r.segments if not text_mod.junk_reason(s.raw_text, language)]
        good = [s for s in clean if not _repeats_kept(s, kept)]
        for s in good:
            s.flags.append("retried")
        if good:
            found += good
        elif not clean:  # (clean text that only says again what is kept: covered after all)
            silent.append((part, r))
    retried = list(found)
    for part, r in silent:
        # Still nothing: keep a suspect's text (flagged) where it is no bracket junk and
        # the retries did not say it again, else say that this speech gave no text.
        overlapping = [(s, why) for s, why in suspect if _overlaps(s, part.start, part.end)]
        keep = [s for s, why in overlapping if why != "brackets" and not _repeats_kept(s, retried)]
        if keep:
            found += [s for s in keep if s not in found]
        else:
            found.append(
                Segment(
                    0,
                    round(part.start, 3),
                    round(part.end, 3),
                    "",
                    "",
                    None,
                    0.0,
                    round(r.no_speech_prob, 4),
                    ["no_text"] + sorted({why for _, why in overlapping}),
                )
            )
    found += [s for s, why in suspect if why != "brackets" and not any(_overlaps(s, p.start, p.end) for p in parts)]
    result.segments = sorted(kept + found, key=lambda s: s.start)
    return result


def finish_window(
    engine, window: windows_mod.Window, result: WindowResult, scheduler: Scheduler, lane: str, owner: str
) -> WindowResult:
    """The one finishing step of a decoded window, for a file's windows and a live
    stream's finals alike (stream.py): the model's second look (Whisper: temperature
    fallback for a looping or unlikely decode, continuation of what it left out), then
    `recover` (junk set aside, speech left without text decoded again). Its extra
    decodes go through `scheduler` in `lane` as `owner`. Blocking: call it off the event
    loop."""
    refined = refine(engine, window, result, scheduler.second_looks(lane, owner))
    return recover(engine, window, refined, scheduler, lane, owner)


def finish_segments(results: Iterable[WindowResult], language: str, opts: TextOptions) -> list[Segment]:
    """Text stage: cut repetition loops, then ITN and script (of the text and its words);
    number the segments; punctuate."""
    segments: list[Segment] = []
    for r in results:
        for seg in r.segments:
            raw, cut = text_mod.collapse_repetitions(seg.raw_text)
            if cut and "repetition_cut" not in seg.flags:
                seg.flags.append("repetition_cut")
            seg.raw_text = raw
            seg.text = text_mod.finalize(raw, language, opts)
            if seg.words:  # the words read as the text does: script, ITN
                seg.words = text_mod.finalize_words(seg.words, raw, language, opts)
            if seg.text.strip() or "no_text" in seg.flags:
                seg.id = len(segments)
                segments.append(seg)
    segments.sort(key=lambda s: s.start)
    for i, s in enumerate(segments):
        s.id = i
    text_mod.punctuate_segments(segments, language, opts)
    return segments


def options_record(decode: DecodeOptions, vad: VadOptions | None, text: TextOptions) -> dict:
    return {"decode": asdict(decode), "vad": asdict(vad) if vad else None, "text": asdict(text)}


def transcribe(
    source: Source | np.ndarray,
    scheduler: Scheduler,
    decode: DecodeOptions | None = None,
    vad: VadOptions | None = DEFAULT_VAD,
    text: TextOptions | None = None,
    lane: str = BATCH,
    owner: str = "",
    on_progress: Progress | None = None,
    prepared: Prepared | PreparedChannels | None = None,
    check_capacity: bool = False,
    on_window: Callable[[int, WindowResult], None] | None = None,
    channels: str = "mix",
    diarize: DiarizeOptions | None = None,
) -> Transcript:
    """Transcribe one source through the shared scheduler (blocking).

    `on_window(index, result)` is called (from worker threads, in any order) with each
    window's finished result before the text stage; the streaming API uses it.

    With `language=None` the first window is decoded alone to detect the file's
    language, and the rest follow in that language, so one file is never a mix of
    languages picked window by window.

    `channels="split"` (or a PreparedChannels) transcribes each channel on its own;
    see `_transcribe_split`.
    """
    decode = decode or DecodeOptions()
    text = text or TextOptions()
    t0 = time.perf_counter()
    engine = scheduler.engine
    check_options(engine.spec, decode)  # what the model cannot do is refused before any work
    if diarize is not None or channels == "split" or isinstance(prepared, PreparedChannels):
        again = _Run(scheduler, decode, vad, text, lane, owner, check_capacity)
        if diarize is not None:
            return _transcribe_diarized(source, again, on_progress, prepared, diarize)
        return _transcribe_split(
            source, again, on_progress, prepared if isinstance(prepared, PreparedChannels) else None, on_window
        )
    if takes_whole_requests(engine):
        return _transcribe_whole(source, engine, decode, vad, text, on_progress, prepared)
    p = prepared or prepare(source, decode, vad, scheduler.max_audio_s)
    total = len(p.windows)
    # Files are not compact in any lane (short windows get Whisper's 30 s input; long
    # ones follow engine.own_length): own-length encoding of short windows made
    # synchronous requests 2–3 points worse in English WER than the serial baseline
    # (bench/results/english.md).
    results: list[WindowResult | None] = [None] * total
    language, lang_prob = decode.language or "", 1.0 if decode.language else 0.0
    done = 0
    done_seconds = 0.0
    lock = threading.Lock()

    def report(i: int, r: WindowResult) -> None:
        nonlocal done, done_seconds
        with lock:
            done += 1
            done_seconds += p.windows[i].seconds
            if on_progress:
                on_progress(done, total, done_seconds)

    def follow_up(i: int, first: Future) -> None:
        results[i] = r = finish_window(engine, p.windows[i], first.result(), scheduler, lane, owner)
        if on_window:
            on_window(i, r)
        report(i, r)

    def run(indexes: list[int], capacity: bool) -> None:
        futures = [(i, scheduler.submit(p.windows[i], lane, owner, capacity and k == 0)) for k, i in enumerate(indexes)]
        # Second decodes (fallback, continuation, retry) wait on the first; several
        # windows' follow-ups run at once so that a file's last windows do not queue
        # their second decodes one after another while the instances sit idle.
        with ThreadPoolExecutor(max(1, min(FOLLOW_UPS, len(futures))), thread_name_prefix="tingxie-follow") as pool:
            for done in [pool.submit(follow_up, i, f) for i, f in futures]:
                done.result()

    first = 0
    if total and not decode.language:
        run([0], check_capacity)
        language, lang_prob = results[0].language, results[0].language_probability  # type: ignore[union-attr]
        first = 1
    if total > first:
        fixed = replace(decode, language=language or decode.language)
        for i in range(first, total):
            p.windows[i].options = fixed
        run(list(range(first, total)), check_capacity and first == 0)
    segments = finish_segments([r for r in results if r is not None], language or "en", text)
    stage = dict(p.timings)
    for r in results:
        if r:
            for k, v in r.timings.items():
                stage[k] = stage.get(k, 0.0) + v
    opts = options_record(decode, vad, text)
    opts["stage_seconds"] = {k: round(v, 4) for k, v in stage.items()}
    opts["speech_seconds"] = round(p.speech_seconds, 3)
    # windows, and windows decoded (fallbacks, continuations, retries add to the first pass)
    opts["windows"] = {"count": total, "decoded": sum(r.decodes for r in results if r)}
    return Transcript(
        language=language or (decode.language or ""),
        duration=round(p.duration, 3),
        segments=segments,
        language_probability=round(float(lang_prob), 4),
        processing_time=round(time.perf_counter() - t0 + (sum(p.timings.values()) if prepared else 0.0), 3),
        model=scheduler.engine.model_id,
        options=opts,
        warnings=list(p.warnings) + no_text_warnings(segments),
    )


@dataclass(frozen=True)
class _Run:
    """What the ways of transcribing one source that call `transcribe` again (per
    channel, before diarizing) pass on unchanged: where, with which options, in whose
    name."""

    scheduler: Scheduler
    decode: DecodeOptions
    vad: VadOptions | None
    text: TextOptions
    lane: str
    owner: str
    check_capacity: bool

    def transcribe(self, source: Source | np.ndarray, **more) -> Transcript:
        return transcribe(source, self.scheduler, self.decode, self.vad, self.text, self.lane, self.owner, **more)


def _transcribe_diarized(
    source: Source | np.ndarray,
    run: _Run,
    on_progress: Progress | None,
    prepared: Prepared | PreparedChannels | None,
    opts: DiarizeOptions,
) -> Transcript:
    """Transcribe, then diarize the file's audio and give every segment its speaker
    (diarize.py). Words are timed when the model can (they place a turn change inside a
    segment) and dropped again unless asked for. Progress counts the diarization as
    much work as the transcription, so a bar keeps moving through it.

    The diarizer takes the whole file decoded again at 16 kHz (1 h = 230 MB float32),
    not the speech-only audio the transcription kept: the turns need true times; the
    diarizer itself works on ~10-minute pieces (diarize.turns_of), so its memory does not
    grow with the file."""
    from . import diarize as diarize_mod
    from .engines.diarization import available

    available()  # no models: the 400 naming how to add them, before any work
    asked_words = run.decode.word_timestamps
    if run.scheduler.engine.spec.capabilities.word_timestamps:
        run = replace(run, decode=replace(run.decode, word_timestamps=True))
    total = [1]

    def progress(done: int, windows: int, secs: float) -> None:
        total[0] = max(1, windows)
        if on_progress:
            on_progress(done, 2 * total[0], secs)

    t = run.transcribe(source, on_progress=progress, prepared=prepared, check_capacity=run.check_capacity)
    t1 = time.perf_counter()
    if isinstance(source, np.ndarray):
        audio = source if source.ndim == 1 else source.mean(axis=0)
    else:
        if hasattr(source, "seek"):
            source.seek(0)  # type: ignore[union-attr]
        audio = audio_mod.decode(source)  # type: ignore[arg-type]

    def diarize_progress(fraction: float) -> None:
        if on_progress:
            on_progress(total[0] + int(fraction * total[0]), 2 * total[0], t.duration)

    t = diarize_mod.run(t, audio, opts, diarize_progress, keep_words=asked_words)
    del audio
    seconds = time.perf_counter() - t1
    stage = t.options.setdefault("stage_seconds", {})
    stage["diarize"] = round(seconds, 4)
    t.options["diarize"] = opts.record()
    if isinstance(t.options.get("decode"), dict):
        t.options["decode"]["word_timestamps"] = asked_words  # the caller's choice, not the internal one
    t.processing_time = round(t.processing_time + seconds, 3)
    return t


def _transcribe_split(
    source: Source | np.ndarray,
    run: _Run,
    on_progress: Progress | None,
    prepared: PreparedChannels | None,
    on_window: Callable[[int, WindowResult], None] | None,
) -> Transcript:
    """Each channel transcribed as a file of its own (its own language detection,
    recovery and text stage), all at once, so the channels' windows share the
    scheduler's batches; then the segments are merged in time order, each labelled
    with its channel. `on_window` indexes run on across the channels."""
    t0 = time.perf_counter()
    whole = takes_whole_requests(run.scheduler.engine)  # it runs its own VAD, on the whole signal
    pc = prepared or prepare_channels(source, run.decode, None if whole else run.vad, run.scheduler.max_audio_s)
    lock = threading.Lock()
    state = [(0, int(p.duration * 1000) if whole else len(p.windows), 0.0) for p in pc.channels]
    offsets = [sum(len(p.windows) for p in pc.channels[:k]) for k in range(len(pc.channels))]

    def one(k: int) -> Transcript:
        def progress(done: int, total: int, seconds: float) -> None:
            with lock:
                state[k] = (done, total, seconds)
                if on_progress:
                    done, total, secs = (sum(x) for x in zip(*state, strict=True))
                    on_progress(int(done), int(total), secs)

        def window(i: int, r: WindowResult) -> None:
            if on_window:
                on_window(offsets[k] + i, r)

        return run.transcribe(
            source,
            on_progress=progress,
            prepared=pc.channels[k],
            check_capacity=run.check_capacity and k == 0,  # the file is admitted once
            on_window=window if on_window else None,
        )

    if whole or len(pc.channels) == 1:  # a whole-request recognizer takes one request at a time
        parts = [one(k) for k in range(len(pc.channels))]
    else:
        with ThreadPoolExecutor(len(pc.channels), thread_name_prefix="tingxie-channel") as pool:
            parts = list(pool.map(one, range(len(pc.channels))))
    return _merge_channels(parts, pc, time.perf_counter() - t0 + (sum(pc.timings.values()) if prepared else 0.0))


def _merge_channels(parts: list[Transcript], pc: PreparedChannels, seconds: float) -> Transcript:
    """The channels' transcripts as one: segments in time order, labelled with their
    channel; the language is that of the channel with the most speech."""
    split = len(parts) > 1
    if split:
        for k, t in enumerate(parts, start=1):
            for s in t.segments:
                s.channel = k
    segments = sorted((s for t in parts for s in t.segments), key=lambda s: (s.start, s.channel or 0))
    for i, s in enumerate(segments):
        s.id = i
    main = max(range(len(parts)), key=lambda k: pc.channels[k].speech_seconds)  # the first on a tie
    stage = dict(pc.timings)
    for t in parts:
        for k, v in t.options.get("stage_seconds", {}).items():
            stage[k] = stage.get(k, 0.0) + v
    options = dict(parts[main].options)
    options["stage_seconds"] = {k: round(v, 4) for k, v in stage.items()}
    if "speech_seconds" in options:
        options["speech_seconds"] = round(sum(p.speech_seconds for p in pc.channels), 3)
    said = [(f"{channel_label(k)}: " if split else "", w) for k, t in enumerate(parts, start=1) for w in t.warnings]
    return Transcript(
        language=parts[main].language,
        duration=round(pc.duration, 3),
        segments=segments,
        language_probability=parts[main].language_probability,
        processing_time=round(seconds, 3),
        model=parts[main].model,
        options=options,
        warnings=pc.warnings + [label + w for label, w in said],
        channels=[Channel(k, t.language, t.language_probability) for k, t in enumerate(parts, start=1)]
        if split
        else [],
    )


def no_text_warnings(segments: list[Segment]) -> list[str]:
    """One warning per stretch of detected speech that gave no text (no audio or
    transcript content in them: times only)."""
    return [
        f"no text for {s.end - s.start:.1f} s of detected speech at {s.start:.1f}–{s.end:.1f} s"
        for s in segments
        if "no_text" in s.flags
    ]


def _transcribe_whole(
    source: Source | np.ndarray,
    engine: TakesWholeRequests,
    decode: DecodeOptions,
    vad: VadOptions | None,
    text: TextOptions,
    on_progress: Progress | None,
    prepared: Prepared | None,
) -> Transcript:
    """A recognizer that takes whole requests itself (the reference, engines/whisper/reference.py)."""
    t0 = time.perf_counter()
    audio = prepared.audio if prepared else source if isinstance(source, np.ndarray) else audio_mod.decode(source)
    if len(audio) == 0:
        raise AudioError("contains no audio samples")
    duration = len(audio) / SAMPLE_RATE

    def progress(at: float) -> None:
        if on_progress:
            on_progress(int(at * 1000), int(duration * 1000), at)

    assert isinstance(audio, np.ndarray)  # prepared without VAD (the model runs its own): dense
    r, record = engine.transcribe_whole(audio, decode, vad, progress)
    language = decode.language or r.language
    return Transcript(
        language=language,
        duration=round(duration, 3),
        segments=finish_segments([r], language, text),
        language_probability=round(float(r.language_probability), 4),
        processing_time=round(time.perf_counter() - t0, 3),
        model=engine.model_id,
        options={**options_record(decode, vad, text), **record},
    )


class _Budget:
    """Seconds of decoded audio allowed in memory; acquire() takes all it needs at once
    (piecemeal acquiring by two threads could deadlock)."""

    def __init__(self, total: float):
        self.free = total
        self._cond = threading.Condition()

    def acquire(self, n: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.free >= n)
            self.free -= n

    def release(self, n: float) -> None:
        with self._cond:
            self.free += n
            self._cond.notify_all()


@dataclass
class FileOutcome:
    index: int
    source: Source
    transcript: Transcript | None = None
    error: str | None = None


def transcribe_many(
    sources: list[Source],
    scheduler: Scheduler,
    decode: DecodeOptions | None = None,
    vad: VadOptions | None = DEFAULT_VAD,
    text: TextOptions | None = None,
    on_progress: Callable[[int, float], None] | None = None,
    max_audio_in_memory_s: float = 4 * 3600,
    max_files_in_flight: int | None = None,
    channels: str = "mix",
    diarize: DiarizeOptions | None = None,
) -> Iterator[FileOutcome]:
    """Transcribe many files concurrently; yields outcomes as files finish.

    `on_progress(file_index, audio_seconds_done_delta)` feeds a progress bar. At most
    `max_audio_in_memory_s` of decoded audio is held at once (a 2-hour file is ~460 MB;
    split into channels, each channel counts).
    """
    decode = decode or DecodeOptions()
    in_flight = max_files_in_flight or work_in_flight(scheduler.max_batch_size, scheduler.instances)
    budget = _Budget(max_audio_in_memory_s)

    def one(i: int, src: Source) -> FileOutcome:
        try:
            try:
                need = min(
                    max_audio_in_memory_s, audio_mod.audio_seconds(audio_mod.probe(src), channels == "split") + 1
                )
            except Exception:
                need = 1.0  # let decode() report the real problem
            budget.acquire(need)
            try:
                last = [0.0]
                duration = [0.0]

                def progress(done: int, total: int, secs: float) -> None:
                    # report in file time (what the bar's total is), not speech time
                    at = duration[0] * done / total if total else 0.0
                    if on_progress:
                        on_progress(i, at - last[0])
                    last[0] = at

                p: Prepared | PreparedChannels | None = None
                if channels == "split":  # a whole-request recognizer gets each channel whole
                    whole = takes_whole_requests(scheduler.engine)
                    p = prepare_channels(src, decode, None if whole else vad, scheduler.max_audio_s)
                elif not takes_whole_requests(scheduler.engine):  # it runs its own VAD
                    p = prepare(src, decode, vad, scheduler.max_audio_s)
                duration[0] = p.duration if p else need - 1
                t = transcribe(
                    src,
                    scheduler,
                    decode,
                    vad,
                    text,
                    BATCH,
                    owner=f"file-{i}",
                    on_progress=progress,
                    prepared=p,
                    diarize=diarize,
                )
                if on_progress and t.duration > last[0]:
                    on_progress(i, t.duration - last[0])  # silent files have no windows
                return FileOutcome(i, src, t)
            finally:
                budget.release(need)
        except AudioError as e:
            return FileOutcome(i, src, error=str(e))
        except Exception as e:  # one broken file must not stop the others
            log.exception("file %d failed", i)
            return FileOutcome(i, src, error=f"{type(e).__name__}: {e}")

    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="tingxie-file") as pool:
        pending = {pool.submit(one, i, s) for i, s in enumerate(sources)}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(finished, key=lambda f: f.result().index):
                yield f.result()
