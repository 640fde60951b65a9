"""Diarization memory and time on one long recording: the eval clips joined (half-second
pauses) to MINUTES of audio, diarized once as the server does (diarize.turns_of: pieces of
~10 minutes joined by voice print); prints the peak RSS over the process before the
diarizer loaded, the RTF and how often progress moved.

    python bench/diarization_memory.py 60            # one hour, in pieces
    python bench/diarization_memory.py 10 --single   # one sherpa-onnx pass over the whole file
"""

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tingxie import diarize  # noqa: E402
from tingxie.audio import decode  # noqa: E402
from tingxie.engines.diarization import Diarizer  # noqa: E402
from tingxie.engines.diarization import find as diarization_models  # noqa: E402
from tingxie.settings import get_settings  # noqa: E402
from tingxie.types import DiarizeOptions  # noqa: E402

E = ROOT.parent / "shared" / "eval"


def main() -> int:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    rows = [json.loads(line) for line in (E / "manifest.jsonl").read_text().splitlines()]
    clips = [decode(E / r["audio"]) for r in rows]
    parts, n = [], 0
    while n < minutes * 60 * 16000:
        for c in clips:
            parts += [c, np.zeros(8000, np.float32)]
            n += len(c) + 8000
    x = np.concatenate(parts)[: int(minutes * 60 * 16000)]
    del parts, clips
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found = diarization_models.find_diarization(get_settings().models_dir)
    if found is None:
        sys.exit("no diarization models: run `tingxie models --prepare diarization` first")
    d = Diarizer(found.segmentation, found.embedding)
    t0 = time.perf_counter()
    moves: list[float] = []
    if "--single" in sys.argv:
        turns = d.process(x, None, moves.append)
    else:
        turns = diarize.turns_of(d, x, DiarizeOptions(), moves.append)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{minutes} min: {len({t.speaker for t in turns})} speakers, wall {wall:.0f} s, RTF {wall / (minutes * 60):.3f},"
        f" peak RSS {peak:.0f} MB, +{peak - base:.0f} MB over the process before (audio {x.nbytes / 1e6:.0f} MB);"
        f" progress moved {len(moves)} times, last {moves[-1] if moves else 0:.2f}"
        f" ({'one pass' if '--single' in sys.argv else 'in pieces'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
