"""Peak memory of long, mostly silent inputs (issue 12, "every request has a bound").

Builds (once, with ffmpeg) a 1-hour and a 2-hour silent Opus file and a 1-hour Opus file
with one spoken sentence a minute, then measures for each code tree given by --repo:
- `tingxie transcribe FILE`: peak RSS, minus the peak of the same command on a 5 s file
  of the same kind (silent: imports only, no model is loaded; speech: imports and the
  model), i.e. what the long file adds;
- a running `tingxie serve`: peak RSS while four 2-hour files are posted at once
  (with the queued-audio budget raised so all four are admitted), and how many of four
  get 503 under the default settings.

    python bench/memory.py --repo /path/to/old/checkout=before --repo .=after

RSS is sampled from /proc every 50 ms (Linux only). Writes bench/results/memory.md.
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


def build_inputs(d: Path) -> dict[str, Path]:
    """Silent 1 h / 2 h and sparse-speech 1 h Opus files (2 h = 1 h twice, stream copy)."""
    d.mkdir(parents=True, exist_ok=True)
    f = {"short 5 s": d / "short.opus", "silent 5 s": d / "silent5s.opus", "silent 1 h": d / "silent1h.opus", "silent 2 h": d / "silent2h.opus",
         "sparse speech 1 h": d / "sparse1h.opus"}
    if not f["short 5 s"].exists():
        sh("espeak-ng", "-w", str(d / "s.wav"), SENTENCE)
        sh("ffmpeg", "-loglevel", "error", "-y", "-i", str(d / "s.wav"), "-af", "apad=whole_dur=5", "-c:a", "libopus", str(f["short 5 s"]))
    if not f["silent 5 s"].exists():
        sh("ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "5", "-c:a", "libopus", str(f["silent 5 s"]))
    if not f["silent 1 h"].exists():
        sh("ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "3600", "-c:a", "libopus",
           "-b:a", "24k", str(f["silent 1 h"]))
    if not f["silent 2 h"].exists():
        (d / "two.txt").write_text(f"file '{f['silent 1 h']}'\nfile '{f['silent 1 h']}'\n")
        sh("ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(d / "two.txt"), "-c", "copy", str(f["silent 2 h"]))
    if not f["sparse speech 1 h"].exists():  # a sentence, then quiet, to one minute; sixty times
        sh("ffmpeg", "-loglevel", "error", "-y", "-i", str(d / "s.wav"), "-af", "apad=whole_dur=60", "-c:a", "libopus", str(d / "minute.opus"))
        (d / "sixty.txt").write_text("".join(f"file '{d / 'minute.opus'}'\n" for _ in range(60)))
        sh("ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(d / "sixty.txt"), "-c", "copy", str(f["sparse speech 1 h"]))
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


def env_for(repo: Path, home: Path, extra: dict | None = None) -> dict:
    return {**os.environ, "PYTHONPATH": str(repo), "TINGXIE_HOME": str(home), **(extra or {})}


def cli_peak(repo: Path, home: Path, audio: Path) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(prefix="tingxie-mem-out-"))
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "tingxie", "transcribe", str(audio), "-o", str(out), "--format", "json", "--quiet"],
                         env=env_for(repo, home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = Peak(p.pid)
    p.wait()
    return peak.stop(), time.perf_counter() - t0


def server_run(repo: Path, home: Path, inputs: dict[str, Path], extra_env: dict) -> dict:
    from server_fixture import Server

    srv = Server(home, env={"PYTHONPATH": str(repo), **extra_env})
    srv.start()
    try:
        post = lambda f: httpx.post(srv.url + "/v1/audio/transcriptions", files={"file": (f.name, f.read_bytes())},  # noqa: E731
                                    data={"model": "whisper-base", "response_format": "json"}, timeout=1800)
        post(inputs["short 5 s"])
        idle = rss_mb(srv.proc.pid)
        peak = Peak(srv.proc.pid)
        codes: list[int] = []
        threads = [threading.Thread(target=lambda: codes.append(post(inputs["silent 2 h"]).status_code)) for _ in range(4)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {"idle": idle, "peak": peak.stop(), "codes": sorted(codes), "wall": time.perf_counter() - t0}
    finally:
        srv.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", action="append", required=True, help="PATH=LABEL: a checkout to measure")
    ap.add_argument("--inputs", default=str(Path(tempfile.gettempdir()) / "tingxie-memory-inputs"))
    args = ap.parse_args()
    from server_fixture import shared_models

    inputs = build_inputs(Path(args.inputs))
    rows, server_rows = [], []
    for spec in args.repo:
        path, _, label = spec.partition("=")
        repo = Path(path).resolve()
        home = Path(tempfile.mkdtemp(prefix="tingxie-mem-home-"))
        shared_models(home)
        base = {"silent": cli_peak(repo, home, inputs["silent 5 s"])[0], "sparse": cli_peak(repo, home, inputs["short 5 s"])[0]}
        for name in ("silent 1 h", "silent 2 h", "sparse speech 1 h"):
            peak, wall = cli_peak(repo, home, inputs[name])
            b = base[name.split()[0]]
            rows.append(f"| {label or path} | {name} | {b:.0f} | {peak:.0f} | {peak - b:+.0f} | {wall:.0f} |")
            print(rows[-1], flush=True)
        big = server_run(repo, Path(tempfile.mkdtemp(prefix="tingxie-mem-srv-")), inputs, {"TINGXIE_MAX_QUEUED_AUDIO_S": "1e9"})
        dflt = {"peak": float("nan"), "codes": "(no such setting)"}
        if "max_queued_audio_s" in (repo / "tingxie" / "settings.py").read_text():
            dflt = server_run(repo, Path(tempfile.mkdtemp(prefix="tingxie-mem-srv-")), inputs, {})
        server_rows.append(f"| {label or path} | {big['idle']:.0f} | {big['peak']:.0f} | {big['codes']} | {big['wall']:.0f} "
                           f"| {dflt['peak']:.0f} | {dflt['codes']} |")
        print(server_rows[-1], flush=True)
    RESULTS.write_text("\n".join([
        "# Memory of long inputs", "",
        f"`python bench/memory.py {' '.join('--repo ' + r for r in args.repo)}` on this machine ({time.strftime('%Y-%m-%d %H:%M')}).",
        "Inputs: Opus files built by ffmpeg (silence: `anullsrc`; sparse: one espeak-ng sentence a minute).", "",
        "## `tingxie transcribe FILE` (RSS MB; growth = peak minus the peak for a 5 s file)", "",
        "| code | file | peak RSS, 5 s file | peak RSS | growth | wall s |", "|---|---|---|---|---|---|", *rows, "",
        "## `tingxie serve`, four 2-hour silent files posted at once (RSS MB)", "",
        "Queued-audio budget raised (`TINGXIE_MAX_QUEUED_AUDIO_S=1e9`) so all four run, then the default settings.", "",
        "| code | idle after a warm-up | peak | status codes | wall s | peak (defaults) | status codes (defaults) |",
        "|---|---|---|---|---|---|---|", *server_rows, "",
    ]), encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
