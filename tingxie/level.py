"""Level quiet speech: per frame for the VAD, one gain per window for the model.

Silero and Whisper both miss speech that is recorded 20–30 dB below a normal level (a
whisper, a far microphone, a quiet clip inside a loud recording): the VAD reports no
speech and the model returns nothing. Two gains answer that, for two listeners:

- The VAD hears `Leveler`'s gain, per 32 ms frame, so a quiet clip next to a loud one
  is found and the loud one is left alone. The gain only lifts (never lowers), is
  bounded, and only follows sound that stands clearly above the recent noise floor:
  silence and a steady hum keep the gain they had, so pure silence is never amplified.
- The model hears the recording as recorded (`for_model`), or, when a whole window's
  speech is quiet, the window times one constant gain. A gain that steps from frame to
  frame reshapes the spectrum: fed to Whisper it turned "Ten sons sat" into "Ten Sun
  sat" on a recording peaking at −6 dBFS (issue 28), where the frame gain reached
  10–32 dB. A quiet clip packed beside loud speech is not lifted in its window; when
  the model leaves it without text, the lost-speech retry (transcribe.recover) decodes
  it again in a window of its own, where it is lifted.
"""

from __future__ import annotations

import numpy as np

FRAME = 512  # the VAD's frame: 32 ms at 16 kHz
TARGET_DB = -32.0  # frame RMS of loud syllables in normal recordings (AISHELL ≈ −25 dBFS)
MAX_GAIN_DB = 36.0
SILENCE_DB = -65.0  # sound below this never raises the gain: silence, dither, faint hiss
SNR_GATE_DB = 10.0  # sound this far above the noise floor is taken for a signal
HOLD_FRAMES = 10  # level = loudest frame of the last 0.32 s (syllable peaks)
FLOOR_FRAMES = 94  # noise floor = quietest frame of the last 3 s

# The model's window gain. A window's speech level is its SPEECH_PERCENTILE-th frame level
# (its loud syllables; pauses and pads below). On the calibration half of the real speech
# (bench/split.py) that level spans −36…−12 dBFS with a median of −31: every window at or
# above QUIET_DB is left exactly as recorded (10 dB of room below the quietest
# calibration recording), a quieter one is lifted to WINDOW_TARGET_DB, the calibration
# median, never past PEAK_LIMIT_DB at its loudest sample.
SPEECH_PERCENTILE = 95
QUIET_DB = -46.0
WINDOW_TARGET_DB = -31.0
PEAK_LIMIT_DB = -1.0


def frame_db(x: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of each 512-sample frame (a final partial frame is padded)."""
    n = -(-len(x) // FRAME)
    buf = np.zeros(n * FRAME, np.float32)
    buf[: len(x)] = x
    rms = np.sqrt(np.mean(buf.reshape(n, FRAME).astype(np.float64) ** 2, axis=1))
    return (20 * np.log10(np.maximum(rms, 1e-10))).astype(np.float32)


class Leveler:
    """Causal gain for a stream of frames (the VAD's input, fed chunk by chunk)."""

    def __init__(self) -> None:
        self.history = np.zeros(0, np.float32)  # the last FLOOR_FRAMES frame levels
        self.gain = 0.0

    def gains(self, db: np.ndarray) -> np.ndarray:
        """Gain in dB for each new frame level in `db`, continuing the stream."""
        if db.size == 0:
            return db
        hist = np.concatenate([self.history, db])
        k = len(self.history)
        pad_l = np.concatenate([np.full(HOLD_FRAMES - 1, -np.inf, np.float32), hist])
        level = np.lib.stride_tricks.sliding_window_view(pad_l, HOLD_FRAMES).max(axis=1)[k:]
        pad_f = np.concatenate([np.full(FLOOR_FRAMES - 1, np.inf, np.float32), hist])
        floor = np.lib.stride_tricks.sliding_window_view(pad_f, FLOOR_FRAMES).min(axis=1)[k:]
        signal = (level >= SILENCE_DB) & (level >= np.maximum(floor, -100.0) + SNR_GATE_DB)
        raw = np.clip(TARGET_DB - level, 0.0, MAX_GAIN_DB)
        # where there is no signal, keep the gain of the last signal (forward fill)
        idx = np.where(signal, np.arange(db.size), -1)
        np.maximum.accumulate(idx, out=idx)
        out = np.where(idx >= 0, raw[np.maximum(idx, 0)], self.gain).astype(np.float32)
        self.gain = float(out[-1])
        self.history = hist[-FLOOR_FRAMES:]
        return out

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """Frames of shape (n, 512), lifted where quiet."""
        g = self.gains(frame_db(frames.reshape(-1)))
        if not np.any(g > 0):
            return frames
        return np.clip(frames * (10 ** (g / 20))[:, None], -1.0, 1.0).astype(np.float32)


def speech_db(x: np.ndarray) -> float:
    """The level of a stretch's loud syllables: its SPEECH_PERCENTILE-th frame level (dBFS)."""
    if len(x) == 0:
        return -200.0
    return float(np.percentile(frame_db(x), SPEECH_PERCENTILE))


def window_gain_db(x: np.ndarray) -> float:
    """The one gain (dB) the model hears a window with: 0 unless its speech is quiet."""
    level_db = speech_db(x)
    if level_db >= QUIET_DB or level_db < SILENCE_DB:
        return 0.0  # normal speech is left as recorded; silence is not amplified
    peak = float(np.max(np.abs(x)))
    headroom = PEAK_LIMIT_DB - 20 * np.log10(max(peak, 1e-10))
    return float(max(0.0, min(WINDOW_TARGET_DB - level_db, MAX_GAIN_DB, headroom)))


def for_model(x: np.ndarray) -> np.ndarray:
    """What the model hears of a window: the samples as recorded, or, when the window's
    speech is quiet, the samples times one constant gain (never a gain per frame)."""
    g = window_gain_db(x)
    if g <= 0.0:
        return x
    return (x * np.float32(10 ** (g / 20))).astype(np.float32)


def gains(x: np.ndarray) -> np.ndarray:
    """Gain in dB per frame of a whole clip, looking both ways: a quiet stretch right
    after a loud one is lifted from its first frame, a loud onset is never lifted."""
    db = frame_db(x)
    forward = Leveler().gains(db)
    backward = Leveler().gains(db[::-1].copy())[::-1]
    return np.maximum(forward, backward)


def level(x: np.ndarray) -> np.ndarray:
    """`x` with quiet stretches lifted (the input itself when nothing needs lifting)."""
    if len(x) == 0:
        return x
    g = gains(x)
    if not np.any(g > 0.5):
        return x
    centres = np.arange(len(g)) * FRAME + FRAME / 2
    smooth = np.convolve(np.pad(g, 1, mode="edge"), np.ones(3) / 3, mode="valid")  # no clicks at steps
    per_sample = np.interp(np.arange(len(x)), centres, smooth)
    return np.clip(x * (10 ** (per_sample / 20)), -1.0, 1.0).astype(np.float32)
