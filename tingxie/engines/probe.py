"""`python -m tingxie.engines.probe FAMILY PATH`: load a model and decode a second of
noise, in a process of its own (registry.probe_load). Exit 0 when it works."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    family, path = argv[0], Path(argv[1])
    from ..device import choose
    from .base import Punctuating, StreamingRecognizer
    from .registry import FAMILIES

    model = FAMILIES[family].factory(path.name, path, choose("cpu", instances=1, threads=1))
    if family == "punctuation" and isinstance(model, Punctuating):
        model.punctuate("今天天气很好")
        return 0
    model.warm_up()
    if isinstance(model, StreamingRecognizer):
        s = model.open_stream()
        s.accept(np.random.default_rng(0).normal(0, 0.01, 16000).astype(np.float32))
        s.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
