"""`tingxie bench`: how many concurrent requests and audio hours a day this server
handles, and at what cost per audio hour.

Measures, in one run on this machine: batch capacity (tingxie's defaults next to the
serial reference: one file at a time through faster-whisper's sequential transcribe,
as `tingxie serve --serial` does), a batch-size × instances sweep,
real-time capacity (paced WebSocket streams against a server), request capacity
(concurrent synchronous POSTs of short files), resources, cost and accuracy (CER/WER
when references exist). Writes JSON, Markdown and a self-contained HTML report
(`tingxie.bench_report`). The client logic here is shared by bench/realtime.py and
bench/load.py, so every benchmark measures the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .types import OptionsError

SR = 16000
REPO = Path(__file__).resolve().parent.parent
DEFAULT_EVAL = REPO.parent / "shared" / "eval"
DEFAULT_REPORT = REPO / "bench" / "results" / "capacity.html"
AUDIO_EXT = {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".aac", ".wma", ".amr"}
ENGLISH = [
    "The quarterly report shows revenue grew by twelve percent compared with last year.",
    "Please call the customer back before five o'clock and confirm the delivery address.",
    "Our branch will be closed on Monday for the public holiday.",
    "The patient was admitted on Tuesday and discharged three days later.",
    "I would like to open a savings account and transfer two hundred dollars.",
    "The meeting has been moved to the second floor conference room.",
    "Remember to back up the database before installing the new version.",
    "The weather forecast says it will rain heavily this afternoon.",
]


# -- argument parsing -----------------------------------------------------------------
def _int_list(option: str, minimum: int = 1):
    def parse(s: str) -> list[int]:
        try:
            vals = [int(x) for x in s.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes comma-separated whole numbers, e.g. 1,2,4 — not {s!r}") from None
        if not vals:
            raise argparse.ArgumentTypeError(f"{option} needs at least one number")
        bad = [v for v in vals if v < minimum]
        if bad:
            raise argparse.ArgumentTypeError(f"{option} values must be ≥ {minimum}, got {bad[0]}")
        return vals

    return parse


def _positive(option: str, zero_ok: bool = True):
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes a number, not {s!r}") from None
        if v < 0 or (v == 0 and not zero_ok) or v != v:
            raise argparse.ArgumentTypeError(f"{option} must be {'≥ 0' if zero_ok else '> 0'}, got {s}")
        return v

    return parse


def _url(s: str) -> str:
    if not s.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"--url must start with http:// or https://, got {s!r}")
    return s.rstrip("/")


MODES = ("batch", "sweep", "realtime", "requests")


def _modes(s: str) -> list[str]:
    vals = [x.strip() for x in s.split(",") if x.strip()]
    bad = [v for v in vals if v not in MODES]
    if bad or not vals:
        raise argparse.ArgumentTypeError(f"--modes takes {', '.join(MODES)} (comma-separated), not {s!r}")
    return vals


def add_arguments(b: argparse.ArgumentParser) -> None:
    a = b.add_argument_group("audio")
    a.add_argument("--audio-dir", help="your own recordings (default: ../shared/eval, else espeak-ng speech)")
    a.add_argument("--refs", help="references in the eval manifest format (jsonl: id, audio, lang, text) for CER/WER")
    a.add_argument("--files", type=_int_list("--files"), default=[4, 12], help="batch sizes in files, e.g. 50,100,200 (default 4,12)")
    a.add_argument("--duration", type=_positive("--duration", zero_ok=False), default=60.0, help="seconds per built-in recording (default 60)")
    a.add_argument("--language", default="auto", help="language hint for every request (default auto)")
    m = b.add_argument_group("what to measure")
    m.add_argument("--modes", type=_modes, default=list(MODES), help=f"subset of {','.join(MODES)} (default all)")
    m.add_argument("--batch-sizes", type=_int_list("--batch-sizes"), help="sweep these batch sizes (default: 1 and this device's default)")
    m.add_argument("--instances", dest="sweep_instances", type=_int_list("--instances"),
                   help="sweep these instance counts (default: 1 and this device's default)")
    m.add_argument("--no-serial", action="store_true", help="skip the serial reference run")
    m.add_argument("--streams", type=_int_list("--streams"), default=[1, 2, 4], help="concurrent real-time streams (default 1,2,4)")
    m.add_argument("--stream-seconds", type=_positive("--stream-seconds", zero_ok=False), default=20.0, help="audio per stream (default 20)")
    m.add_argument("--slo-ms", type=_positive("--slo-ms"), default=2000.0, help="final-latency p95 target for real time (default 2000)")
    m.add_argument("--concurrency", type=_int_list("--concurrency"), default=[1, 4], help="concurrent synchronous requests (default 1,4)")
    m.add_argument("--requests", type=int, default=0, help="requests per concurrency level (default 2 × concurrency, at least 4)")
    s = b.add_argument_group("server")
    s.add_argument("--url", type=_url, help="measure a running deployment over its API instead of starting one")
    s.add_argument("--api-key", help="API key for --url")
    c = b.add_argument_group("cost")
    c.add_argument("--server-cost", type=_positive("--server-cost"), default=0.0, help="purchase price of the server")
    c.add_argument("--amortize-years", type=_positive("--amortize-years", zero_ok=False), default=3.0)
    c.add_argument("--power-watts", type=_positive("--power-watts"), default=0.0)
    c.add_argument("--kwh-price", type=_positive("--kwh-price"), default=0.0)
    c.add_argument("--cloud-price", type=_positive("--cloud-price"), help="cloud ASR price per audio hour, for comparison")
    o = b.add_argument_group("output")
    o.add_argument("--report", default=str(DEFAULT_REPORT), help="HTML report; JSON and Markdown are written next to it")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    o.add_argument("--seed", type=int, default=0)


def add_command(sub, add_engine_args) -> None:
    b = sub.add_parser("bench", help="measure capacity: audio hours a day, concurrent streams and requests, cost per hour",
                       description=__doc__.split("\n\n")[0], conflict_handler="resolve")
    add_engine_args(b)
    add_arguments(b)  # its --instances (a sweep list) replaces the engine group's single value
    b.set_defaults(func=cmd_bench)


# -- audio ------------------------------------------------------------------------------
@dataclass
class Utterance:
    id: str
    audio: np.ndarray
    lang: str
    text: str | None


@dataclass
class Corpus:
    utterances: list[Utterance]
    source: str
    files: list[dict] = field(default_factory=list)  # user recordings: path, duration, lang, text


def write_wav(path: Path, x: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())


def read_manifest(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise OptionsError(f"--refs {path}: line {n} is not JSON ({e.msg})") from None
            if not isinstance(r, dict) or "text" not in r or not ({"id", "audio"} & r.keys()):
                raise OptionsError(f"--refs {path}: line {n} needs id or audio, and text")
            rows.append(r)
    return rows


def synth_english(out: Path) -> list[Utterance]:
    """English speech from espeak-ng (used when no eval set is around)."""
    from . import audio as audio_mod

    if shutil.which("espeak-ng") is None:
        raise OptionsError("no built-in audio: ../shared/eval is absent and espeak-ng is not installed; pass --audio-dir")
    utts = []
    for i, text in enumerate(ENGLISH):
        raw = out / f"espeak_{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
        utts.append(Utterance(f"espeak_{i}", audio_mod.decode(raw), "en", text))
    return utts


def load_corpus(audio_dir: str | None, refs: str | None, work: Path) -> Corpus:
    from . import audio as audio_mod

    ref_rows = read_manifest(Path(refs)) if refs else []
    if audio_dir:
        d = Path(audio_dir)
        if not d.is_dir():
            raise OptionsError(f"--audio-dir {audio_dir}: no such directory")
        paths = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXT)
        if not paths:
            raise OptionsError(f"--audio-dir {audio_dir}: no audio files in it ({', '.join(sorted(AUDIO_EXT))})")
        if not refs and (d / "manifest.jsonl").is_file():
            ref_rows = read_manifest(d / "manifest.jsonl")
        by_key = {}
        for r in ref_rows:
            for k in (r.get("id"), r.get("audio"), Path(r.get("audio", "")).stem):
                if k:
                    by_key[k] = r
        files = []
        for p in paths:
            r = by_key.get(p.name) or by_key.get(p.stem) or by_key.get(str(p.relative_to(d))) or {}
            try:
                dur = audio_mod.probe(p).duration
            except Exception as e:
                raise OptionsError(f"--audio-dir: {p.name} is not readable audio ({e})") from None
            files.append({"id": p.stem, "path": str(p), "duration": dur, "lang": r.get("lang", ""), "text": r.get("text")})
        utts = [Utterance(f["id"], audio_mod.decode(f["path"]), f["lang"], f["text"]) for f in files[:20] if f["duration"] <= 30]
        if not utts:  # long recordings only: short requests use their first 15 s (no reference)
            utts = [Utterance(files[0]["id"], audio_mod.decode(files[0]["path"])[: 15 * SR], files[0]["lang"], None)]
        return Corpus(utts, f"--audio-dir {audio_dir}", files)
    if (DEFAULT_EVAL / "manifest.jsonl").is_file():
        rows = ref_rows or read_manifest(DEFAULT_EVAL / "manifest.jsonl")
        utts = [Utterance(r.get("id") or Path(r["audio"]).stem, audio_mod.decode(DEFAULT_EVAL / r["audio"]), r.get("lang", ""), r["text"])
                for r in rows if r.get("audio") and (DEFAULT_EVAL / r["audio"]).is_file()]
        zh = [u for u in utts if u.lang == "zh"]
        return Corpus(zh or utts, f"eval set {DEFAULT_EVAL.resolve()} ({'Mandarin' if zh else 'all'} utterances)")
    return Corpus(synth_english(work), "espeak-ng English speech (../shared/eval absent)")


def concat_speech(utts: list[Utterance], seconds: float, rng: random.Random, pause=(0.5, 3.0)) -> tuple[np.ndarray, str, str]:
    """`seconds` of utterances joined by pauses; returns audio, reference text, language."""
    parts, texts, total, lang = [], [], 0, ""
    limit = int(seconds * SR)
    while True:
        u = rng.choice(utts)
        gap = np.zeros(int(rng.uniform(*pause) * SR), np.float32)
        if total + len(u.audio) > limit and parts:
            break
        parts += [u.audio[: limit - total], gap]
        texts.append(u.text or "")
        lang = lang or u.lang
        total += len(u.audio) + len(gap)
        if total >= limit:
            break
    x = np.concatenate(parts)[:limit]
    x = np.pad(x, (0, limit - len(x)))
    has_refs = all(u.text for u in utts)
    sep = "" if lang in ("zh", "ja") else " "
    return x, (sep.join(texts) if has_refs else ""), lang


def recordings(corpus: Corpus, n: int, seconds: float, out: Path, seed: int = 0) -> list[dict]:
    """N recordings: the user's files (cycled), else built from utterances with 0.5–3 s pauses."""
    if corpus.files:
        return [dict(corpus.files[k % len(corpus.files)], id=f"{corpus.files[k % len(corpus.files)]['id']}#{k}") for k in range(n)]
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        path = out / f"rec_{int(seconds)}s_{k:03d}.wav"
        x, text, lang = concat_speech(corpus.utterances, seconds, rng)
        if not path.exists():
            write_wav(path, x)
        rows.append({"id": path.stem, "path": str(path), "duration": len(x) / SR, "lang": lang, "text": text or None})
    return rows


def short_files(corpus: Corpus, out: Path) -> list[dict]:
    """Short utterances as files, for request capacity."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in corpus.utterances:
        p = out / f"short_{u.id}.wav"
        if not p.exists():
            write_wav(p, u.audio)
        rows.append({"id": u.id, "path": str(p), "duration": len(u.audio) / SR, "lang": u.lang, "text": u.text})
    return rows


def accuracy(rows: list[dict], hyps: dict[str, str]) -> dict:
    """CER (zh, ja) / WER (others) in % per language, over rows with references."""
    from .text import error_rate

    out = {}
    for lang in sorted({r["lang"] for r in rows if r.get("text") and r.get("lang")}):
        sel = [r for r in rows if r.get("text") and r["lang"] == lang and r["id"] in hyps]
        if sel:
            try:
                out[lang] = round(100 * error_rate([r["text"] for r in sel], [hyps[r["id"]] for r in sel], lang), 2)
            except ValueError:
                pass
    return out


# -- resources ------------------------------------------------------------------------
def _proc_cpu_rss(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MB) of a process: psutil when installed, else /proc."""
    try:
        import psutil

        p = psutil.Process(pid)
        t = p.cpu_times()
        return t.user + t.system, p.memory_info().rss / 2**20
    except ImportError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        return cpu, rss
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


class Monitor:
    """Samples a process's CPU and RSS, and the GPU through NVML when there is one."""

    def __init__(self, pid: int | None = None, interval: float = 0.2):
        self.pid = pid or os.getpid()
        self.interval = interval
        self.peak_rss_mb = 0.0
        self.gpu_mem_mb = 0.0
        self.gpu_util: list[float] = []
        self._stop = threading.Event()
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self._pynvml = pynvml
        except Exception:  # no pynvml, no driver or no GPU
            self._nvml = None

    def _sample(self) -> None:
        _, rss = _proc_cpu_rss(self.pid)
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        if self._nvml:
            for h in self._nvml:
                try:
                    self.gpu_mem_mb = max(self.gpu_mem_mb, self._pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20)
                    self.gpu_util.append(float(self._pynvml.nvmlDeviceGetUtilizationRates(h).gpu))
                except Exception:
                    pass

    def __enter__(self) -> "Monitor":
        self._cpu0, _ = _proc_cpu_rss(self.pid)
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall = time.perf_counter() - self._t0
        self.cpu_seconds = _proc_cpu_rss(self.pid)[0] - self._cpu0

    def to_dict(self) -> dict:
        from .device import cpu_cores

        d = {
            "cpu_percent_of_all_cores": round(100 * self.cpu_seconds / self.wall / cpu_cores(), 1) if self.wall else None,
            "peak_rss_mb": round(self.peak_rss_mb),
        }
        if self._nvml:
            d["gpu_peak_memory_mb"] = round(self.gpu_mem_mb)
            d["gpu_util_mean_percent"] = round(float(np.mean(self.gpu_util)), 1) if self.gpu_util else None
            d["gpu_util_peak_percent"] = max(self.gpu_util) if self.gpu_util else None
        return d


# -- figures ----------------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


def capacity_figures(files: int, audio_s: float, wall_s: float) -> dict:
    """The reference write-up's columns; hours/day assumes 24 h of full load."""
    per_hour = audio_s / wall_s if wall_s else 0.0
    return {
        "files": files,
        "audio_seconds": round(audio_s, 2),
        "audio_hours": round(audio_s / 3600, 6),
        "wall_seconds": round(wall_s, 4),
        "rtf": round(wall_s / audio_s, 4) if audio_s else None,
        "audio_hours_per_wall_hour": round(per_hour, 2),
        "audio_hours_per_day": round(24 * per_hour, 1),
    }


def cost_figures(audio_hours_per_wall_hour: float, server_cost: float, years: float, watts: float, kwh_price: float,
                 cloud_price: float | None = None) -> dict:
    hardware = server_cost / (years * 365 * 24)
    power = watts / 1000 * kwh_price
    d = {
        "hardware_per_hour": round(hardware, 4),
        "power_per_hour": round(power, 4),
        "server_per_hour": round(hardware + power, 4),
        "per_audio_hour": round((hardware + power) / audio_hours_per_wall_hour, 4) if audio_hours_per_wall_hour else None,
        "assumes": "24 h/day at the measured throughput",
    }
    if cloud_price is not None:
        d["cloud_per_audio_hour"] = cloud_price
        if d["per_audio_hour"]:
            d["cloud_over_self_hosted"] = round(cloud_price / d["per_audio_hour"], 1)
    return d


# -- batch capacity, in process ---------------------------------------------------------
def run_batch_local(rows: list[dict], args: argparse.Namespace, batch_size: int | None = None, instances: int | None = None,
                    threads: int | None = None, serial: bool = False, language: str | None = None) -> dict:
    """Transcribe `rows` with a fresh ModelManager (model load not timed); serial runs one
    file at a time through the reference pipeline (reference.py)."""
    from .cli import _settings
    from .manager import ModelManager
    from .options import build_options
    from .transcribe import transcribe_many

    settings = _settings(args)
    if batch_size is not None:
        settings.batch_size = batch_size
    if instances is not None:
        settings.instances = instances
    if threads is not None:
        settings.threads_per_instance = threads
    settings.serial = serial
    decode, vad, text = build_options(language=language)
    manager = ModelManager(settings)
    try:
        sched = manager.scheduler(settings.model)
        manager.load(settings.model)
        hyps, stages, errors = {}, {}, []
        with Monitor() as mon:
            t0 = time.perf_counter()
            for o in transcribe_many([r["path"] for r in rows], sched, decode, vad, text, max_files_in_flight=1 if serial else None):
                if o.transcript is None:
                    errors.append(o.error)
                    continue
                hyps[rows[o.index]["id"]] = "".join(s.raw_text for s in o.transcript.segments)
                for k, v in o.transcript.options.get("stage_seconds", {}).items():
                    stages[k] = stages.get(k, 0.0) + v
            wall = time.perf_counter() - t0
        c = manager.choice
        d = capacity_figures(len(rows), sum(r["duration"] for r in rows), wall)
        d.update({
            "batch_size": c.batch_size, "instances": c.instances, "threads_per_instance": c.threads, "device": c.label,
            "compute_type": c.compute_type, "pipeline": "reference" if serial else "tingxie",
            "errors": errors, "accuracy_percent": accuracy(rows, hyps),
            "stage_seconds": {k: round(v, 3) for k, v in stages.items()}, "scheduler": sched.stats.to_dict(),
            "resources": mon.to_dict(),
        })
        return d
    finally:
        manager.close()


# -- over the API -------------------------------------------------------------------------
def _headers(api_key: str | None) -> dict:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def post_files(url: str, rows: list[dict], concurrency: int, api_key: str | None = None, language: str | None = None,
                     timeout: float = 3600) -> dict:
    """POST every row to /v1/audio/transcriptions with `concurrency` clients; latencies,
    transcripts and wall time."""
    import httpx

    queue = list(enumerate(rows))
    lat: list[float] = []
    per_id: dict[str, float] = {}
    hyps: dict[str, str] = {}
    errors: list[str] = []
    data = {"response_format": "verbose_json"}
    if language:
        data["language"] = language

    async def client(c: httpx.AsyncClient) -> None:
        while queue:
            i, r = queue.pop(0)
            body = Path(r["path"]).read_bytes()
            t0 = time.perf_counter()
            resp = await c.post(url + "/v1/audio/transcriptions", files={"file": (Path(r["path"]).name, body)}, data=data)
            lat.append(time.perf_counter() - t0)
            per_id[r["id"]] = lat[-1]
            if resp.status_code != 200:
                errors.append(f"{resp.status_code}: {resp.text[:200]}")
                continue
            hyps[r["id"]] = resp.json().get("text", "")

    async with httpx.AsyncClient(timeout=timeout, headers=_headers(api_key)) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*[client(c) for _ in range(max(1, concurrency))])
        wall = time.perf_counter() - t0
    return {"latencies": lat, "latency_by_id": per_id, "hyps": hyps, "errors": errors, "wall": wall}


def request_level(url: str, rows: list[dict], concurrency: int, n_requests: int, api_key: str | None = None,
                  language: str | None = None) -> dict:
    """`n_requests` short files (cycled) at `concurrency`: requests/s, latency p50/p95."""
    reqs = [dict(rows[k % len(rows)], id=f"{rows[k % len(rows)]['id']}#{k}") for k in range(n_requests)]
    r = asyncio.run(post_files(url, reqs, concurrency, api_key, language))
    audio = sum(x["duration"] for x in reqs)
    return {
        "concurrency": concurrency, "requests": n_requests, "ok": n_requests - len(r["errors"]), "errors": r["errors"][:3],
        "wall_seconds": round(r["wall"], 4), "requests_per_s": round(len(r["latencies"]) / r["wall"], 3),
        "latency_p50": pct(r["latencies"], 50), "latency_p95": pct(r["latencies"], 95),
        "audio_s_per_wall_s": round(audio / r["wall"], 2),
    }


async def one_stream(ws_url: str, pcm: np.ndarray, options: dict, offset_s: float, chunk_ms: int = 100, api_key: str | None = None) -> dict:
    """One paced stream to /v1/stream. first: first partial of a sentence − when its
    first sample was sent; final: final received − when its `end` sample was sent (so
    it includes the endpoint silence); lag: audio sent but not covered by the final."""
    import websockets

    await asyncio.sleep(offset_s)  # stagger starts so sentences do not align across streams
    sent_at: list[float] = []
    n = SR * chunk_ms // 1000
    first, final, lag = [], [], []
    seen: set[int] = set()
    q = f"?api_key={api_key}" if api_key else ""
    async with websockets.connect(ws_url + "/v1/stream" + q, max_size=None) as ws:
        await ws.send(json.dumps(options))
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            raise RuntimeError(f"stream refused: {ready}")
        t0 = time.monotonic()

        def when(sec: float) -> float:
            i = min(int(sec * SR) // n, len(sent_at) - 1)
            return sent_at[max(i, 0)]

        async def reader() -> None:
            async for m in ws:
                d, now = json.loads(m), time.monotonic()
                sent_s = len(sent_at) * n / SR
                if d["type"] == "partial" and d["segment_id"] not in seen:
                    seen.add(d["segment_id"])
                    first.append(now - when(d["start"]))
                elif d["type"] == "final":
                    final.append(now - when(d["end"]))
                    lag.append(max(0.0, sent_s - d["end"]))

        task = asyncio.create_task(reader())
        for i in range(0, len(pcm), n):
            sent_at.append(time.monotonic())
            await ws.send(pcm[i : i + n].tobytes())
            await asyncio.sleep(max(0.0, t0 + (i + n) / SR - time.monotonic()))
        await ws.send(json.dumps({"type": "stop"}))
        await task
    return {"first": first, "final": final, "lag": lag, "audio_s": len(pcm) / SR}


async def stream_level(ws_url: str, pcm: np.ndarray, streams: int, options: dict, api_key: str | None = None) -> dict:
    t0 = time.monotonic()
    res = await asyncio.gather(*[one_stream(ws_url, pcm, options, 0.37 * i, api_key=api_key) for i in range(streams)])
    wall = time.monotonic() - t0
    first = [x for r in res for x in r["first"]]
    final = [x for r in res for x in r["final"]]
    lag = [x for r in res for x in r["lag"]]
    return {
        "streams": streams,
        "first_update_p50": pct(first, 50), "first_update_p95": pct(first, 95),
        "final_p50": pct(final, 50), "final_p95": pct(final, 95),
        "lag_p95": pct(lag, 95),
        "audio_s_per_wall_s": round(sum(r["audio_s"] for r in res) / wall, 2),
        "finals": len(final),
    }


def stream_audio(corpus: Corpus, seconds: float, seed: int = 0) -> np.ndarray:
    """PCM16 of utterances with 1 s pauses (sentences the endpointer can close)."""
    x, _, _ = concat_speech(corpus.utterances, seconds, random.Random(seed), pause=(1.0, 1.0))
    return (np.clip(x, -1, 1) * 32767).astype("<i2")


def slo_capacity(levels: list[dict], slo_ms: float) -> int:
    """Largest stream count whose final p95 meets the SLO (0: none does)."""
    ok = [r["streams"] for r in levels if r["finals"] and r["final_p95"] is not None and r["final_p95"] * 1000 <= slo_ms]
    return max(ok, default=0)


# -- a local server -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def link_bundled_model(home: Path, models_dir: Path | None = None) -> None:
    """Give `home` the bundled model by a link to an assembled copy (no copy, no re-join)."""
    from . import models as models_mod
    from .settings import Settings

    src_dir = Path(models_dir or Settings().models_dir)
    models_mod.assemble_bundled(src_dir)
    (home / "models").mkdir(parents=True, exist_ok=True)
    link = home / "models" / models_mod.BUNDLED
    if not link.exists():
        link.symlink_to(src_dir.resolve() / models_mod.BUNDLED)


class LocalServer:
    """`python -m tingxie serve` on a free loopback port with a throw-away TINGXIE_HOME
    whose models dir links the already assembled model. The tests' server fixture is
    this class too."""

    def __init__(self, args: list[str] | None = None, models_dir: Path | None = None, home: Path | None = None,
                 env: dict | None = None, port: int | None = None, ready_path: str = "/readyz"):
        self.args = args or []
        self.home = Path(home or tempfile.mkdtemp(prefix="tingxie-bench-home-"))
        self.models_dir = models_dir
        self.env = env or {}
        self.port = port or free_port()
        self.ready_path = ready_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> "LocalServer":
        import httpx

        self.home.mkdir(parents=True, exist_ok=True)
        link_bundled_model(self.home, self.models_dir)
        inherited = {k: v for k, v in os.environ.items() if k != "TINGXIE_DATABASE_URL"}  # never the caller's database
        env = {**inherited, "TINGXIE_HOME": str(self.home), "PYTHONUNBUFFERED": "1", **self.env}
        self.log = self.home / "server.log"
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tingxie", "serve", "--port", str(self.port), *self.args],
                                     env=env, stdout=self._logf, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout:.0f} s:\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown handlers run."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_logf", None):
            self._logf.close()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def engine_server_args(args: argparse.Namespace) -> list[str]:
    """The bench's engine options, passed on to `tingxie serve`."""
    out = []
    for opt in ("model", "device", "compute_type", "batch_size", "instances", "threads_per_instance"):
        v = getattr(args, opt, None)
        if v is not None:
            out += ["--" + opt.replace("_", "-"), str(v)]
    return out


# -- the whole run -----------------------------------------------------------------------
def _machine(args: argparse.Namespace) -> dict:
    import platform

    from .device import choose, cpu_cores

    d = {"cores": cpu_cores(), "python": sys.version.split()[0], "platform": platform.platform()}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                d["memory_gb"] = round(int(line.split()[1]) / 2**20, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                d["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if not args.url:
        c = choose(args.device or "auto", args.compute_type or "auto", getattr(args, "instances", None) or 0, args.threads_per_instance or 0, args.batch_size or 0)
        d.update({"device": c.label, "compute_type": c.compute_type, "default_batch_size": c.batch_size, "default_instances": c.instances,
                  "default_threads_per_instance": c.threads})
    return d


def _validate(args: argparse.Namespace) -> None:
    if Path(args.report).suffix.lower() not in (".html", ".htm"):
        raise OptionsError(f"--report must name an .html file (JSON and Markdown go next to it), not {args.report!r}")
    if args.refs and not Path(args.refs).is_file():
        raise OptionsError(f"--refs {args.refs}: no such file")
    if args.requests < 0:
        raise OptionsError(f"--requests must be ≥ 0, got {args.requests}")
    if args.api_key and not args.url:
        raise OptionsError("--api-key is for --url (a local bench server needs none)")
    for opt in ("batch_size", "instances", "threads_per_instance"):
        v = getattr(args, opt, None)
        if v is not None and v < 1:
            raise OptionsError(f"--{opt.replace('_', '-')} must be ≥ 1, got {v}")
    if args.url and "sweep" in args.modes and (args.batch_sizes or args.sweep_instances):
        raise OptionsError("--batch-sizes/--instances need a local engine; they cannot change a server at --url")


def run(args: argparse.Namespace) -> dict:
    """Everything `tingxie bench` measures; returns the report dict (see write_reports)."""
    from tqdm import tqdm

    _validate(args)
    language = None if args.language in ("auto", "", None) else args.language
    work = Path(tempfile.mkdtemp(prefix="tingxie-bench-"))
    report: dict = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "command": "tingxie bench " + " ".join(getattr(args, "argv", [])),
                    "target": args.url or "local", "machine": _machine(args), "notes": []}
    try:
        corpus = load_corpus(args.audio_dir, args.refs, work)
        report["audio"] = {"source": corpus.source, "utterances": len(corpus.utterances), "duration_s": args.duration,
                           "references": any(u.text for u in corpus.utterances) or any(f.get("text") for f in corpus.files)}
        m = report["machine"]
        sweep_points: list[tuple[int, int]] = []
        if "sweep" in args.modes and not args.url:
            bss = args.batch_sizes or sorted({1, m["default_batch_size"]})
            ins = args.sweep_instances or sorted({1, m["default_instances"]})
            sweep_points = [(b, i) for i in ins for b in bss]
        steps = (len(args.files) * (1 if args.url or args.no_serial else 2) if "batch" in args.modes else 0) + len(sweep_points) \
            + (len(args.streams) if "realtime" in args.modes else 0) + (len(args.concurrency) if "requests" in args.modes else 0)
        bar = tqdm(total=steps, desc="bench", unit="run", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)

        def step(label: str) -> None:
            bar.set_postfix_str(label)

        server: LocalServer | None = None
        url = args.url

        def need_server() -> str:
            nonlocal server, url
            if url is None:
                step("starting server")
                server = LocalServer(engine_server_args(args)).start()
                url = server.url
            return url

        try:
            if "batch" in args.modes:
                report["batch"] = []
                for n in args.files:
                    rows = recordings(corpus, n, args.duration, work / "rec", args.seed)
                    if args.url:
                        step(f"{n} files over the API")
                        r = asyncio.run(post_files(args.url, rows, min(n, 16), args.api_key, language))
                        d = capacity_figures(n, sum(x["duration"] for x in rows), r["wall"])
                        d.update({"mode": "server", "errors": r["errors"][:3], "accuracy_percent": accuracy(rows, r["hyps"]),
                                  "latency_p50": pct(r["latencies"], 50), "latency_p95": pct(r["latencies"], 95)})
                        report["batch"].append(d)
                        bar.update()
                        continue
                    step(f"{n} files, tingxie")
                    d = run_batch_local(rows, args, language=language)
                    d["mode"] = "tingxie"
                    report["batch"].append(d)
                    bar.update()
                    if not args.no_serial:
                        step(f"{n} files, serial")
                        from .device import cpu_cores

                        s = run_batch_local(rows, args, batch_size=1, instances=1, threads=cpu_cores(), serial=True, language=language)
                        s["mode"] = "serial"
                        report["batch"].append(s)
                        d["speedup_vs_serial"] = round(s["wall_seconds"] / d["wall_seconds"], 2) if d["wall_seconds"] else None
                        bar.update()
            if sweep_points:
                report["sweep"] = []
                rows = recordings(corpus, args.files[0], args.duration, work / "rec", args.seed)
                for b, i in sweep_points:
                    step(f"sweep batch {b} × {i} instances")
                    d = run_batch_local(rows, args, batch_size=b, instances=i, language=language)
                    report["sweep"].append({k: d[k] for k in ("batch_size", "instances", "threads_per_instance", "files", "audio_seconds", "wall_seconds",
                                                              "rtf", "audio_hours_per_wall_hour", "audio_hours_per_day", "accuracy_percent")})
                    bar.update()
                best = max(report["sweep"], key=lambda r: r["audio_hours_per_wall_hour"])
                report["recommendation"] = {"batch_size": best["batch_size"], "instances": best["instances"],
                                            "threads_per_instance": best["threads_per_instance"],
                                            "audio_hours_per_day": best["audio_hours_per_day"],
                                            "command": f"tingxie serve --batch-size {best['batch_size']} --instances {best['instances']}"}
            if "requests" in args.modes:
                u = need_server()
                shorts = short_files(corpus, work / "short")
                report["requests"] = []
                for c in args.concurrency:
                    step(f"{c} concurrent requests")
                    report["requests"].append(request_level(u, shorts, c, args.requests or max(4, 2 * c), args.api_key, language))
                    bar.update()
            if "realtime" in args.modes:
                u = need_server()
                pcm = stream_audio(corpus, args.stream_seconds, args.seed)
                opts = {"language": language} if language else {}
                report["realtime"] = {"slo_ms": args.slo_ms, "audio_s_per_stream": round(len(pcm) / SR, 1), "levels": []}
                with Monitor(server.proc.pid if server else None) as mon:
                    for n in args.streams:
                        step(f"{n} streams")
                        report["realtime"]["levels"].append(asyncio.run(stream_level(u.replace("http", "ws", 1), pcm, n, opts, args.api_key)))
                        bar.update()
                if server:
                    report["realtime"]["server_resources"] = mon.to_dict()
                report["realtime"]["max_streams_within_slo"] = slo_capacity(report["realtime"]["levels"], args.slo_ms)
        finally:
            bar.close()
            if server:
                server.stop()
        best = [r for r in report.get("batch", []) if r["mode"] in ("tingxie", "server")]
        if not best and report.get("requests"):  # no batch run: cost at the short-request throughput
            best = [{"audio_hours_per_wall_hour": max(r["audio_s_per_wall_s"] for r in report["requests"])}]
            report["notes"].append("cost from short-request throughput (no batch run)")
        if best:
            top = max(best, key=lambda r: r["audio_hours_per_wall_hour"])
            report["cost"] = cost_figures(top["audio_hours_per_wall_hour"], args.server_cost, args.amortize_years, args.power_watts,
                                          args.kwh_price, args.cloud_price)
            report["cost"].update({"server_cost": args.server_cost, "amortize_years": args.amortize_years, "power_watts": args.power_watts,
                                   "kwh_price": args.kwh_price})
            serial = [r for r in report.get("batch", []) if r["mode"] == "serial"]
            if serial:
                s = max(serial, key=lambda r: r["audio_hours_per_wall_hour"])
                report["cost"]["serial_per_audio_hour"] = cost_figures(s["audio_hours_per_wall_hour"], args.server_cost, args.amortize_years,
                                                                       args.power_watts, args.kwh_price)["per_audio_hour"]
        if not report["audio"]["references"]:
            report["notes"].append("no references: accuracy guard skipped (pass --refs)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench_report import summary, write_reports

    args.argv = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "bench" else []
    report = run(args)
    paths = write_reports(report, Path(args.report))
    print(summary(report))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
