"""The figures a bench run reports, from measured times: capacity, cost, percentiles."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Statistic:
    """What a level's latencies are read as: its name in the report, and how."""

    name: str
    of: Callable[[list[float]], float | None]


P95 = Statistic("p95", lambda xs: pct(xs, 95))
MEAN = Statistic("mean", lambda xs: round(float(np.mean(xs)), 3) if xs else None)


@dataclass(frozen=True)
class Within:
    """How many concurrent clients (streams or requests) meet a latency target."""

    count: int  # whole clients: what `serve` should admit
    estimate: float  # where the latency crosses the target: the figure two runs are compared by
    how: str  # how it was found, for the report


def within_target(points: list[tuple[int, float | None]], target_s: float, statistic: str = "p95") -> Within:
    """The most concurrent clients (streams or requests) whose latency (`statistic`: p95
    or mean) meets the target, from levels measured at increasing counts: `points` are
    (count, latency seconds), None for a level that failed (errors, no finals).

    Between the last level that meets the target and the first that misses it, the
    crossing is interpolated on the two latencies instead of read off the grid: a grid
    count jumps between its levels (8 or 4 streams) whenever the edge lies near one, and a
    slow second of the host decides which, while the crossing moves only as much as the
    latencies do. The estimate keeps the fraction (2.9 and 3.1 requests are one figure
    measured twice; 2 and 3 would read as 40 % apart); the count is its whole part.
    Levels after the first miss do not count (a noisy pass above a miss is not capacity)."""
    pts = sorted(points)
    prev: tuple[int, float] | None = None
    for n, t in pts:
        if t is None or t > target_s:
            if prev is None:
                return Within(
                    0, 0.0, f"{n} already misses it" + (f" ({statistic} {t:g} s)" if t is not None else " (failed)")
                )
            lo, lo_t = prev
            if t is None or t <= lo_t:
                return Within(lo, float(lo), f"{n} failed" if t is None else f"{n} misses it ({statistic} {t:g} s)")
            cross = min(float(n), max(float(lo), lo + (n - lo) * (target_s - lo_t) / (t - lo_t)))
            count = min(n - 1, max(lo, math.floor(cross)))
            how = f"interpolated between {lo} ({statistic} {lo_t:g} s) and {n} ({statistic} {t:g} s)"
            return Within(count, round(cross, 1), how)
        prev = (n, t)
    if prev is None:
        return Within(0, 0.0, "no level measured")
    return Within(prev[0], float(prev[0]), f"the most tried ({statistic} {prev[1]:g} s); more may fit")


def within_target_interval(
    samples: list[tuple[int, list[float] | None]],
    target_s: float,
    statistic: Statistic = P95,
    resamples: int = 400,
    seed: int = 0,
) -> tuple[float, float]:
    """How sure the estimate is: within_target over bootstrap resamples of each level's
    latencies (read by `statistic`, as the figure reads them), as its 10th–90th
    percentile. A p95 of 30–50 latencies is nearly their second-largest, and live finals'
    latencies have two modes (a final that arrives while every instance is mid-decode
    waits a whole decode), so on a loaded machine one run's figure can sit anywhere in
    this range; the report shows it beside the figure."""
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(resamples):
        pts = [(n, statistic.of(list(rng.choice(xs, len(xs)))) if xs else None) for n, xs in samples]
        estimates.append(within_target(pts, target_s).estimate)
    lo, hi = np.percentile(estimates, [10, 90])
    return round(float(lo), 1), round(float(hi), 1)


def search_levels(
    measure: Callable[[int], float | None],
    target_s: float,
    start: int,
    bisections: int = 0,
    affordable: Callable[[int], bool] = lambda n: True,
    alone_first: bool = True,
) -> list[tuple[int, float | None]]:
    """Measure concurrency levels until the target's crossing is bracketed: 1 (one client
    alone), then `start`, doubling while the target is met, then `bisections` levels
    halving the bracket. `measure(n)` returns the level's latency as the figure reads it
    (p95 or mean; None: it failed); `affordable(n)` says whether the run's time allows
    level n. Returns (level, latency).
    `alone_first=False` starts at `start` and measures one client alone only when
    `start` misses (requests: a level of one client alone is the slowest to measure, and
    the crossing lies above it on any machine that serves two at once).

    A fixed grid (1, 4, 8, 12 streams) tops out on a faster machine ("12, more may fit")
    and brackets the crossing only as finely as its steps; the search finds it on any
    machine, 4 streams wide where the grid's last step was, in as many levels."""
    points: dict[int, float | None] = {}

    def met(n: int) -> bool:
        p = points[n]
        return p is not None and p <= target_s

    n: int | None = 1 if alone_first else max(1, start)
    while n is not None and (n == 1 or affordable(n)):
        points[n] = measure(n)
        if 1 in points and not met(1):
            break
        misses = [k for k in points if not met(k)]
        hi = min(misses) if misses else None
        below = [k for k in points if met(k) and (hi is None or k < hi)]
        if not below:  # the first level missed: one client alone is what is left to learn
            n = 1
            continue
        lo = max(below)
        if hi is None:
            n = max(start, 2 * lo)
        elif bisections > 0 and hi - lo > 1:
            bisections -= 1
            n = (lo + hi) // 2
        else:
            n = None
    return sorted(points.items())


def stream_points(levels: list[dict]) -> list[tuple[int, float | None]]:
    """(streams, final p95) per real-time level; a level without finals, or with a stream
    the server refused or dropped, failed."""
    return [(r["streams"], r["final_p95"] if r["finals"] and not r.get("refused") else None) for r in levels]


def stream_samples(levels: list[dict]) -> list[tuple[int, list[float] | None]]:
    """(streams, every final's latency) per real-time level, None for a failed level."""
    return [(r["streams"], None if r.get("refused") else r.get("final_latencies") or None) for r in levels]


# Short requests are counted on their mean latency, live streams on their finals' p95.
# A request level is 12–24 requests (a stream level 30–130 finals): their p95 is one of
# the two slowest, which clip the slowest request was and what it queued behind, and
# between two quick runs on one quiet machine it moved the figure 17 % (2.78 vs 3.20 s
# at 4 clients; 12 runs: 3.3–4.6 requests) while the mean at every level held to 1 %
# (2.10 / 2.10 s; read on their means, the same 12 runs give 3.2–3.8, the low one a
# slower machine). In a closed loop the mean is clients over throughput (Little's law),
# which is what a level measures well; the p95 stays in the table and the headline.
REQUEST_STATISTIC = MEAN


def request_points(levels: list[dict]) -> list[tuple[int, float | None]]:
    """(concurrency, latency as REQUEST_STATISTIC reads it) per request level; a level
    with a failed request failed."""
    key = f"latency_{REQUEST_STATISTIC.name}"
    return [(r["concurrency"], r[key] if r["ok"] == r["requests"] else None) for r in levels]


def request_samples(levels: list[dict]) -> list[tuple[int, list[float] | None]]:
    """(concurrency, every request's latency) per level, None for a level with a failure."""
    return [(r["concurrency"], r.get("latencies") if r["ok"] == r["requests"] else None) for r in levels]
