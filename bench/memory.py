"""Peak memory of long, mostly silent inputs (issue 12, "every request has a bound").

Builds (once, with ffmpeg) a 1-hour and a 2-hour silent Opus file and a 1-hour Opus file
with one spoken sentence a minute, then, for each code tree given by --repo, starts
`tingxie serve` (queued-audio budget raised so every request is admitted), warms it up
with a 5 s request (model loaded), and measures the server's RSS:
- growth while one 1-hour silent file, then the 1-hour sparse-speech file, is transcribed
  through /v1/audio/transcriptions (peak minus the RSS just before the request);
- peak while four 2-hour silent files are posted at once.

    python bench/memory.py --repo /path/to/old/checkout=before --repo .=after

RSS is sampled from /proc every 50 ms (Linux only). Writes bench/results/memory.md.
(The CLI is not measured separately: for a silent file it loads the model only at the
end, so its peak is the model's, whatever the decode costs; the server isolates it.)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
RESULTS = REPO / "bench" / "results" / "memory.md"
SENTENCE = "The quarterly report was sent to the board on Tuesday morning."


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def concat(parts: list[Path], out: Path) -> None:
    """Join Opus files end to end without re-encoding (ffmpeg's concat demuxer)."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    sh("ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(out))


def build_inputs(d: Path) -> dict[str, Path]:
    """Silent 1 h / 2 h and sparse-speech 1 h Opus files (2 h = 1 h twice, stream copy)."""
    d.mkdir(parents=True, exist_ok=True)
    f = {
        "short 5 s": d / "short.opus",
        "silent 1 h": d / "silent1h.opus",
        "silent 2 h": d / "silent2h.opus",
        "sparse speech 1 h": d / "sparse1h.opus",
    }
    if not f["short 5 s"].exists():
        sh("espeak-ng", "-w", str(d / "s.wav"), SENTENCE)
        sh(
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(d / "s.wav"),
            "-af",
            "apad=whole_dur=5",
            "-c:a",
            "libopus",
            str(f["short 5 s"]),
        )
    if not f["silent 1 h"].exists():
        sh(
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=48000:cl=mono",
            "-t",
            "3600",
            "-c:a",
            "libopus",
            "-b:a",
            "24k",
            str(f["silent 1 h"]),
        )
    if not f["silent 2 h"].exists():
        concat([f["silent 1 h"]] * 2, f["silent 2 h"])
    if not f["sparse speech 1 h"].exists():  # a sentence, then quiet, to one minute; sixty times
        sh(
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(d / "s.wav"),
            "-af",
            "apad=whole_dur=60",
            "-c:a",
            "libopus",
            str(d / "minute.opus"),
        )
        concat([d / "minute.opus"] * 60, f["sparse speech 1 h"])
    return f


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Peak:
    """Samples a process's RSS in the background; `.peak` is the highest seen."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.05)

    def stop(self) -> float:
        self._stop = True
        self._t.join()
        return self.peak


PREPARE_ONLY = """
import sys, threading, time
from tingxie.transcribe import prepare
from tingxie.types import DecodeOptions, VadOptions
rss = lambda: int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024
prepare(sys.argv[1], DecodeOptions(), VadOptions())  # warm: VAD session, decoder libraries
peak = [0.0]
def sample():
    while True:
        peak[0] = max(peak[0], rss()); time.sleep(0.05)
before = rss(); threading.Thread(target=sample, daemon=True).start()
prepare(sys.argv[2], DecodeOptions(), VadOptions())
print(before, peak[0])
"""


def prepare_growth(repo: Path, short: Path, long: Path) -> tuple[float, float]:
    """RSS growth of decode + VAD + packing alone (`prepare`), in a fresh process."""
    # cwd matters: `python -c` and `-m` put it first on sys.path, ahead of PYTHONPATH
    out = subprocess.run(
        [sys.executable, "-c", PREPARE_ONLY, str(short), str(long)],
        env={**os.environ, "PYTHONPATH": str(repo)},
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def server_run(repo: Path, home: Path, inputs: dict[str, Path], cap_s: float) -> dict:
    from server_fixture import Server

    srv = Server(home, env={"PYTHONPATH": str(repo), "TINGXIE_MAX_QUEUED_AUDIO_S": "1e9"})
    here = os.getcwd()
    os.chdir(repo)  # `python -m tingxie` puts the working directory first on sys.path, ahead of PYTHONPATH
    try:
        srv.start()
    finally:
        os.chdir(here)
    pid = srv.proc.pid

    def post(f: Path) -> int:
        r = httpx.post(
            srv.url + "/v1/audio/transcriptions",
            files={"file": (f.name, f.read_bytes())},
            data={"model": "whisper-base", "response_format": "json"},
            timeout=3600,
        )
        return r.status_code

    try:
        post(inputs["short 5 s"])
        post(inputs["short 5 s"])  # the first request's transient buffers are gone by now
        time.sleep(2)
        out: dict = {"idle": rss_mb(pid)}
        for name in ("silent 1 h", "sparse speech 1 h"):
            before, peak = rss_mb(pid), Peak(pid)
            code = post(inputs[name])
            out[name] = (before, peak.stop(), code)
            print(name, out[name], flush=True)
        codes: list[int] = []
        threads = [
            threading.Thread(target=lambda: codes.append(post(inputs["silent 2 h"])), daemon=True) for _ in range(4)
        ]
        before, peak, t0 = rss_mb(pid), Peak(pid), time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, t0 + cap_s - time.perf_counter()))
        unfinished = sum(t.is_alive() for t in threads)
        out["four"] = (before, peak.stop(), sorted(codes) + ["(stopped)"] * unfinished, time.perf_counter() - t0)
        return out
    finally:
        srv.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", action="append", required=True, help="PATH=LABEL: a checkout to measure")
    ap.add_argument(
        "--prepare-only", action="store_true", help="only measure prepare() (decode + VAD) on the 1-hour silent file"
    )
    ap.add_argument("--cap-s", type=float, default=3600, help="stop the four-file run after this long (peak so far)")
    ap.add_argument("--inputs", default=str(Path(tempfile.gettempdir()) / "tingxie-memory-inputs"))
    args = ap.parse_args()
    inputs = build_inputs(Path(args.inputs))
    if args.prepare_only:
        for spec in args.repo:
            path, _, label = spec.partition("=")
            before, peak = prepare_growth(Path(path).resolve(), inputs["short 5 s"], inputs["silent 1 h"])
            print(f"| {label or path} | silent 1 h | {before:.0f} | {peak:.0f} | {peak - before:+.0f} |", flush=True)
        return 0
    rows, four = [], []
    for spec in args.repo:
        path, _, label = spec.partition("=")
        r = server_run(Path(path).resolve(), Path(tempfile.mkdtemp(prefix="tingxie-mem-srv-")), inputs, args.cap_s)
        for name in ("silent 1 h", "sparse speech 1 h"):
            before, peak, code = r[name]
            rows.append(f"| {label or path} | {name} | {code} | {before:.0f} | {peak:.0f} | {peak - before:+.0f} |")
        before, peak, codes, wall = r["four"]
        four.append(f"| {label or path} | {before:.0f} | {peak:.0f} | {peak - before:+.0f} | {codes} | {wall:.0f} |")
    RESULTS.write_text(
        "\n".join(
            [
                "# Memory of long inputs",
                "",
                f"`python bench/memory.py {' '.join('--repo ' + r for r in args.repo)}` on this machine ({time.strftime('%Y-%m-%d %H:%M')} UTC,",
                "2 shared cores under other load: wall times are not comparable). Inputs: Opus built by ffmpeg (silence: `anullsrc`;",
                "sparse: one espeak-ng sentence a minute). Server RSS in MB, model loaded by a 5 s warm-up request.",
                "",
                "## One request at a time",
                "",
                "| code | file | status | RSS before | peak RSS | growth |",
                "|---|---|---|---|---|---|",
                *rows,
                "",
                "## Four 2-hour silent files posted at once (`TINGXIE_MAX_QUEUED_AUDIO_S=1e9`, so all are admitted)",
                "",
                "| code | RSS before | peak RSS | growth | status codes | wall s |",
                "|---|---|---|---|---|---|",
                *four,
                "",
                "With the default `TINGXIE_MAX_QUEUED_AUDIO_S` (4 h), the third and fourth of these get 503 + Retry-After",
                "(tests/test_bounds.py::test_admission_counts_queued_audio_seconds shows the rule).",
                "",
            ]
        ),
        encoding="utf-8",
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
