"""The offline pipeline: file → audio → VAD spans → windows → scheduler → Transcript.

`transcribe` handles one source and blocks; it is what a synchronous request, a job and
a worker task call. `transcribe_many` runs many sources at once so their windows share
batches (cross-file batching), bounding how much decoded audio is held in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np

from . import audio as audio_mod
from . import reference
from . import text as text_mod
from . import vad as vad_mod
from . import windows as windows_mod
from .engine import WindowResult
from .scheduler import BATCH, INTERACTIVE, Scheduler
from .types import SAMPLE_RATE, AudioError, DecodeOptions, Segment, TextOptions, Transcript, VadOptions

log = logging.getLogger(__name__)

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


def prepare(source: Source | np.ndarray, decode: DecodeOptions, vad: VadOptions | None, max_seconds: float = 0.0) -> Prepared:
    """Decode and cut into windows. `vad=None` means fixed 30 s windows (`--vad off`).

    A file is decoded in chunks that go straight through the VAD, and only the audio
    around speech is kept, so memory follows the speech, not the file's length (a
    2-hour silent file costs next to nothing). Audio longer than `max_seconds`
    (0 = no limit) is refused with AudioTooLong.
    """
    t0 = time.perf_counter()
    report = audio_mod.DecodeReport()
    if isinstance(source, np.ndarray):
        audio: np.ndarray | audio_mod.SparseAudio = source
        if max_seconds > 0 and len(source) / SAMPLE_RATE > max_seconds:
            raise audio_mod.AudioTooLong(audio_mod.too_long(len(source) / SAMPLE_RATE, max_seconds))
        if len(audio) == 0:
            raise AudioError("contains no audio samples")
        t1 = time.perf_counter()
        probs = None if vad is None else vad_mod.speech_probabilities(audio)
    elif vad is None:
        audio = audio_mod.decode(source, report=report, max_seconds=max_seconds)
        t1 = time.perf_counter()
    else:
        # decode and VAD interleave here; their shares are not told apart
        audio, probs = vad_mod.scan(audio_mod.decode_chunks(source, report=report, max_seconds=max_seconds), vad)
        t1 = time.perf_counter()
    if vad is None:
        wins = windows_mod.fixed(audio, decode)
    else:
        spans = vad_mod.detect_speech(audio, vad, probs=probs)
        wins = windows_mod.pack(audio, spans, decode, probs=probs)
    t2 = time.perf_counter()
    return Prepared(
        audio,
        len(audio) / SAMPLE_RATE,
        wins,
        sum(w.seconds for w in wins),
        {"decode": t1 - t0, "vad": t2 - t1},
        [report.warning] if report.warning else [],
    )


# Speech left undecoded at the end of a window worth a second pass (seconds).
MIN_REMAINDER_S = 1.5
MAX_PASSES = 3


FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)


def with_fallback(window: windows_mod.Window, result: WindowResult, scheduler: Scheduler, lane: str, owner: str) -> WindowResult:
    """Whisper's temperature fallback, per window: redo a failed decode by sampling at
    rising temperatures; keep the first that passes, else the most likely seen."""
    if window.options.temperature > 0 or not result.needs_fallback:
        return result
    tried = [result]
    for temp in FALLBACK_TEMPERATURES:
        hot = windows_mod.Window(window.source, window.pieces, replace(window.options, temperature=temp, language=result.language), window.compact)
        r = scheduler.submit(hot, lane, owner).result()
        r.language_probability = result.language_probability
        tried.append(r)
        if not r.needs_fallback:
            return r
    return max(tried, key=lambda r: r.avg_logprob)


def complete(window: windows_mod.Window, result: WindowResult, scheduler: Scheduler, lane: str, owner: str) -> WindowResult:
    """Decode again what Whisper left out at the end of a window (it sometimes stops
    early); the continuation batches with everyone else's windows."""
    result = with_fallback(window, result, scheduler, lane, owner)
    w = window
    for _ in range(MAX_PASSES):
        if not result.segments:
            break
        rest = windows_mod.remainder(w, result.segments[-1].end)
        if rest is None or rest.seconds < MIN_REMAINDER_S:
            break
        more = with_fallback(rest, scheduler.submit(rest, lane, owner).result(), scheduler, lane, owner)
        if not more.segments:
            break
        result.segments.extend(more.segments)
        result.tokens += more.tokens
        for k, v in more.timings.items():
            result.timings[k] = result.timings.get(k, 0.0) + v
        w = rest
        result = WindowResult(result.segments, result.language, result.language_probability, result.tokens, result.timings)
    return result


def finish_segments(results: Iterable[WindowResult], language: str, opts: TextOptions) -> list[Segment]:
    """Text stage: cut repetition loops, then ITN and script; number the segments."""
    segments: list[Segment] = []
    for r in results:
        for seg in r.segments:
            raw, cut = text_mod.collapse_repetitions(seg.raw_text)
            if cut and "repetition_cut" not in seg.flags:
                seg.flags.append("repetition_cut")
            seg.raw_text = raw
            seg.text = text_mod.finalize(raw, language, opts)
            if hasattr(seg, "_tokens"):
                del seg._tokens  # type: ignore[attr-defined]
            if seg.text.strip():
                seg.id = len(segments)
                segments.append(seg)
    segments.sort(key=lambda s: s.start)
    for i, s in enumerate(segments):
        s.id = i
    return segments


def options_record(decode: DecodeOptions, vad: VadOptions | None, text: TextOptions) -> dict:
    return {"decode": asdict(decode), "vad": asdict(vad) if vad else None, "text": asdict(text)}


def transcribe(
    source: Source | np.ndarray,
    scheduler: Scheduler,
    decode: DecodeOptions | None = None,
    vad: VadOptions | None = VadOptions(),
    text: TextOptions | None = None,
    lane: str = BATCH,
    owner: str = "",
    on_progress: Progress | None = None,
    prepared: Prepared | None = None,
    check_capacity: bool = False,
) -> Transcript:
    """Transcribe one source through the shared scheduler (blocking).

    With `language=None` the first window is decoded alone to detect the file's
    language, and the rest follow in that language, so one file is never a mix of
    languages picked window by window.
    """
    decode = decode or DecodeOptions()
    text = text or TextOptions()
    t0 = time.perf_counter()
    if scheduler.serial:
        return _transcribe_serially(source, scheduler, decode, vad, text, on_progress, prepared)
    p = prepared or prepare(source, decode, vad, scheduler.max_audio_s)
    total = len(p.windows)
    for w in p.windows:
        w.compact = lane == INTERACTIVE
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

    def run(indexes: list[int], capacity: bool) -> None:
        futures = [(i, scheduler.submit(p.windows[i], lane, owner, capacity and k == 0)) for k, i in enumerate(indexes)]
        for i, f in futures:
            results[i] = complete(p.windows[i], f.result(), scheduler, lane, owner)
            report(i, results[i])

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
    return Transcript(
        language=language or (decode.language or ""),
        duration=round(p.duration, 3),
        segments=segments,
        language_probability=round(float(lang_prob), 4),
        processing_time=round(time.perf_counter() - t0 + (sum(p.timings.values()) if prepared else 0.0), 3),
        model=scheduler.engine.model_id,
        options=opts,
        warnings=list(p.warnings),
    )


def _transcribe_serially(source: Source | np.ndarray, scheduler: Scheduler, decode: DecodeOptions, vad: VadOptions | None,
                         text: TextOptions, on_progress: Progress | None, prepared: Prepared | None) -> Transcript:
    """`--serial`: the reference system's architecture (see reference.py)."""
    t0 = time.perf_counter()
    audio = prepared.audio if prepared else source if isinstance(source, np.ndarray) else audio_mod.decode(source)
    if len(audio) == 0:
        raise AudioError("contains no audio samples")
    duration = len(audio) / SAMPLE_RATE

    def progress(at: float) -> None:
        if on_progress:
            on_progress(int(at * 1000), int(duration * 1000), at)

    with scheduler.serial_turn:
        r = reference.decode_serially(audio, scheduler.engine, decode, vad, progress)
    language = decode.language or r.language
    return Transcript(
        language=language,
        duration=round(duration, 3),
        segments=finish_segments([r], language, text),
        language_probability=round(float(r.language_probability), 4),
        processing_time=round(time.perf_counter() - t0, 3),
        model=scheduler.engine.model_id,
        options={**options_record(decode, vad, text), "serial": True},
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
    vad: VadOptions | None = VadOptions(),
    text: TextOptions | None = None,
    on_progress: Callable[[int, float], None] | None = None,
    max_audio_in_memory_s: float = 4 * 3600,
    max_files_in_flight: int | None = None,
) -> Iterator[FileOutcome]:
    """Transcribe many files concurrently; yields outcomes as files finish.

    `on_progress(file_index, audio_seconds_done_delta)` feeds a progress bar. At most
    `max_audio_in_memory_s` of decoded audio is held at once (a 2-hour file is ~460 MB).
    """
    in_flight = max_files_in_flight or max(2, scheduler.max_batch_size * scheduler.instances * 2)
    budget = _Budget(max_audio_in_memory_s)

    def one(i: int, src: Source) -> FileOutcome:
        try:
            try:
                need = min(max_audio_in_memory_s, audio_mod.probe(src).duration + 1)
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

                p = None if scheduler.serial else prepare(src, decode, vad, scheduler.max_audio_s)  # the reference runs its own VAD
                duration[0] = p.duration if p else need - 1
                t = transcribe(src, scheduler, decode, vad, text, BATCH, owner=f"file-{i}", on_progress=progress, prepared=p)
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
