"""The figures a bench run reports, from measured times: capacity, cost, percentiles."""

from __future__ import annotations

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


def slo_capacity(levels: list[dict], slo_ms: float) -> int:
    """Largest stream count whose final p95 meets the SLO (0: none does)."""
    ok = [
        r["streams"] for r in levels if r["finals"] and r["final_p95"] is not None and r["final_p95"] * 1000 <= slo_ms
    ]
    return max(ok, default=0)
