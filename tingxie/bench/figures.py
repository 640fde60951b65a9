"""The figures a bench run reports, from measured times: capacity, cost, percentiles."""

from __future__ import annotations

import math

import numpy as np


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


def cost_figures(
    audio_hours_per_wall_hour: float,
    server_cost: float,
    years: float,
    watts: float,
    kwh_price: float,
    cloud_price: float | None = None,
    hours_per_day: float = 24.0,
) -> dict:
    """Cost per audio hour from the operator's inputs: the server's price spread over
    the hours it runs in `years` (`hours_per_day` a day) plus its power, over the
    audio hours it transcribes in an hour at the measured throughput."""
    hardware = server_cost / (years * 365 * hours_per_day)
    power = watts / 1000 * kwh_price
    per_audio_hour = round((hardware + power) / audio_hours_per_wall_hour, 4) if audio_hours_per_wall_hour else None
    d: dict[str, float | str | None] = {
        "hardware_per_hour": round(hardware, 4),
        "power_per_hour": round(power, 4),
        "server_per_hour": round(hardware + power, 4),
        "per_audio_hour": per_audio_hour,
        "assumes": f"{hours_per_day:g} h/day at the measured batch throughput",
    }
    if cloud_price is not None:
        d["cloud_per_audio_hour"] = cloud_price
        if per_audio_hour:
            d["cloud_over_self_hosted"] = round(cloud_price / per_audio_hour, 1)
    return d


def within_target(points: list[tuple[int, float | None]], target_s: float) -> tuple[int, str]:
    """The most concurrent clients (streams or requests) whose p95 latency meets the
    target, from levels measured at increasing counts: `points` are (count, p95 seconds),
    p95 None for a level that failed (errors, no finals). Returns the count and how it
    was found.

    Between the last level that meets the target and the first that misses it, the count
    is interpolated on the two p95s (rounded down) instead of read off the grid: a grid
    count jumps between its levels (8 or 4 streams) whenever the edge lies near one, and
    a slow second of the host decides which, while the crossing moves only as much as the
    latencies do. Levels after the first miss do not count (a noisy pass above a miss is
    not capacity)."""
    pts = sorted(points)
    prev: tuple[int, float] | None = None
    for n, p95 in pts:
        if p95 is None or p95 > target_s:
            if prev is None:
                return 0, f"{n} already misses it" + (f" (p95 {p95:g} s)" if p95 is not None else " (failed)")
            lo, lo_p95 = prev
            if p95 is None or p95 <= lo_p95:
                return lo, f"{n} failed" if p95 is None else f"{n} misses it (p95 {p95:g} s)"
            cross = lo + (n - lo) * (target_s - lo_p95) / (p95 - lo_p95)
            count = min(n - 1, max(lo, math.floor(cross)))
            return count, f"interpolated between {lo} (p95 {lo_p95:g} s) and {n} (p95 {p95:g} s)"
        prev = (n, p95)
    if prev is None:
        return 0, "no level measured"
    return prev[0], f"the most tried (p95 {prev[1]:g} s); more may fit"


def within_target_interval(
    samples: list[tuple[int, list[float] | None]], target_s: float, resamples: int = 400, seed: int = 0
) -> tuple[int, int]:
    """How sure the count is: within_target over bootstrap resamples of each level's
    latencies, as its 10th–90th percentile. A p95 of 30–50 latencies is nearly their
    second-largest, and live finals' latencies have two modes (a final that arrives while
    every instance is mid-decode waits a whole decode), so on a loaded machine one run's
    count can sit anywhere in this range; the report shows it beside the count."""
    rng = np.random.default_rng(seed)
    counts = []
    for _ in range(resamples):
        pts = [(n, pct(list(rng.choice(xs, len(xs))), 95) if xs else None) for n, xs in samples]
        counts.append(within_target(pts, target_s)[0])
    lo, hi = np.percentile(counts, [10, 90])
    return int(lo), int(hi)


def stream_points(levels: list[dict]) -> list[tuple[int, float | None]]:
    """(streams, final p95) per real-time level; a level without finals failed."""
    return [(r["streams"], r["final_p95"] if r["finals"] else None) for r in levels]


def stream_samples(levels: list[dict]) -> list[tuple[int, list[float] | None]]:
    """(streams, every final's latency) per real-time level, None for a failed level."""
    return [(r["streams"], r.get("final_latencies") or None) for r in levels]


def request_points(levels: list[dict]) -> list[tuple[int, float | None]]:
    """(concurrency, latency p95) per request level; a level with a failed request failed."""
    return [(r["concurrency"], r["latency_p95"] if r["ok"] == r["requests"] else None) for r in levels]


def request_samples(levels: list[dict]) -> list[tuple[int, list[float] | None]]:
    """(concurrency, every request's latency) per level, None for a level with a failure."""
    return [(r["concurrency"], r.get("latencies") if r["ok"] == r["requests"] else None) for r in levels]
