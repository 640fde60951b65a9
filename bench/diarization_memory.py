"""Diarization memory and time on one long recording: the eval clips joined (half-second
pauses) to MINUTES of audio, diarized once as the server does (diarize.turns_of: pieces of
~10 minutes joined by voice print); prints the peak RSS over the process before the
diarizer loaded, the RTF and how often progress moved, and keeps one row per duration and
mode in bench/results/diarization_memory.json / .md.

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
    mode = "one pass" if "--single" in sys.argv else "in pieces"
    row = {
        "minutes": minutes,
        "mode": mode,
        "speakers": len({t.speaker for t in turns}),
        "wall_s": round(wall),
        "rtf": round(wall / (minutes * 60), 3),
        "peak_rss_mb": round(peak),
        "over_process_mb": round(peak - base),
        "audio_mb": round(x.nbytes / 1e6),
        "progress_moves": len(moves),
        "progress_last": round(moves[-1], 2) if moves else 0.0,
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(
        f"{minutes} min: {row['speakers']} speakers, wall {wall:.0f} s, RTF {row['rtf']:.3f}, peak RSS {peak:.0f} MB,"
        f" +{row['over_process_mb']} MB over the process before (audio {row['audio_mb']} MB);"
        f" progress moved {len(moves)} times, last {row['progress_last']:.2f} ({mode})"
    )
    save(row)
    return 0


def save(row: dict) -> None:
    """One row per (minutes, mode): a new measurement replaces the old one."""
    out = ROOT / "bench" / "results" / "diarization_memory.json"
    rows = json.loads(out.read_text()) if out.exists() else []
    rows = [r for r in rows if (r["minutes"], r["mode"]) != (row["minutes"], row["mode"])] + [row]
    rows.sort(key=lambda r: (r["mode"], r["minutes"]))
    out.write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# Diarization memory and time by duration (bench/diarization_memory.py)",
        "",
        "The eval clips joined with half-second pauses to the duration, diarized as the server does "
        "(`diarize.turns_of`: files over 15 min in ~10-minute pieces joined by voice print; `--single`: one "
        "sherpa-onnx pass), 1 thread, CPU, 2-core machine. *over process*: peak RSS above the process "
        "before the diarizer loaded (the decoded audio, float32, is already in it).",
        "",
        "| minutes | mode | over process (MB) | peak RSS (MB) | audio (MB) | wall (s) | RTF | speakers | progress updates | measured |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['minutes']:g} | {r['mode']} | +{r['over_process_mb']} | {r['peak_rss_mb']} | {r['audio_mb']} | {r['wall_s']}"
        f" | {r['rtf']} | {r['speakers']} | {r['progress_moves']} | {r['measured_at']} |"
        for r in rows
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
