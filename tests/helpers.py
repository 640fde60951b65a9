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
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())
    return path
