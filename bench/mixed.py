"""Live streams beside a batch job on one server: does a final wait behind batch work?

    python bench/mixed.py                      # 1 and 2 streams, alone and beside 4 files of 150 s
    python bench/mixed.py --streams 1,2,4 --files 6 --out /tmp/mixed

An office's day: someone dictates while a colleague's batch of recordings is transcribed
on the same server. Paced validation-half Mandarin streams (bench/realtime.py's
recordings, 25 s each) are measured alone, then again while a batch job of files built
from the same half (0.5–3 s pauses) runs through `/api/jobs`. Latencies as in
bench/realtime.py: first partial from a sentence's first sample, final from its end
sample. Writes mixed.{json,md} to --out (default bench/results).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from realtime import recordings, utterances  # noqa: E402

from tingxie.bench.clients import stream_level  # noqa: E402
from tingxie.bench.corpus import concat_speech, write_wav  # noqa: E402
from tingxie.bench.monitor import MachineLoad, load_sentence  # noqa: E402
from tingxie.bench.report import md_table  # noqa: E402
from tingxie.localserver import LocalServer  # noqa: E402

COLS = [(c, c) for c in ("load", "streams", "first_update_p95", "final_p50", "final_p95", "finals", "error_pct")]


def batch_files(utts, n: int, seconds: float, work: Path) -> list[Path]:
    out = []
    for k in range(n):
        x, _, _ = concat_speech(utts, seconds, random.Random(2000 + k), pause=(0.5, 3.0))
        p = work / f"job_{k:02d}.wav"
        write_wav(p, (np.clip(x, -1, 1) * 32767).astype("<i2"))
        out.append(p)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="1,2", help="stream counts, comma-separated (default 1,2)")
    ap.add_argument("--files", type=int, default=4, help="files in the batch job (default 4)")
    ap.add_argument("--file-seconds", type=float, default=150.0, help="seconds per batch file (default 150)")
    ap.add_argument("--seconds", type=float, default=25.0, help="audio per stream (default 25)")
    ap.add_argument("--half", default="validation", choices=("calibration", "validation"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="folder holding eval/ and eval-extra/")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()
    utts = utterances(Path(a.shared), a.half)
    if not utts:
        ap.error(f"no Mandarin utterances of the {a.half} half under {a.shared}")
    levels = [int(x) for x in a.streams.split(",")]
    speeches = recordings(utts, max(levels), a.seconds, 1.2)
    work = Path(tempfile.mkdtemp(prefix="tx-mixed-"))
    files = batch_files(utts, a.files, a.file_seconds, work)
    opts = {"language": "zh"}
    rows = []
    load = MachineLoad()
    with load:
        srv = LocalServer([]).start()
        if srv.proc:
            load.watch(srv.proc.pid)
        ws = srv.url.replace("http", "ws", 1)
        try:
            for n in levels:
                rows.append({"load": "alone", **asyncio.run(stream_level(ws, speeches, n, opts))})
            with httpx.Client(timeout=600) as c:
                body = [("files", (p.name, p.read_bytes())) for p in files]
                r = c.post(srv.url + "/api/jobs", files=body, data={"language": "zh"})
                r.raise_for_status()
                time.sleep(2)  # the job's windows reach the scheduler
                for n in levels:
                    rows.append({"load": "beside the batch job", **asyncio.run(stream_level(ws, speeches, n, opts))})
        finally:
            srv.stop()
    ml = load.to_dict()
    meta = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python bench/mixed.py " + " ".join(sys.argv[1:]),
        "batch": f"{a.files} files × {a.file_seconds:g} s",
        "machine_load": ml,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mixed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = (
        f"# Live streams beside a batch job ({a.half} half, Mandarin)\n\n"
        f"`{meta['command']}` — {meta['time']}; batch job {meta['batch']}; streams {a.seconds:g} s each; machine: "
        f"{load_sentence(ml)}.\n\n" + md_table(rows, COLS) + "\n"
    )
    (out / "mixed.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
