"""The whole `tingxie bench` run: batch capacity in process, a sweep, then request and
real-time capacity against a server (started locally unless --url)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

from ..localserver import LocalServer
from ..types import OptionsError
from .clients import post_files, request_level, stream_audio, stream_level
from .corpus import SR, accuracy, load_corpus, recordings, short_files
from .figures import capacity_figures, cost_figures, pct, slo_capacity
from .monitor import Monitor


def run_batch_local(
    rows: list[dict],
    args: argparse.Namespace,
    batch_size: int | None = None,
    instances: int | None = None,
    threads: int | None = None,
    pipeline: Literal["tingxie", "reference"] = "tingxie",
    language: str | None = None,
) -> dict:
    """Transcribe `rows` with a fresh ModelManager (model load not timed); the
    "reference" pipeline (engines/reference.py) runs one file at a time."""
    from ..manager import ModelManager
    from ..request import TranscriptionOptions
    from ..settings import from_overrides
    from ..transcribe import transcribe_many

    settings = from_overrides(args)
    if batch_size is not None:
        settings.batch_size = batch_size
    if instances is not None:
        settings.instances = instances
    if threads is not None:
        settings.threads_per_instance = threads
    settings.pipeline = pipeline
    decode, vad, text = TranscriptionOptions.parse({"language": language}).pipeline()
    manager = ModelManager(settings)
    try:
        sched = manager.scheduler(settings.model)
        manager.load(settings.model)
        hyps: dict[str, str] = {}
        stages: dict[str, float] = {}
        errors: list = []
        with Monitor() as mon:
            t0 = time.perf_counter()
            for o in transcribe_many(
                [r["path"] for r in rows],
                sched,
                decode,
                vad,
                text,
                max_files_in_flight=1 if pipeline == "reference" else None,
            ):
                if o.transcript is None:
                    errors.append(o.error)
                    continue
                hyps[rows[o.index]["id"]] = "".join(s.raw_text for s in o.transcript.segments)
                for k, v in o.transcript.options.get("stage_seconds", {}).items():
                    stages[k] = stages.get(k, 0.0) + v
            wall = time.perf_counter() - t0
        c = manager.choice
        d = capacity_figures(len(rows), sum(r["duration"] for r in rows), wall)
        d.update(
            {
                "batch_size": c.batch_size,
                "instances": c.instances,
                "threads_per_instance": c.threads,
                "device": c.label,
                "compute_type": c.compute_type,
                "pipeline": settings.pipeline,
                "errors": errors,
                "accuracy_percent": accuracy(rows, hyps),
                "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
                "scheduler": sched.stats.to_dict(),
                "resources": mon.to_dict(),
            }
        )
        return d
    finally:
        manager.close()


def engine_server_args(args: argparse.Namespace) -> list[str]:
    """The bench's engine options, passed on to `tingxie serve`."""
    out = []
    for opt in ("model", "device", "compute_type", "batch_size", "instances", "threads_per_instance"):
        v = getattr(args, opt, None)
        if v is not None:
            out += ["--" + opt.replace("_", "-"), str(v)]
    return out


def machine(args: argparse.Namespace) -> dict:
    import platform

    from ..device import choose, cpu_cores

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
        c = choose(
            args.device or "auto",
            args.compute_type or "auto",
            getattr(args, "instances", None) or 0,
            args.threads_per_instance or 0,
            args.batch_size or 0,
        )
        d.update(
            {
                "device": c.label,
                "compute_type": c.compute_type,
                "default_batch_size": c.batch_size,
                "default_instances": c.instances,
                "default_threads_per_instance": c.threads,
            }
        )
    return d


def _validate(args: argparse.Namespace) -> None:
    if Path(args.report).suffix.lower() not in (".html", ".htm"):
        raise OptionsError(f"--report must name an .html file (JSON and Markdown go next to it), not {args.report!r}")
    if args.eval_set and not (Path(args.eval_set) / "manifest.jsonl").is_file():
        raise OptionsError(f"--eval-set {args.eval_set}: no manifest.jsonl in it")
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
    report: dict = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "tingxie bench " + " ".join(getattr(args, "argv", [])),
        "target": args.url or "local",
        "machine": machine(args),
        "notes": [],
    }
    try:
        corpus = load_corpus(args.audio_dir, args.refs, work, args.eval_set)
        report["audio"] = {
            "source": corpus.source,
            "utterances": len(corpus.utterances),
            "duration_s": args.duration,
            "references": any(u.text for u in corpus.utterances) or any(f.get("text") for f in corpus.files),
        }
        m = report["machine"]
        sweep_points: list[tuple[int, int]] = []
        if "sweep" in args.modes and not args.url:
            bss = args.batch_sizes or sorted({1, m["default_batch_size"]})
            ins = args.sweep_instances or sorted({1, m["default_instances"]})
            sweep_points = [(b, i) for i in ins for b in bss]
        steps = (
            (len(args.files) * (1 if args.url or args.no_reference else 2) if "batch" in args.modes else 0)
            + len(sweep_points)
            + (len(args.streams) if "realtime" in args.modes else 0)
            + (len(args.concurrency) if "requests" in args.modes else 0)
        )
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
                        d.update(
                            {
                                "mode": "server",
                                "errors": r["errors"][:3],
                                "accuracy_percent": accuracy(rows, r["hyps"]),
                                "latency_p50": pct(r["latencies"], 50),
                                "latency_p95": pct(r["latencies"], 95),
                            }
                        )
                        report["batch"].append(d)
                        bar.update()
                        continue
                    step(f"{n} files, tingxie")
                    d = run_batch_local(rows, args, language=language)
                    d["mode"] = "tingxie"
                    report["batch"].append(d)
                    bar.update()
                    if not args.no_reference:
                        step(f"{n} files, serial")
                        from ..device import cpu_cores

                        s = run_batch_local(
                            rows,
                            args,
                            batch_size=1,
                            instances=1,
                            threads=cpu_cores(),
                            pipeline="reference",
                            language=language,
                        )
                        s["mode"] = "serial"
                        report["batch"].append(s)
                        d["speedup_vs_serial"] = (
                            round(s["wall_seconds"] / d["wall_seconds"], 2) if d["wall_seconds"] else None
                        )
                        bar.update()
            if sweep_points:
                report["sweep"] = []
                rows = recordings(corpus, args.files[0], args.duration, work / "rec", args.seed)
                for b, i in sweep_points:
                    step(f"sweep batch {b} × {i} instances")
                    d = run_batch_local(rows, args, batch_size=b, instances=i, language=language)
                    report["sweep"].append(
                        {
                            k: d[k]
                            for k in (
                                "batch_size",
                                "instances",
                                "threads_per_instance",
                                "files",
                                "audio_seconds",
                                "wall_seconds",
                                "rtf",
                                "audio_hours_per_wall_hour",
                                "audio_hours_per_day",
                                "accuracy_percent",
                            )
                        }
                    )
                    bar.update()
                best = max(report["sweep"], key=lambda r: r["audio_hours_per_wall_hour"])
                report["recommendation"] = {
                    "batch_size": best["batch_size"],
                    "instances": best["instances"],
                    "threads_per_instance": best["threads_per_instance"],
                    "audio_hours_per_day": best["audio_hours_per_day"],
                    "command": f"tingxie serve --batch-size {best['batch_size']} --instances {best['instances']}",
                }
            if "requests" in args.modes:
                u = need_server()
                shorts = short_files(corpus, work / "short")
                report["requests"] = []
                for c in args.concurrency:
                    step(f"{c} concurrent requests")
                    report["requests"].append(
                        request_level(u, shorts, c, args.requests or max(4, 2 * c), args.api_key, language)
                    )
                    bar.update()
            if "realtime" in args.modes:
                u = need_server()
                speech = stream_audio(corpus, args.stream_seconds, args.seed)
                opts = {"language": language} if language else {}
                report["realtime"] = {
                    "slo_ms": args.slo_ms,
                    "audio_s_per_stream": round(len(speech.pcm) / SR, 1),
                    "levels": [],
                }
                with Monitor(server.proc.pid if server and server.proc else None) as mon:
                    for n in args.streams:
                        step(f"{n} streams")
                        report["realtime"]["levels"].append(
                            asyncio.run(stream_level(u.replace("http", "ws", 1), speech, n, opts, args.api_key))
                        )
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
            report["cost"] = cost_figures(
                top["audio_hours_per_wall_hour"],
                args.server_cost,
                args.amortize_years,
                args.power_watts,
                args.kwh_price,
                args.cloud_price,
            )
            report["cost"].update(
                {
                    "server_cost": args.server_cost,
                    "amortize_years": args.amortize_years,
                    "power_watts": args.power_watts,
                    "kwh_price": args.kwh_price,
                }
            )
            baseline = [r for r in report.get("batch", []) if r["mode"] == "serial"]
            if baseline:
                s = max(baseline, key=lambda r: r["audio_hours_per_wall_hour"])
                report["cost"]["serial_per_audio_hour"] = cost_figures(
                    s["audio_hours_per_wall_hour"],
                    args.server_cost,
                    args.amortize_years,
                    args.power_watts,
                    args.kwh_price,
                )["per_audio_hour"]
        if not report["audio"]["references"]:
            report["notes"].append("no references: accuracy guard skipped (pass --refs)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report
