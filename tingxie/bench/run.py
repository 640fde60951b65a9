"""The whole `tingxie bench` run: batch capacity in process, a sweep, then request and
real-time capacity against a server (started locally unless --url)."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np

from ..localserver import LocalServer
from ..text import is_cjk
from ..types import OptionsError
from .clients import post_files, request_level, stream_audio, stream_level, stream_start
from .corpus import SR, accuracy, load_corpus, recordings, short_files
from .figures import (
    P95,
    REQUEST_STATISTIC,
    Statistic,
    capacity_figures,
    cost_figures,
    pct,
    request_points,
    request_samples,
    search_levels,
    stream_points,
    stream_samples,
    within_target,
    within_target_interval,
)
from .monitor import MachineLoad, Monitor

# The searches' limits (tingxie/bench/figures.search_levels): requests per level are
# enough that their latency is not the few slowest's (two runs' p95s of 12 requests at
# 4 clients, 3.0 and 3.6 s, put the figure at 4.0 and 3.4; six per client give 24, and
# the figure now reads their mean, figures.REQUEST_STATISTIC); the
# real-time search stops doubling once its next level would take it past STREAM_SEARCH_S
# (for the default 16 s streams; longer streams get as many levels,
# stream_search_seconds), so the quick run stays within three minutes on 2 cores (a
# GPU's hundreds of streams need --streams).
REQUESTS_PER_CLIENT = 6
REQUESTS_AT_LEAST = 6
REQUESTS_AT_MOST = 24  # a level of 8 clients with 48 took the quick run past three minutes
# Every request level sends the same clips, each as often (whole rounds of at most this
# many): six requests at one and two clients were the first six clips while twelve at
# four were all of them, so the levels compared different clips, and the 7 s clip's
# latency sat in one level's p95 and not in the next.
REQUEST_CLIPS = 12
# Four levels of 16 s streams (8, 16, 32, 24 on this 2-core VM: 80–100 s). The search
# starts at 8 streams, as the request search starts at 2: one stream alone (19 s) moved
# no figure and took the quick run to 2:50 on a slow afternoon of this VM; it is
# measured when 8 already miss the target, or by --streams 1,….
STREAM_SEARCH_S = 100.0
REQUEST_SEARCH_S = 60.0  # no level starts after this many seconds of the request search
BENCH_MAX_STREAMS = 4096


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
    "reference" pipeline (engines/whisper/reference.py) runs one file at a time."""
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
                # words of English segments keep their space (scored as the user reads them)
                sep = "" if is_cjk(o.transcript.language) else " "
                hyps[rows[o.index]["id"]] = sep.join(s.raw_text.strip() for s in o.transcript.segments)
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
    from ..settings import from_overrides

    d = {
        "cores": cpu_cores(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "model": from_overrides(args).model,
    }
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


def aggregate(runs: list[dict]) -> dict:
    """One figure from the repeats of one configuration: their audio over their time
    (the mean wall time), with the run of the median wall time's accuracy, stages and
    resources, and the spread of all of them.

    The mean, not the median: this 2-core VM runs in two speed states (a fixed workload
    26–30 ms for 30–40 s, 21–22 ms for about 12 s between), and a 6–8 s repeat lands in
    one of them, so the median of three reads one state or the other (consecutive runs
    up to 24 % apart over 15 runs), while the mean averages them as a day of work does
    (at most 14 % apart, 8 of 11 pairs within 10 %: bench/results/capacity-runs.md)."""
    walls = sorted(r["wall_seconds"] for r in runs)
    mid = sorted(runs, key=lambda r: r["wall_seconds"])[(len(runs) - 1) // 2]
    mean = float(np.mean(walls))
    d = dict(mid)
    d.update(capacity_figures(mid["files"], mid["audio_seconds"], mean))
    d["repeats"] = len(runs)
    d["wall_seconds_all"] = [round(w, 3) for w in walls]
    d["spread_percent"] = round(100 * (walls[-1] - walls[0]) / mean, 1) if mean else None
    d["audio_hours_per_day_range"] = [
        capacity_figures(mid["files"], mid["audio_seconds"], w)["audio_hours_per_day"] for w in (walls[-1], walls[0])
    ]
    return d


def choose_recommendation(sweep: list[dict], default: tuple[int, int]) -> dict:
    """The sweep's best setting; the device default stays unless the best beats it by
    more than the run-to-run spread (the best of the default's repeats is below the
    worst of the other's), so noise does not move `serve`'s settings."""
    best = max(sweep, key=lambda r: r["audio_hours_per_wall_hour"])
    dflt = next((r for r in sweep if (r["batch_size"], r["instances"]) == default), None)
    why = "measured best"
    if dflt is not None and best is not dflt:
        if max(best["wall_seconds_all"]) >= min(dflt["wall_seconds_all"]):  # the ranges overlap
            why = (
                f"the default: batch {best['batch_size']} × {best['instances']} measured "
                f"{best['audio_hours_per_day']} vs {dflt['audio_hours_per_day']} audio h/day, within the spread of the repeats"
            )
            best = dflt
    return {
        "batch_size": best["batch_size"],
        "instances": best["instances"],
        "threads_per_instance": best["threads_per_instance"],
        "audio_hours_per_day": best["audio_hours_per_day"],
        "why": why,
        "command": f"tingxie serve --batch-size {best['batch_size']} --instances {best['instances']}",
    }


def unswept_recommendation(default: tuple[int, int], threads: int | None) -> dict:
    """What `serve` runs with when no sweep compared settings: the device's defaults
    (measured best on long batches, docs/throughput.md), said as such and never stored."""
    b, i = default
    return {
        "batch_size": b,
        "instances": i,
        "threads_per_instance": threads,
        "why": "the device's defaults; not compared in this run: add --modes batch,sweep to measure others",
        "command": f"tingxie serve --batch-size {b} --instances {i}",
        "swept": False,
    }


def edge_note(
    points: list[tuple[int, float | None]], target_s: float, what: str, option: str, statistic: str = "p95"
) -> str | None:
    """A note when the target lies within 15 % of what the lowest level already takes
    (the fewest streams or requests measured): then the count is that level or not by
    chance, not by capacity, and the operator should set a target this machine can meet."""
    if not points:
        return None
    n, t = min(points, key=lambda x: x[0])
    if t is None or abs(t - target_s) > 0.15 * target_s:
        return None
    return (
        f"{what}: the target ({target_s:g} s) is about what {n} at once take here ({statistic} {t:g} s), "
        f"so the count depends on chance; set {option} to the latency you need"
    )


def count_within(
    points: list[tuple[int, float | None]],
    samples: list[tuple[int, list[float] | None]],
    target_s: float,
    what: str,
    option: str,
    notes: list[str],
    statistic: Statistic = P95,
) -> dict:
    """One capacity figure for streams or requests: the crossing of the target (the
    figure), the whole clients within it (what `serve` admits), how it was read, its range
    over resamples; a note when the target sits at one client's own latency. `points`
    are the levels' latencies as `statistic` reads `samples`."""
    w = within_target(points, target_s, statistic.name)
    if note := edge_note(points, target_s, what, option, statistic.name):
        notes.append(note)
    lo, hi = within_target_interval(samples, target_s, statistic)
    return {"count": w.count, "estimate": w.estimate, "how": w.how, "interval": [lo, hi]}


def spread(repeats: range, groups: int) -> list[list[int]]:
    """`repeats` in `groups` groups in order, the first repeat in the first group and the
    last in the last, the rest evenly between (3 in 3: one each; 2 in 3: first and last;
    5 in 3: two, one, two)."""
    out: list[list[int]] = [[] for _ in range(groups)]
    n = len(repeats)
    for i, rep in enumerate(repeats):
        out[round(i * (groups - 1) / (n - 1)) if n > 1 else 0].append(rep)
    return out


def request_figure(levels: list[dict], target_s: float, notes: list[str]) -> dict:
    """The short-request figure (count_within) from request levels, read on
    figures.REQUEST_STATISTIC."""
    return count_within(
        request_points(levels),
        request_samples(levels),
        target_s,
        "short requests",
        "--request-slo-ms",
        notes,
        REQUEST_STATISTIC,
    )


def stream_search_seconds(stream_seconds: float) -> float:
    """The real-time search's time: STREAM_SEARCH_S for 16 s streams, in proportion for
    longer ones, so that `--stream-seconds 60` still brackets the crossing instead of
    stopping after one stream alone."""
    return STREAM_SEARCH_S * max(1.0, level_seconds(8, stream_seconds) / level_seconds(8, 16.0))


def level_seconds(streams: int, stream_seconds: float) -> float:
    """About how long one real-time level takes: its audio, paced, after the last
    stream's staggered start (clients.stream_level), and the last final."""
    return stream_seconds + stream_start(streams - 1, streams) + 3.0


def run(args: argparse.Namespace) -> dict:
    """Everything `tingxie bench` measures; returns the report dict (see write_reports).

    Every configuration is measured `--repeats` times, the repeats interleaved (A B C A B
    C) so that a change in the machine's load falls on all of them alike; each figure is
    their mean (aggregate) with its range. A configuration is measured once per run and shown
    wherever it appears (the batch table's tingxie row is the sweep's default row)."""
    from tqdm import tqdm

    from ..device import cpu_cores

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
    load = MachineLoad()
    try:
        with load:
            _measure(args, report, language, work, load, tqdm, cpu_cores())
        report["machine_load"] = load.to_dict()
        load.judge_repeats(report["machine_load"], report.get("batch", []) + report.get("sweep", []))
        if report["machine_load"].get("trustworthy") is False:
            report["notes"].insert(
                0,
                "FIGURES NOT TRUSTWORTHY: " + report["machine_load"]["why_not"] + "; "
                "rerun on a quiet machine for the machine's capacity",
            )
        cost = cost_section(report, args)
        if cost:
            report["cost"] = cost
        if not report["audio"]["references"]:
            report["notes"].append("no references: accuracy guard skipped (pass --refs)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def cost_section(report: dict, args: argparse.Namespace) -> dict | None:
    """Cost per audio hour, only from what the operator gave (server price and/or power
    and its price) and the measured batch throughput; None when nothing was given."""
    if not (args.server_cost or (args.power_watts and args.kwh_price)):
        return None
    best = [r for r in report.get("batch", []) if r["mode"] in ("tingxie", "server")]
    if not best:
        report["notes"].append("cost inputs given but no batch run measured throughput: no cost section")
        return None
    top = max(best, key=lambda r: r["audio_hours_per_wall_hour"])
    c = cost_figures(
        top["audio_hours_per_wall_hour"],
        args.server_cost or 0.0,
        args.amortize_years,
        args.power_watts or 0.0,
        args.kwh_price or 0.0,
        args.cloud_price,
        args.hours_per_day,
    )
    c.update(
        {
            "server_cost": args.server_cost or 0.0,
            "amortize_years": args.amortize_years,
            "power_watts": args.power_watts or 0.0,
            "kwh_price": args.kwh_price or 0.0,
            "hours_per_day": args.hours_per_day,
        }
    )
    serial = [r for r in report.get("batch", []) if r["mode"] == "serial"]
    if serial:
        s = max(serial, key=lambda r: r["audio_hours_per_wall_hour"])
        c["serial_per_audio_hour"] = cost_figures(
            s["audio_hours_per_wall_hour"],
            args.server_cost or 0.0,
            args.amortize_years,
            args.power_watts or 0.0,
            args.kwh_price or 0.0,
            None,
            args.hours_per_day,
        )["per_audio_hour"]
    return c


def _measure(args, report: dict, language, work: Path, load: MachineLoad, tqdm, cores: int) -> None:
    corpus = load_corpus(args.audio_dir, args.refs, work, args.eval_set, args.espeak)
    report["audio"] = {
        "source": corpus.source,
        "utterances": len(corpus.utterances),
        "duration_s": args.duration,
        "references": any(u.text for u in corpus.utterances) or any(f.get("text") for f in corpus.files),
    }
    m = report["machine"]
    local = not args.url
    default = (m.get("default_batch_size"), m.get("default_instances"))
    # what to measure, each once: (files, batch, instances, pipeline)
    Key = tuple[int, int, int, str]
    keys: list[Key] = []
    if "batch" in args.modes and local:
        for n in args.files:
            keys.append((n, default[0], default[1], "tingxie"))
            if not args.no_reference:
                keys.append((n, 1, 1, "reference"))
    sweep_keys: list[Key] = []
    if "sweep" in args.modes and local:
        bss = args.batch_sizes or sorted({1, m["default_batch_size"]})
        ins = args.sweep_instances or sorted({1, m["default_instances"]})
        sweep_keys = [(args.files[0], b, i, "tingxie") for i in ins for b in bss]
    keys += [k for k in sweep_keys if k not in keys]
    remote_files = args.files if ("batch" in args.modes and not local) else []
    # the serial reference is the comparison, not a capacity figure: its runs sit in the
    # middle of the repeats (A B A, not A A B), so the quick run's minutes go to capacity
    ref_runs = min(args.reference_runs, args.repeats)
    ref_first = (args.repeats - ref_runs) // 2

    def measured_in(rep: int, k: Key) -> bool:
        return k[3] != "reference" or ref_first <= rep < ref_first + ref_runs

    steps = (
        sum(measured_in(rep, k) for rep in range(args.repeats) for k in keys)
        + args.repeats * len(remote_files)
        + (len(args.streams or [8, 16, 32, 24]) if "realtime" in args.modes else 0)  # a search's usual levels
        + (len(args.concurrency or [2, 4]) if "requests" in args.modes else 0)
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
            # the bench measures what the engine holds, not serve's admission limit
            # (which an earlier bench may have set from what it measured)
            server = LocalServer(engine_server_args(args), env={"TINGXIE_MAX_STREAMS": str(BENCH_MAX_STREAMS)}).start()
            if server.proc:
                load.watch(server.proc.pid)
            url = server.url
        return url

    rows_for = {n: recordings(corpus, n, args.duration, work / "rec", args.seed) for n in {k[0] for k in keys}}
    runs: dict[Key, list[dict]] = {k: [] for k in keys}
    remote_runs: dict[int, list[dict]] = {n: [] for n in remote_files}
    try:

        def batch_repeat(rep: int) -> None:
            for k in (k for k in keys if measured_in(rep, k)):
                n, b, i, pipeline = k
                step(f"{n} files, {'serial' if pipeline == 'reference' else f'batch {b} × {i}'}")
                if pipeline == "reference":
                    d = run_batch_local(
                        rows_for[n],
                        args,
                        batch_size=1,
                        instances=1,
                        threads=cores,
                        pipeline="reference",
                        language=language,
                    )
                else:
                    d = run_batch_local(rows_for[n], args, batch_size=b, instances=i, language=language)
                runs[k].append(d)
                bar.update()
            for n in remote_files:
                step(f"{n} files over the API")
                rows = recordings(corpus, n, args.duration, work / "rec", args.seed)
                r = asyncio.run(post_files(url, rows, min(n, 16), args.api_key, language))
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
                remote_runs[n].append(d)
                bar.update()

        def requests_search() -> None:
            u = need_server()
            shorts = short_files(corpus, work / "short")[:REQUEST_CLIPS]
            report["requests"] = []

            def request_latency(c: int) -> float | None:
                step(f"{c} concurrent requests")
                at_least = max(REQUESTS_AT_LEAST, REQUESTS_PER_CLIENT * c)
                rounds = min(-(-at_least // len(shorts)), max(1, REQUESTS_AT_MOST // len(shorts)))
                n_requests = args.requests or len(shorts) * rounds  # whole rounds
                r = request_level(u, shorts, c, n_requests, args.api_key, language)
                report["requests"].append(r)
                bar.update()
                return request_points([r])[0][1]

            if args.concurrency:
                for c in args.concurrency:
                    request_latency(c)
            else:  # closed-loop latency grows in step with clients past saturation: no bisection
                since = time.monotonic()
                search_levels(
                    request_latency,
                    args.request_slo_ms / 1000,
                    start=2,
                    affordable=lambda c: time.monotonic() - since < REQUEST_SEARCH_S,
                    alone_first=False,
                )
            report["requests_slo_ms"] = args.request_slo_ms
            report["requests_slo_statistic"] = REQUEST_STATISTIC.name
            w = request_figure(report["requests"], args.request_slo_ms / 1000, report["notes"])
            report["max_requests_within_slo"] = w["count"]
            report["requests_within_slo_estimate"] = w["estimate"]
            report["requests_within_slo_how"] = w["how"]
            report["requests_within_slo_interval"] = w["interval"]

        def realtime_search() -> None:
            u = need_server()
            speech = stream_audio(corpus, args.stream_seconds, args.seed)
            # scored as the batch rows are: numbers as the model wrote them (the references
            # spell them out), so finals and files compare on the same text
            opts = {"itn": False, **({"language": language} if language else {})}
            rt = report["realtime"] = {
                "slo_ms": args.slo_ms,
                "audio_s_per_stream": round(len(speech.pcm) / SR, 1),
                "levels": [],
            }
            searched_since = time.monotonic()

            def stream_p95(n: int) -> float | None:
                step(f"{n} streams")
                level = asyncio.run(stream_level(u.replace("http", "ws", 1), speech, n, opts, args.api_key))
                rt["levels"].append(level)
                bar.update()
                return stream_points([level])[0][1]

            def affordable(n: int) -> bool:
                spent = time.monotonic() - searched_since
                return spent + level_seconds(n, args.stream_seconds) <= stream_search_seconds(args.stream_seconds)

            with Monitor(server.proc.pid if server and server.proc else None) as mon:
                if args.streams:
                    for n in args.streams:
                        stream_p95(n)
                else:
                    search_levels(
                        stream_p95, args.slo_ms / 1000, start=8, bisections=1, affordable=affordable, alone_first=False
                    )
            rt["levels"].sort(key=lambda r: r["streams"])
            if refused := next((r for r in rt["levels"] if r.get("refused")), None):
                report["notes"].append(
                    f"the server refused streams at {refused['streams']} ({refused['errors'][0]}): "
                    "the live-stream figure is bounded by its admission limit (TINGXIE_MAX_STREAMS), not by what it holds"
                )
            if server:
                rt["server_resources"] = mon.to_dict()
            w = count_within(
                stream_points(rt["levels"]),
                stream_samples(rt["levels"]),
                args.slo_ms / 1000,
                "live streams",
                "--slo-ms",
                report["notes"],
            )
            rt["max_streams_within_slo"] = w["count"]
            rt["within_slo_estimate"] = w["estimate"]
            rt["within_slo_how"] = w["how"]
            rt["within_slo_interval"] = w["interval"]

        # The batch repeats are spread over the run, between the searches (one before the
        # requests, the serial reference's in the middle, one after the streams), not run
        # back to back: this 2-core VM's speed moves by a quarter within a minute, and
        # three repeats in the run's first 40 s gave 521 and 688 hours a day in two runs
        # whose stream and request figures, measured over the next two minutes, agreed to
        # 1 and 3 %. Spread, the repeats sample the machine over the minutes the other
        # figures do, and repeats far apart say its speed changed during the run. (The
        # server started for the searches idles, holding its model, while a repeat runs.)
        searches = [
            f for mode, f in (("requests", requests_search), ("realtime", realtime_search)) if mode in args.modes
        ]
        for group, search in itertools.zip_longest(spread(range(args.repeats), len(searches) + 1), searches):
            for rep in group:
                batch_repeat(rep)
            if search:
                search()
        fig = {k: aggregate(v) for k, v in runs.items()}
        if "batch" in args.modes:
            report["batch"] = []
            for n in args.files:
                if not local:
                    report["batch"].append(aggregate(remote_runs[n]))
                    continue
                t = dict(fig[(n, default[0], default[1], "tingxie")], mode="tingxie")
                report["batch"].append(t)
                if not args.no_reference:
                    s = dict(fig[(n, 1, 1, "reference")], mode="serial")
                    report["batch"].append(s)
                    t["speedup_vs_serial"] = (
                        round(s["wall_seconds"] / t["wall_seconds"], 2) if t["wall_seconds"] else None
                    )
        if sweep_keys:
            report["sweep"] = [dict(fig[k], is_default=(k[1], k[2]) == default) for k in sweep_keys]
            report["recommendation"] = choose_recommendation(report["sweep"], default)
        elif local and default[0]:
            report["recommendation"] = unswept_recommendation(default, m.get("default_threads_per_instance"))
    finally:
        bar.close()
        if server:
            load._sample()  # its CPU, before it ends
            server.stop()


def stream_admission(report: dict) -> int | None:
    """The live streams `serve` should admit, from the real-time levels measured here:
    the most within the latency target (at least 1), or None when every level tried met
    it (capacity lies above what was tried: the setting stays)."""
    rt = report.get("realtime")
    if not rt or not rt.get("levels"):
        return None
    tried = max(r["streams"] for r in rt["levels"])
    n = rt.get("max_streams_within_slo", 0)
    return None if n >= tried else max(1, n)


def save_recommendation(report: dict, args: argparse.Namespace) -> Path | None:
    """Store what `tingxie serve` takes from this run (settings.apply_bench), for this
    model, device and core count: the engine plan when a sweep compared settings, and the
    live streams within the latency target when the real-time levels found the limit."""
    from ..settings import from_overrides

    if args.url or args.no_save:
        return None
    rec = report.get("recommendation") or {}
    swept = bool(rec) and rec.get("swept") is not False
    streams = stream_admission(report)
    if not swept and streams is None:
        return None
    if (report.get("machine_load") or {}).get("trustworthy") is False:
        if rec:
            rec["not_saved"] = "figures not trustworthy: `tingxie serve` keeps its settings"
        return None
    settings = from_overrides(args)
    m = report["machine"]
    path = settings.bench_file
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # what an earlier run stored and this one did not measure stays
        data = json.loads(path.read_text(encoding="utf-8"))
        if (data.get("model"), data.get("device"), data.get("cores")) != (settings.model, m["device"], m["cores"]):
            data = {}
    except (OSError, ValueError, AttributeError):
        data = {}
    data.update(
        {
            "model": settings.model,
            "device": m["device"],
            "compute_type": m["compute_type"],
            "cores": m["cores"],
            "trustworthy": (report.get("machine_load") or {}).get("trustworthy"),
            "command": report["command"],
        }
    )
    if swept:
        data.update(
            {
                "batch_size": rec["batch_size"],
                "instances": rec["instances"],
                "threads_per_instance": rec["threads_per_instance"],
                "audio_hours_per_day": rec["audio_hours_per_day"],
                "measured_at": report["time"],
            }
        )
    if streams is not None:
        data.update({"max_streams": streams, "streams_measured_at": report["time"]})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path
