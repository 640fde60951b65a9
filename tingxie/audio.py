"""Decode anything FFmpeg reads into 16 kHz mono float32, the one form later stages use.

PyAV bundles FFmpeg, so no system ffmpeg is needed at run time. Every failure becomes
an `AudioError` whose message names the reason (never the file's content), because
users upload whatever their phone or dictaphone produced and need to know what to fix.
"""

from __future__ import annotations

import bisect
import gc
import io
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from tingxie.types import SAMPLE_RATE, AudioError

log = logging.getLogger(__name__)

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO

NOT_FOUND = "file not found"
EMPTY = "file is empty (0 bytes)"
NOT_AUDIO = "not an audio file or unsupported format"
CORRUPT = "corrupt or truncated audio"
NO_STREAM = "no audio stream (video without sound?)"
NO_SAMPLES = "contains no audio samples"

# Initial buffer when the container does not state its duration; grown by 25 % steps.
_UNKNOWN_DURATION_S = 600.0
# A corrupt header may claim days; never reserve more than this up front.
_MAX_RESERVE_S = 4 * 3600.0


@dataclass(frozen=True)
class AudioInfo:
    """What `probe` learns from the container headers (no full decode)."""

    duration: float  # seconds; 0.0 when it cannot be known without decoding
    sample_rate: int
    channels: int
    codec: str
    format: str


# Less than this much audio from a damaged file is nothing usable (no VAD frame of
# speech fits in it): such a file is refused like any other corrupt file.
MIN_DAMAGED_S = 0.1
# Decoding this much less than the container declares means the file was cut short.
_SHORT_FRACTION, _SHORT_SLACK_S = 0.9, 1.0
# Decoded audio is handed on in pieces of about this many seconds.
CHUNK_S = 30.0
# Below this rate audio carries no intelligible speech; a few bytes at 1 Hz would also
# resample to hours of audio (each sample becomes 16000).
MIN_SAMPLE_RATE = 4000
# channels=split transcribes each channel on its own, up to this many (7.1 surround);
# a file with more is refused rather than costing one transcription per channel.
MAX_CHANNELS = 8


class AudioTooLong(AudioError):
    """The audio is longer than the server accepts (HTTP 413)."""

    status = 413


@dataclass
class DecodeReport:
    """What decoding found, filled in as `decode_chunks` runs: the result must say
    when a damaged file was only partly decodable, not just the server log."""

    declared: float = 0.0  # seconds the container/header states; 0.0 when unknown
    decoded: float = 0.0  # seconds actually decoded
    skipped: int = 0  # damaged packets skipped

    @property
    def warning(self) -> str | None:
        short = self.declared > 0 and self.decoded < self.declared * _SHORT_FRACTION - _SHORT_SLACK_S
        if not short and not self.skipped:
            return None
        of = f" of {self.declared:.1f} s declared" if self.declared > 0 else ""
        why = []
        if short:
            why.append("the file ends early (truncated?)")
        if self.skipped:
            why.append(f"{self.skipped} damaged packet(s) skipped")
        return f"audio only partly decodable: decoded {self.decoded:.1f} s{of}; {', '.join(why)}"


def decode(
    source: Source, sample_rate: int = SAMPLE_RATE, report: DecodeReport | None = None, max_seconds: float = 0.0
) -> np.ndarray:
    """Decode the first audio stream to mono float32 at `sample_rate`.

    The output buffer is reserved once from the container's stated duration and
    filled chunk by chunk, so a 2-hour file peaks near its final size (~460 MB)
    instead of the 2-3x that collecting chunks and concatenating would need. Long
    inputs should rather go through `decode_chunks`, which holds one chunk at a time.
    """
    report = report if report is not None else DecodeReport()
    buf: Growable | None = None
    for chunk in decode_chunks(source, sample_rate, report, max_seconds):
        if buf is None:
            buf = Growable.reserved(report, sample_rate)
        buf.extend(chunk)
    assert buf is not None  # decode_chunks raises when nothing was decoded
    return buf.finish()


def decode_chunks(
    source: Source,
    sample_rate: int = SAMPLE_RATE,
    report: DecodeReport | None = None,
    max_seconds: float = 0.0,
    chunk_s: float = CHUNK_S,
    split: bool = False,
) -> Iterator[np.ndarray]:
    """Decode the first audio stream as consecutive mono float32 chunks of about
    `chunk_s` seconds, so memory does not grow with the file's length. With `split`,
    the channels are kept apart: each chunk has shape (channels, samples), the channels
    those of the first frame (at most MAX_CHANNELS, else AudioError).

    Damaged packets are skipped (the rest is kept) and counted in `report`; a file
    that states a duration above `max_seconds` (0 = no limit) is refused before
    decoding, and one that turns out longer while decoding is refused then. A damaged
    file with (almost) nothing decodable raises AudioError naming what was decoded.
    """
    report = report if report is not None else DecodeReport()
    want = max(1, int(chunk_s * sample_rate))
    with _open_audio(source) as (container, stream, head):
        stated = _declared_duration(container, stream)  # for WAV: from the bytes present
        report.declared = _header_duration(head) or stated
        if max_seconds > 0 and stated > max_seconds:
            raise AudioTooLong(too_long(stated, max_seconds))
        resamplers: list[StreamResampler] = []
        rate = channels = 0  # of the current resamplers; channels: the first frame's
        waiting: list[np.ndarray] = []  # decoded frames not yet resampled (at `rate`)
        parts: list[np.ndarray] = []
        held = total = 0

        def resample_waiting(final: bool) -> None:
            """Resample what waits in one go (one call per frame costs more than the
            filter itself); `final` drains the filter too."""
            nonlocal held
            if waiting:
                x = np.concatenate(waiting, axis=1)
                waiting.clear()
                parts.append(np.stack([r.feed(row) for r, row in zip(resamplers, x, strict=True)]))
                held += parts[-1].shape[1]
            if final and resamplers:
                parts.append(np.stack([r.flush() for r in resamplers]))
                held += parts[-1].shape[1]

        for frame in _frames(container, stream):
            if frame is None:
                report.skipped += 1
                continue
            rows = _planar_float(frame)
            if not channels:
                channels = rows.shape[0]
                if split and channels > MAX_CHANNELS:
                    raise AudioError(f"has {channels} channels; channels=split takes at most {MAX_CHANNELS}")
            if frame.sample_rate < MIN_SAMPLE_RATE:
                raise AudioError(f"sample rate {frame.sample_rate} Hz is below {MIN_SAMPLE_RATE} Hz: not speech audio")
            if frame.sample_rate != rate:  # first frame, or the rate changed mid-stream: drain, start anew
                resample_waiting(final=True)
                rate = frame.sample_rate
                resamplers = [StreamResampler(rate, sample_rate) for _ in range(channels if split else 1)]
            waiting.append(_fit_rows(rows, channels) if split else _mixed(rows))
            if sum(w.shape[1] for w in waiting) >= rate // 4:
                resample_waiting(final=False)
            if held >= want:
                total += held
                report.decoded = total / sample_rate
                if max_seconds > 0 and report.decoded > max_seconds:
                    raise AudioTooLong(too_long(report.decoded, max_seconds, at_least=True))
                yield _joined(parts, split)
                parts, held = [], 0
        resample_waiting(final=True)
        resamplers.clear()
    # Older PyAV left resampler graphs in reference cycles that piled up on a
    # long-running server (faster-whisper issue #390). av 18 showed no growth over
    # 300 decodes without this, but pyproject allows av>=12; one collection per file
    # costs milliseconds.
    gc.collect()
    total += held
    report.decoded = total / sample_rate
    if max_seconds > 0 and report.decoded > max_seconds:
        raise AudioTooLong(too_long(report.decoded, max_seconds))
    damaged = report.skipped > 0 or report.warning is not None
    if total == 0 or (damaged and report.decoded < MIN_DAMAGED_S):
        if total == 0 and not damaged and report.declared <= 0:
            raise AudioError(NO_SAMPLES)
        raise AudioError(
            f"{CORRUPT}: nothing decodable (decoded {report.decoded:.2f} s"
            + (f" of {report.declared:.1f} s declared)" if report.declared > 0 else ")")
        )
    if report.warning:
        log.warning("%s", report.warning)
    if held:
        yield _joined(parts, split)


def _joined(parts: list[np.ndarray], split: bool) -> np.ndarray:
    joined = np.concatenate(parts, axis=1)
    return joined if split else joined[0]


# Full scale of each integer sample format (FFmpeg's names without the planar "p").
_FULL_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2.0**31, "s64": 2.0**63}


def _planar_float(frame: av.AudioFrame) -> np.ndarray:
    """A frame's samples as float32 (channels, samples) in [-1, 1]. Channels are mixed
    and split here, not by swresample: PyAV 18 crashed the process (segfault) or
    failed on layouts it cannot remix (an 8-channel 7.1 file kept apart, a 9- or
    10-channel file mixed down), and a user's upload must never do either."""
    x = frame.to_ndarray()
    if not frame.format.is_planar:  # interleaved: (1, samples * channels)
        x = x.reshape(-1, max(1, x.size // max(1, frame.samples))).T
    name = frame.format.name.removesuffix("p")
    if name == "u8":
        return (x.astype(np.float32) - 128.0) / 128.0
    if name in _FULL_SCALE:
        return (x / _FULL_SCALE[name]).astype(np.float32)
    return x.astype(np.float32, copy=False)


def _mixed(rows: np.ndarray) -> np.ndarray:
    """Channels mixed to one at equal power: (L + R) · √½ for stereo, as swresample
    mixes it (the level every measurement here was made at)."""
    if rows.shape[0] == 1:
        return rows
    return (rows.sum(axis=0, keepdims=True) / np.float32(np.sqrt(rows.shape[0]))).astype(np.float32)


def _fit_rows(rows: np.ndarray, channels: int) -> np.ndarray:
    """Keep the first frame's channel count when a stream changes it mid-way (missing
    channels are silent, extra ones dropped), so split channels stay aligned."""
    if rows.shape[0] >= channels:
        return rows[:channels]
    return np.vstack([rows, np.zeros((channels - rows.shape[0], rows.shape[1]), np.float32)])


def check_duration(source: Source, max_seconds: float, split: bool = False) -> float:
    """Cheaply (headers, or a demux pass) find the audio's duration before accepting
    it; raise AudioTooLong over `max_seconds` (0 = no limit). Returns the seconds of
    audio to transcribe (0.0 when unknown; decoding then enforces the limit)."""
    info = probe(source)
    if max_seconds > 0 and info.duration > max_seconds:
        raise AudioTooLong(too_long(info.duration, max_seconds))
    return audio_seconds(info, split)


def audio_seconds(info: AudioInfo, split: bool) -> float:
    """Seconds of audio a transcription handles: split into channels, each counts."""
    return info.duration * (min(max(info.channels, 1), MAX_CHANNELS) if split else 1)


def too_long(seconds: float, limit: float, at_least: bool = False) -> str:
    more = "more than " if at_least else ""
    return f"audio is {more}{seconds:.0f} s long; this server accepts at most {limit:.0f} s per file"


def probe(source: Source) -> AudioInfo:
    """Describe the first audio stream cheaply: headers only, or a demux pass (no
    decoding) when the container does not state its duration (e.g. some WebM)."""
    with _open_audio(source) as (container, stream, _):
        duration = _declared_duration(container, stream)
        if duration <= 0:
            duration = _demuxed_duration(container, stream)
        cc = stream.codec_context
        return AudioInfo(
            duration=duration,
            sample_rate=int(cc.sample_rate or 0),
            channels=int(cc.channels or 0),
            codec=cc.name,
            format=container.format.name,
        )


def pcm16_to_float(b: bytes) -> np.ndarray:
    """Little-endian signed 16-bit PCM (what browsers and SIP gateways send) to float32."""
    if len(b) % 2:
        raise AudioError(f"PCM16 data has an odd number of bytes ({len(b)})")
    return np.frombuffer(b, dtype="<i2").astype(np.float32) / np.float32(32768.0)


def resample(x: np.ndarray, src_rate: int, dst_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a whole mono signal with FFmpeg's swresample (windowed-sinc, low-pass
    filtered), which is clean enough for ASR; no scipy needed."""
    if src_rate == dst_rate:
        return np.asarray(x, dtype=np.float32)
    r = StreamResampler(src_rate, dst_rate)
    out = [r.feed(x), r.flush()]
    return np.concatenate(out)


class StreamResampler:
    """Stateful resampler for real-time chunks: the filter history survives between
    `feed` calls, so chunk borders leave no clicks (a per-chunk `resample` would)."""

    def __init__(self, src_rate: int, dst_rate: int = SAMPLE_RATE) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._r = av.AudioResampler(format="flt", layout="mono", rate=dst_rate) if src_rate != dst_rate else None

    def feed(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        if self._r is None:
            return x
        if x.size == 0:
            return np.zeros(0, np.float32)
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.src_rate
        return _join(self._r.resample(frame))

    def flush(self) -> np.ndarray:
        """Return the samples still inside the filter (call once, at end of stream)."""
        if self._r is None:
            return np.zeros(0, np.float32)
        return _join(self._r.resample(None))


def _join(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


class SparseAudio:
    """A long recording of which only some stretches are kept (speech plus margins),
    addressed by absolute sample like the full array: windows slice it as they would
    the whole file, so an hour of silence costs no memory. Samples not kept read as 0."""

    def __init__(self, length: int = 0) -> None:
        self.length = length
        self._starts: list[int] = []
        self._parts: list[np.ndarray] = []

    def keep(self, start: int, samples: np.ndarray) -> None:
        """Keep `samples` at absolute `start` (after everything kept so far)."""
        if samples.size == 0:
            return
        self._starts.append(start)
        self._parts.append(np.array(samples, dtype=np.float32))  # a copy: never pin a larger buffer
        self.length = max(self.length, start + samples.size)

    @property
    def kept_samples(self) -> int:
        return sum(p.size for p in self._parts)

    @property
    def shape(self) -> tuple[int]:
        return (self.length,)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("SparseAudio takes plain slices only")
        lo, hi, _ = key.indices(self.length)
        out: np.ndarray | None = None
        k = max(bisect.bisect_right(self._starts, lo) - 1, 0)
        for start, part in zip(self._starts[k:], self._parts[k:], strict=False):
            if start >= hi:
                break
            a, b = max(lo, start), min(hi, start + part.size)
            if a >= b:
                continue
            if out is None and a == lo and b == hi:
                return part[a - start : b - start]  # inside one stretch: a view, no copy
            if out is None:
                out = np.zeros(max(hi - lo, 0), np.float32)
            out[a - lo : b - lo] = part[a - start : b - start]
        return out if out is not None else np.zeros(max(hi - lo, 0), np.float32)


class Growable:
    """A float32 buffer grown with realloc (ndarray.resize), which large allocations
    satisfy by remapping pages, so growing never holds two copies at once."""

    def __init__(self, capacity: int) -> None:
        self.data = np.empty(max(capacity, 1), dtype=np.float32)
        self.n = 0

    @classmethod
    def reserved(cls, report: DecodeReport, sample_rate: int = SAMPLE_RATE) -> Growable:
        """Sized once from the duration the container states (known once decoding began)."""
        reserve = report.declared if report.declared > 0 else _UNKNOWN_DURATION_S
        return cls(int(min(reserve, _MAX_RESERVE_S) * sample_rate * 1.01) + sample_rate)

    def extend(self, a: np.ndarray) -> None:
        need = self.n + a.size
        if need > self.data.size:
            self.data.resize(max(need, int(self.data.size * 1.25)), refcheck=False)
        self.data[self.n : need] = a
        self.n = need

    def finish(self) -> np.ndarray:
        self.data.resize(self.n, refcheck=False)
        return self.data


@contextmanager
def _open_audio(
    source: Source,
) -> Iterator[tuple[av.container.InputContainer, av.audio.stream.AudioStream, bytes]]:
    """Open `source`, yielding (container, first audio stream, the file's first bytes),
    and turn every way that can fail into an AudioError with the reason."""
    name, stream_or_path, head = _prepare(source)
    known = _known_magic(head)
    suffix = f" ({name})" if name else ""
    try:
        container = av.open(stream_or_path, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as e:
        log.debug("av.open failed: %s", type(e).__name__)
        raise AudioError((CORRUPT if known else NOT_AUDIO) + suffix) from None
    try:
        if not container.streams.audio:
            raise AudioError((NO_STREAM if known or container.streams.video else NOT_AUDIO) + suffix)
        yield container, container.streams.audio[0], head
    finally:
        container.close()


def _prepare(source: Source) -> tuple[str, str | BinaryIO, bytes]:
    """Check existence and emptiness first (FFmpeg's own errors for these are cryptic)
    and read the first bytes for magic sniffing."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise AudioError(EMPTY)
        return "", io.BytesIO(data), data[:_HEAD]
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.exists():
            raise AudioError(f"{NOT_FOUND} ({p.name})")
        if not p.is_file():
            raise AudioError(f"{NOT_AUDIO} ({p.name} is not a regular file)")
        if p.stat().st_size == 0:
            raise AudioError(f"{EMPTY} ({p.name})")
        with p.open("rb") as f:
            head = f.read(_HEAD)
        return p.name, str(p), head
    # A file-like object: sniff when seekable, leave the position as we found it.
    head = b""
    try:
        pos = source.tell()
        head = source.read(_HEAD)
        source.seek(pos)
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    else:
        if not head:
            raise AudioError(EMPTY)
    name = getattr(source, "name", "")
    return (Path(name).name if isinstance(name, str) else ""), source, head


# Bytes read ahead for magic sniffing and for WAV headers (whose chunks may come
# after LIST/bext metadata).
_HEAD = 4096


def _header_duration(h: bytes) -> float:
    """The duration a WAV header states (data chunk size / byte rate). FFmpeg reports
    a truncated WAV's duration from the bytes present, which hides the truncation."""
    if len(h) < 12 or h[:4] != b"RIFF" or h[8:12] != b"WAVE":
        return 0.0
    pos, rate = 12, 0
    while pos + 8 <= len(h):
        cid, size = h[pos : pos + 4], int.from_bytes(h[pos + 4 : pos + 8], "little")
        if cid == b"fmt " and pos + 16 <= len(h):
            rate = int.from_bytes(h[pos + 16 : pos + 20], "little")  # average bytes per second
        elif cid == b"data":
            # 0 and 0xFFFFFFFF mean "unknown" (streamed WAV); RF64 keeps the size elsewhere
            return size / rate if rate > 0 and 0 < size < 0xFFFFFFFF else 0.0
        pos += 8 + size + (size & 1)
    return 0.0


def _known_magic(h: bytes) -> bool:
    """True when the bytes start like an audio/video container. Distinguishes a damaged
    recording ("corrupt or truncated") from something that never was audio."""
    if len(h) < 4:
        return False
    return (
        h[:4] in (b"RIFF", b"RF64", b"FORM", b"fLaC", b"OggS", b"caff", b".snd", b"\x1aE\xdf\xa3")
        or h[:3] == b"ID3"
        or h[:5] == b"#!AMR"
        or h[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide")
        or h[:4] == b"0&\xb2u"  # ASF / WMA
        or (h[0] == 0xFF and (h[1] & 0xE0) == 0xE0)  # MPEG audio / ADTS sync word
    )


def _declared_duration(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return 0.0


def _demuxed_duration(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float:
    end = 0.0
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    except av.error.FFmpegError:
        pass
    return end


def _frames(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> Iterator[av.AudioFrame | None]:
    """Decoded frames; None marks a packet that failed to decode. A container that
    breaks mid-way ends the stream (keeping what came before) and counts as one error."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError:
            yield None
            try:  # drain what the decoder still holds
                yield from stream.codec_context.decode(None)
            except av.error.FFmpegError:
                pass
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            yield None
            continue
        yield from frames
