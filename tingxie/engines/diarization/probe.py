"""`python -m tingxie.engines.diarization.probe SEGMENTATION EMBEDDING`: load both
models in sherpa-onnx's diarizer and run it on a few seconds of noise, in a process of
its own (find.probe_diarization). Exit 0 when it works."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    from . import Diarizer

    d = Diarizer(Path(argv[0]), Path(argv[1]))
    d.process(np.random.default_rng(0).normal(0, 0.05, 16000 * 3).astype(np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
