"""Decode anything FFmpeg reads into 16 kHz mono float32, the one form later stages use.

PyAV bundles FFmpeg, so no system ffmpeg is needed at run time. Every failure becomes
an `AudioError` whose message names the reason (never the file's content), because
users upload whatever their phone or dictaphone produced and need to know what to fix.
"""

from __future__ import annotations

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


def decode(source: Source, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream to mono float32 at `sample_rate`.

    The output buffer is reserved once from the container's stated duration and
    filled frame by frame, so a 2-hour file peaks near its final size (~460 MB)
    instead of the 2-3x that collecting chunks and concatenating would need.
    Damaged packets are skipped (the rest is kept) and logged by count only.
    """
    with _open_audio(source) as (container, stream):
        declared = _declared_duration(container, stream)
        reserve = declared if declared > 0 else _UNKNOWN_DURATION_S
        buf = _Growable(int(min(reserve, _MAX_RESERVE_S) * sample_rate * 1.01) + sample_rate)
        resampler: av.AudioResampler | None = None
        setup: tuple[str, str, int] | None = None
        errors = 0
        for frame in _frames(container, stream):
            if frame is None:
                errors += 1
                continue
            key = (frame.format.name, frame.layout.name, frame.sample_rate)
            if key != setup:  # parameters changed mid-stream: drain and start anew
                if resampler is not None:
                    buf.extend_frames(resampler.resample(None))
                resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                setup = key
            frame.pts = None  # timestamps of damaged streams are often wrong; unused
            buf.extend_frames(resampler.resample(frame))
        if resampler is not None:
            buf.extend_frames(resampler.resample(None))
        del resampler
    # Older PyAV left resampler graphs in reference cycles that piled up on a
    # long-running server (faster-whisper issue #390). av 18 showed no growth over
    # 300 decodes without this, but pyproject allows av>=12; one collection per file
    # costs milliseconds.
    gc.collect()

    audio = buf.finish()
    if audio.size == 0:
        raise AudioError(CORRUPT if errors or declared > 0 else NO_SAMPLES)
    if errors:
        log.warning("skipped %d damaged packet(s) while decoding audio", errors)
    got = audio.size / sample_rate
    if declared > 0 and got < declared * 0.9 - 1.0:
        log.warning("decoded %.1f s of %.1f s declared; file may be truncated", got, declared)
    return audio


def probe(source: Source) -> AudioInfo:
    """Describe the first audio stream cheaply: headers only, or a demux pass (no
    decoding) when the container does not state its duration (e.g. some WebM)."""
    with _open_audio(source) as (container, stream):
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
        self._r = (
            av.AudioResampler(format="flt", layout="mono", rate=dst_rate)
            if src_rate != dst_rate
            else None
        )

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


class _Growable:
    """A float32 buffer grown with realloc (ndarray.resize), which large allocations
    satisfy by remapping pages, so growing never holds two copies at once."""

    def __init__(self, capacity: int) -> None:
        self.data = np.empty(max(capacity, 1), dtype=np.float32)
        self.n = 0

    def extend_frames(self, frames: list[av.AudioFrame]) -> None:
        for f in frames:
            a = f.to_ndarray().reshape(-1)
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
) -> Iterator[tuple[av.container.InputContainer, av.audio.stream.AudioStream]]:
    """Open `source`, yielding (container, first audio stream), and turn every way
    that can fail into an AudioError with the reason."""
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
        yield container, container.streams.audio[0]
    finally:
        container.close()


def _prepare(source: Source) -> tuple[str, str | BinaryIO, bytes]:
    """Check existence and emptiness first (FFmpeg's own errors for these are cryptic)
    and read the first bytes for magic sniffing."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise AudioError(EMPTY)
        return "", io.BytesIO(data), data[:16]
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.exists():
            raise AudioError(f"{NOT_FOUND} ({p.name})")
        if not p.is_file():
            raise AudioError(f"{NOT_AUDIO} ({p.name} is not a regular file)")
        if p.stat().st_size == 0:
            raise AudioError(f"{EMPTY} ({p.name})")
        with p.open("rb") as f:
            head = f.read(16)
        return p.name, str(p), head
    # A file-like object: sniff when seekable, leave the position as we found it.
    head = b""
    try:
        pos = source.tell()
        head = source.read(16)
        source.seek(pos)
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    else:
        if not head:
            raise AudioError(EMPTY)
    name = getattr(source, "name", "")
    return (Path(name).name if isinstance(name, str) else ""), source, head


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
