"""Constants and helpers shared by test modules, so test modules never import each other
(the fixtures live in conftest.py):

    from helpers import MODELS, write_wav
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# One assembled model shared by every test home (assembling takes seconds).
MODELS = Path(os.environ.get("TINGXIE_TEST_MODELS", Path.home() / ".cache" / "tingxie" / "models"))


def write_wav(path: Path, x: np.ndarray, rate: int = 16000) -> Path:
    """16-bit WAV of `x`: (samples,) mono, or (samples, channels)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if x.ndim == 1 else x.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


# A call for channels=split, as (channel, eval clip, start in seconds): one Mandarin speaker
# (AISHELL S0150) on the left, an English speaker (TIMIT) on the right answering in between,
# so the turns go CH1, CH2, CH1 and each channel is in its own language.
CALL_TURNS = [
    (1, "aishell_sample_BAC009S0150W0193", 0.5),
    (2, "deepspeech_LDC93S1", 6.0),
    (1, "aishell_sample_BAC009S0150W0313", 10.0),
]
CALL_SECONDS = 16.5


def write_call(corpus_dir: Path, path: Path) -> dict[int, tuple[str, str]]:
    """Write the stereo call to `path`; returns per channel (language, reference text)."""
    import json

    from tingxie.audio import decode

    lines = (corpus_dir / "manifest.jsonl").read_text().splitlines()
    manifest = {m["id"]: m for m in (json.loads(line) for line in lines if line.strip())}
    tracks = {c: np.zeros(int(CALL_SECONDS * 16000), np.float32) for c in (1, 2)}
    refs: dict[int, tuple[str, str]] = {}
    for channel, clip, start in CALL_TURNS:
        x = decode(corpus_dir / manifest[clip]["audio"])
        at = int(start * 16000)
        tracks[channel][at : at + x.size] = x
        lang, text = refs.get(channel, (manifest[clip]["lang"], ""))
        refs[channel] = (lang, text + ("" if lang == "zh" else " ") + manifest[clip]["text"])
    write_wav(path, np.stack([tracks[1], tracks[2]], axis=1))
    return refs
