"""`tingxie bench`: how many concurrent requests and audio hours a day this server
handles, and at what cost per audio hour.

Measures, in one run on this machine: batch capacity (tingxie's defaults next to the
serial reference: one file at a time through faster-whisper's sequential transcribe,
as `tingxie serve --pipeline reference` does), a batch-size × instances sweep,
real-time capacity (paced WebSocket streams against a server), request capacity
(concurrent synchronous POSTs of short files), resources, cost and accuracy (CER/WER
when references exist). Writes JSON, Markdown and a self-contained HTML report.

The package: corpus (audio), clients (HTTP/WebSocket load), monitor (resources),
figures, run (the whole run), report (rendering); this module is the command line.
bench/load.py and bench/realtime.py use the same clients, so every benchmark measures
the same way. Nothing here assumes a source checkout: audio and report paths come from
the arguments (or TINGXIE_BENCH_EVAL).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_REPORT = "capacity.html"  # in the current directory
EVAL_ENV = "TINGXIE_BENCH_EVAL"


# -- argument parsing -----------------------------------------------------------------
def _int_list(option: str, minimum: int = 1):
    def parse(s: str) -> list[int]:
        try:
            vals = [int(x) for x in s.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option} takes comma-separated whole numbers, e.g. 1,2,4 — not {s!r}"
            ) from None
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


def _count(option: str):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes a whole number, not {s!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{option} must be ≥ 1, got {v}")
        return v

    return parse


def _url(s: str) -> str:
    if not s.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"--url must start with http:// or https://, got {s!r}")
    return s.rstrip("/")


MODES = ("batch", "sweep", "realtime", "requests")
# The quick run leaves the settings sweep out: four configurations measured twice do not
# fit in three minutes on 2 cores, and on a handful of files the sweep favours settings
# that only win on small batches. `--modes batch,sweep,realtime,requests` adds it.
QUICK_MODES = ("batch", "realtime", "requests")


def _modes(s: str) -> list[str]:
    vals = [x.strip() for x in s.split(",") if x.strip()]
    bad = [v for v in vals if v not in MODES]
    if bad or not vals:
        raise argparse.ArgumentTypeError(f"--modes takes {', '.join(MODES)} (comma-separated), not {s!r}")
    return vals


def add_arguments(b: argparse.ArgumentParser) -> None:
    a = b.add_argument_group("audio")
    a.add_argument(
        "--audio-dir",
        help="your own recordings, used as they are (default: --eval-set, else the bundled English speech)",
    )
    a.add_argument(
        "--espeak",
        action="store_true",
        help="synthesize English with espeak-ng instead of the bundled speech (needs espeak-ng)",
    )
    a.add_argument(
        "--eval-set",
        default=os.environ.get(EVAL_ENV) or None,
        help=f"an eval set (manifest.jsonl: id, audio, lang, text) whose utterances are joined into recordings (default ${EVAL_ENV})",
    )
    a.add_argument("--refs", help="references in the eval manifest format (jsonl: id, audio, lang, text) for CER/WER")
    a.add_argument(
        "--files",
        type=_int_list("--files"),
        default=[5],
        help="batch sizes in files, e.g. 50,100,200 (default 5: the quick run)",
    )
    a.add_argument(
        "--duration",
        type=_positive("--duration", zero_ok=False),
        default=30.0,
        help="seconds per built-in recording (default 30)",
    )
    a.add_argument("--language", default="auto", help="language hint for every request (default auto)")
    m = b.add_argument_group("what to measure")
    m.add_argument(
        "--modes",
        type=_modes,
        default=list(QUICK_MODES),
        help=f"subset of {','.join(MODES)} (default {','.join(QUICK_MODES)}; add sweep to compare serve settings)",
    )
    m.add_argument(
        "--batch-sizes",
        type=_int_list("--batch-sizes"),
        help="sweep these batch sizes (default: 1 and this device's default)",
    )
    m.add_argument(
        "--instances",
        dest="sweep_instances",
        type=_int_list("--instances"),
        help="sweep these instance counts (default: 1 and this device's default)",
    )
    m.add_argument("--no-reference", action="store_true", help="skip the serial reference run (the reference pipeline)")
    m.add_argument(
        "--repeats",
        type=_count("--repeats"),
        default=3,
        help="runs of each batch configuration, spread over the run; figures are their audio over their time, "
        "with their range (default 3)",
    )
    m.add_argument(
        "--reference-runs",
        type=_count("--reference-runs"),
        default=1,
        help="runs of the serial reference among the repeats (default 1: it is the comparison, not a capacity "
        "figure; the quick run's time goes to the capacity figures)",
    )
    m.add_argument(
        "--streams",
        type=_int_list("--streams"),
        default=None,
        help="concurrent real-time streams to measure (default: a search — 8 doubling while the "
        "target is met, then one level between, 1 only when 8 miss; under two minutes for 16 s streams). The figure is where the final p95 "
        "crosses the target, interpolated between the last level that meets it and the first that misses it",
    )
    m.add_argument(
        "--stream-seconds",
        type=_positive("--stream-seconds", zero_ok=False),
        default=16.0,
        help="audio per stream (default 16: enough sentences per level that one slow final is not its p95)",
    )
    m.add_argument(
        "--slo-ms",
        type=_positive("--slo-ms"),
        default=2000.0,
        help="final-latency p95 target for real time (default 2000)",
    )
    m.add_argument(
        "--concurrency",
        type=_int_list("--concurrency"),
        default=None,
        help="concurrent synchronous requests to measure (default: 2 doubling while the target is met, "
        "1 only when 2 miss it)",
    )
    m.add_argument(
        "--request-slo-ms",
        type=_positive("--request-slo-ms"),
        default=2000.0,
        help="mean-latency target for short requests (default 2000: one 1–7 s request alone takes about 1.1 s "
        "on a 2-core CPU; the p95 is shown beside it, but 24 requests' p95 is their second-slowest and moves "
        "between runs)",
    )
    m.add_argument(
        "--requests",
        type=int,
        default=0,
        help="requests per concurrency level (default 6 × concurrency in whole rounds of the clips, 6–24)",
    )
    s = b.add_argument_group("server")
    s.add_argument("--url", type=_url, help="measure a running deployment over its API instead of starting one")
    s.add_argument("--api-key", help="API key for --url")
    c = b.add_argument_group("cost (shown only when a server price or power is given)")
    c.add_argument("--server-cost", type=_positive("--server-cost", zero_ok=False), help="purchase price of the server")
    c.add_argument("--amortize-years", type=_positive("--amortize-years", zero_ok=False), default=3.0)
    c.add_argument(
        "--hours-per-day",
        type=_positive("--hours-per-day", zero_ok=False),
        default=24.0,
        help="hours a day the server runs (default 24)",
    )
    c.add_argument("--power-watts", type=_positive("--power-watts", zero_ok=False), help="the server's power draw")
    c.add_argument("--kwh-price", type=_positive("--kwh-price", zero_ok=False), help="price of a kWh")
    c.add_argument(
        "--cloud-price", type=_positive("--cloud-price"), help="cloud ASR price per audio hour, for comparison"
    )
    o = b.add_argument_group("output")
    o.add_argument(
        "--report",
        default=DEFAULT_REPORT,
        help=f"HTML report; JSON and Markdown are written next to it (default ./{DEFAULT_REPORT})",
    )
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument(
        "--no-save",
        action="store_true",
        help="do not store the recommended settings for `tingxie serve` (default: stored under TINGXIE_HOME)",
    )


def add_command(sub, add_engine_args) -> None:
    b = sub.add_parser(
        "bench",
        help="measure capacity: audio hours a day, concurrent streams and requests, cost per hour",
        description=__doc__.split("\n\n")[0],
        conflict_handler="resolve",
    )
    add_engine_args(b)
    add_arguments(b)  # its --instances (a sweep list) replaces the engine group's single value
    b.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from .report import summary, write_reports
    from .run import run, save_recommendation, stream_admission

    args.argv = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "bench" else []
    report = run(args)
    saved = save_recommendation(report, args)
    rec = report.get("recommendation")
    if saved and rec and rec.get("swept") is not False:
        rec["saved"] = True
    if saved and (streams := stream_admission(report)) is not None:
        report["realtime"]["admitted_streams"] = streams  # what serve now admits
    paths = write_reports(report, Path(args.report))
    print(summary(report))
    print("wrote " + ", ".join(str(p) for p in paths))
    if saved:
        print(f"`tingxie serve` on this machine now starts with what this run measured (stored in {saved})")
    return 0
