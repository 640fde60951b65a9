"""Renders a `tingxie bench` report: terminal summary, Markdown, JSON and a
self-contained HTML page (inline SVG charts, no external assets or heavy deps)."""

from __future__ import annotations

import html
import json
from pathlib import Path

BATCH_COLS = [
    ("mode", "mode"),
    ("files", "files"),
    ("audio_hours", "audio h"),
    ("wall_seconds", "wall s"),
    ("rtf", "RTF"),
    ("audio_hours_per_wall_hour", "audio h / wall h"),
    ("audio_hours_per_day", "audio h / day"),
    ("range", "range (h/day)"),
    ("speedup_vs_serial", "× serial"),
    ("batch_size", "batch"),
    ("instances", "instances"),
    ("accuracy", "CER/WER %"),
]
SWEEP_COLS = [
    ("batch_size", "batch"),
    ("instances", "instances"),
    ("threads_per_instance", "threads"),
    ("wall_seconds", "wall s"),
    ("rtf", "RTF"),
    ("audio_hours_per_wall_hour", "audio h / wall h"),
    ("audio_hours_per_day", "audio h / day"),
    ("range", "range (h/day)"),
    ("accuracy", "CER/WER %"),
    ("default", "device default"),
]
STREAM_COLS = [
    ("streams", "streams"),
    ("first_update_p50", "first partial p50 s"),
    ("first_update_p95", "first partial p95 s"),
    ("final_p50", "final p50 s"),
    ("final_p95", "final p95 s"),
    ("lag_p95", "lag p95 s"),
    ("finals", "finals"),
    ("audio_s_per_wall_s", "audio s / s"),
    ("error_pct", "finals CER/WER %"),
]
REQ_COLS = [
    ("concurrency", "concurrency"),
    ("requests", "requests"),
    ("ok", "ok"),
    ("requests_per_s", "requests/s"),
    ("latency_mean", "latency mean s"),
    ("latency_p50", "latency p50 s"),
    ("latency_p95", "latency p95 s"),
    ("audio_s_per_wall_s", "audio s / s"),
]
STAGES = ["decode", "vad", "features", "encoder", "decoder", "post"]


def _cell(row: dict, key: str) -> str:
    if key == "range":
        r = row.get("audio_hours_per_day_range")
        return f"{r[0]}–{r[1]} ({row['repeats']} runs)" if r and row.get("repeats", 1) > 1 else "-"
    if key == "default":
        return "yes" if row.get("is_default") else ""
    if key == "accuracy":
        acc = row.get("accuracy_percent") or {}
        return ", ".join(f"{k} {v}" for k, v in acc.items()) or "-"
    v = row.get(key)
    return "-" if v is None or v == "" else str(v)


def _rows(rows: list[dict], cols) -> tuple[list[str], list[list[str]]]:
    return [c[1] for c in cols], [[_cell(r, c[0]) for c in cols] for r in rows]


def text_table(rows: list[dict], cols) -> str:
    head, body = _rows(rows, cols)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=False))  # noqa: E731
    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(b) for b in body)])


def md_table(rows: list[dict], cols) -> str:
    head, body = _rows(rows, cols)
    return "\n".join(
        ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(b) + " |" for b in body)]
    )


def html_table(rows: list[dict], cols, cls: str) -> str:
    head, body = _rows(rows, cols)
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in b) + "</tr>" for b in body)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def stage_rows(report: dict) -> list[dict]:
    """Where the time goes, per batch run: seconds and share per stage."""
    out = []
    for r in report.get("batch", []):
        st = r.get("stage_seconds") or {}
        total = sum(st.values())
        if total:
            row = {"mode": f"{r['mode']} ({r['files']} files)"}
            for k in sorted(st, key=lambda k: STAGES.index(k) if k in STAGES else 99):
                row[k] = f"{st[k]:.2f} s ({100 * st[k] / total:.0f}%)"
            out.append(row)
    return out


def _stage_cols(rows: list[dict]):
    keys = []
    for r in rows:
        keys += [k for k in r if k != "mode" and k not in keys]
    return [("mode", "run")] + [(k, k) for k in keys]


def resource_rows(report: dict) -> list[dict]:
    out = []
    for r in report.get("batch", []):
        if r.get("resources"):
            out.append({"run": f"{r['mode']} ({r['files']} files)", **r["resources"]})
    if (report.get("realtime") or {}).get("server_resources"):
        out.append({"run": "server during streams", **report["realtime"]["server_resources"]})
    return out


def _res_cols(rows: list[dict]):
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return [(k, k.replace("_", " ")) for k in keys]


def cost_lines(report: dict) -> list[str]:
    """Only what the operator's inputs allow: no line for an input not given."""
    c = report.get("cost")
    if not c:
        return []
    parts = []
    if c["server_cost"]:
        parts.append(
            f"server {c['server_cost']:g} over {c['amortize_years']:g} years at {c['hours_per_day']:g} h/day = {c['hardware_per_hour']:.4g}/h"
        )
    if c["power_watts"] and c["kwh_price"]:
        parts.append(f"power {c['power_watts']:g} W × {c['kwh_price']:g}/kWh = {c['power_per_hour']:.4g}/h")
    lines = ["; ".join(parts)]
    if c.get("per_audio_hour") is not None:
        lines.append(f"cost per audio hour (tingxie, {c['assumes']}): {c['per_audio_hour']:.4g}")
    if c.get("serial_per_audio_hour") is not None:
        lines.append(f"cost per audio hour (serial reference): {c['serial_per_audio_hour']:.4g}")
    if "cloud_per_audio_hour" in c:
        lines.append(
            f"cloud: {c['cloud_per_audio_hour']:g} per audio hour"
            + (f" — {c['cloud_over_self_hosted']}× the self-hosted cost" if c.get("cloud_over_self_hosted") else "")
        )
    return lines


def interval_text(interval: list[float] | tuple[float, float] | None, what: str) -> str:
    """The figure's 10–90 % range over resamples of the latencies it came from."""
    if not interval:
        return ""
    lo, hi = interval
    return (
        f"; {lo:g}–{hi:g} over resamples of its {what}" if lo != hi else f"; {lo:g} over every resample of its {what}"
    )


def clients_text(estimate: float | None, count: int, tried: int) -> str:
    """A streams/requests figure: where the p95 crosses the target (one decimal: the
    figure two runs are compared by), its whole part, or a floor when every level met it."""
    if count == tried:
        return f"≥ {tried}"
    if estimate is None or estimate == count:
        return str(count)
    return f"{estimate:g} (so {count} whole)"


def headline(report: dict) -> list[str]:
    """The answer, first: what this server handles on the model and device it ran on."""
    m = report["machine"]
    out = []
    where = (
        f"on {m.get('device', '?')} ({m.get('compute_type', '?')}, {m.get('cores')} cores), model {m.get('model', '?')}"
        if report["target"] == "local"
        else f"server {report['target']}"
    )
    out.append(f"capacity {where}; audio: {report['audio']['source']}")
    b = [r for r in report.get("batch", []) if r["mode"] in ("tingxie", "server")]
    if b:
        top = max(b, key=lambda r: r["audio_hours_per_wall_hour"])
        rng = top.get("audio_hours_per_day_range")
        out.append(
            f"batch load: {top['audio_hours_per_day']} audio hours/day"
            + (f" at batch {top['batch_size']} × {top['instances']} instance(s)" if top.get("batch_size") else "")
            + (f" (range {rng[0]}–{rng[1]} over {top['repeats']} runs)" if rng and top.get("repeats", 1) > 1 else "")
            + f", RTF {top['rtf']}"
            + (f", {top['speedup_vs_serial']}× the serial reference" if top.get("speedup_vs_serial") else "")
        )
    rt = report.get("realtime")
    if rt:
        tried = max(r["streams"] for r in rt["levels"])
        n = rt["max_streams_within_slo"]
        out.append(
            f"live streams: {clients_text(rt.get('within_slo_estimate'), n, tried)} concurrent within final-latency p95 ≤ {rt['slo_ms']:g} ms"
            + (f" ({rt['within_slo_how']})" if rt.get("within_slo_how") else "")
            + interval_text(rt.get("within_slo_interval"), "finals")
            + (f" — try --streams {tried},{2 * tried}" if n == tried else "")
            + (
                f"; `tingxie serve` here admits {rt['admitted_streams']} and refuses more"
                if rt.get("admitted_streams")
                else ""
            )
        )
    rq = report.get("requests")
    if rq:
        tried = max(r["concurrency"] for r in rq)
        n = report.get("max_requests_within_slo", 0)
        top = max(rq, key=lambda r: r["requests_per_s"])
        statistic = report.get("requests_slo_statistic", "p95")  # reports before the mean say p95
        out.append(
            f"short requests: {clients_text(report.get('requests_within_slo_estimate'), n, tried)} concurrent within latency {statistic} ≤ {report.get('requests_slo_ms', 0) / 1000:g} s"
            + (f" ({report['requests_within_slo_how']})" if report.get("requests_within_slo_how") else "")
            + interval_text(report.get("requests_within_slo_interval"), "requests")
            + (f" — try --concurrency {tried},{2 * tried}" if n == tried else "")
            + f"; {top['requests_per_s']} requests/s at {top['concurrency']}"
            + (f" (p95 {top['latency_p95']:g} s)" if statistic != "p95" and top.get("latency_p95") else "")
        )
    if report.get("recommendation"):
        r = report["recommendation"]
        out.append(
            f"recommended `serve` settings: batch {r['batch_size']} × {r['instances']} instance(s) ({r['why']}) — `{r['command']}`"
            + ("; stored: `tingxie serve` here uses them" if r.get("saved") else "")
            + (f"; not stored: {r['not_saved']}" if r.get("not_saved") else "")
        )
    ml = report.get("machine_load")
    if ml and "others_cpu_cores" in ml:
        out.append(
            f"machine load during the run ({ml['wall_seconds'] / 60:.1f} min): other processes {ml['others_cpu_cores']} of {ml['cpus']} CPUs, steal {ml['steal_percent']} %"
            + (" — figures trustworthy" if ml["trustworthy"] else f" — FIGURES NOT TRUSTWORTHY: {ml['why_not']}")
        )
    return out


def summary(report: dict) -> str:
    parts = ["tingxie bench", *headline(report)]
    if report.get("batch"):
        parts += ["", "Batch capacity", text_table(report["batch"], BATCH_COLS)]
    if report.get("sweep"):
        parts += ["", "Settings sweep", text_table(report["sweep"], SWEEP_COLS)]
    if report.get("realtime"):
        parts += [
            "",
            f"Real-time streams ({report['realtime']['audio_s_per_stream']} s each, paced)",
            text_table(report["realtime"]["levels"], STREAM_COLS),
        ]
    if report.get("requests"):
        parts += ["", "Synchronous requests (short files)", text_table(report["requests"], REQ_COLS)]
    st = stage_rows(report)
    if st:
        parts += ["", "Where time goes (summed over windows)", text_table(st, _stage_cols(st))]
    res = resource_rows(report)
    if res:
        parts += ["", "Resources", text_table(res, _res_cols(res))]
    if report.get("cost"):
        parts += ["", "Cost", *cost_lines(report)]
    if report.get("notes"):
        parts += ["", *report["notes"]]
    return "\n".join(parts)


def markdown(report: dict) -> str:
    m = report["machine"]
    parts = [
        f"# tingxie capacity ({report['time']})",
        "",
        f"`{report['command'].strip()}` against {report['target']}; "
        f"{m.get('cpu', '')} {m.get('cores')} cores, {m.get('memory_gb', '?')} GiB, device {m.get('device', '-')}; audio: {report['audio']['source']}.",
        "",
    ]
    parts += ["- " + h for h in headline(report)] + [""]
    for title, key, cols in (
        ("Batch capacity", "batch", BATCH_COLS),
        ("Settings sweep", "sweep", SWEEP_COLS),
        ("Synchronous requests", "requests", REQ_COLS),
    ):
        if report.get(key):
            parts += [f"## {title}", "", md_table(report[key], cols), ""]
    if report.get("realtime"):
        parts += ["## Real-time streams", "", md_table(report["realtime"]["levels"], STREAM_COLS), ""]
    st = stage_rows(report)
    if st:
        parts += ["## Where time goes", "", md_table(st, _stage_cols(st)), ""]
    res = resource_rows(report)
    if res:
        parts += ["## Resources", "", md_table(res, _res_cols(res)), ""]
    if report.get("cost"):
        parts += ["## Cost", "", *("- " + x for x in cost_lines(report)), ""]
    parts += ["- " + n for n in report.get("notes", [])]
    return "\n".join(parts) + "\n"


# -- SVG ---------------------------------------------------------------------------------
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]


def svg_lines(
    title: str, xlabel: str, ylabel: str, series: dict[str, list[tuple[float, float]]], w: int = 520, h: int = 300
) -> str:
    """A small line chart: series name → [(x, y)]; None ys are skipped."""
    pts = [(x, y) for s in series.values() for x, y in s if y is not None]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y1 = max(p[1] for p in pts) * 1.1 or 1.0
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    L, R, T, B = 60, 20, 30, 45
    sx = lambda x: L + (x - x0) / (x1 - x0) * (w - L - R)  # noqa: E731
    sy = lambda y: h - B - y / y1 * (h - T - B)  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{w / 2}" y="18" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{L}" y1="{h - B}" x2="{w - R}" y2="{h - B}" stroke="#333"/><line x1="{L}" y1="{T}" x2="{L}" y2="{h - B}" stroke="#333"/>',
        f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">{html.escape(xlabel)}</text>',
        f'<text x="14" y="{h / 2}" text-anchor="middle" transform="rotate(-90 14 {h / 2})">{html.escape(ylabel)}</text>',
    ]
    for k in range(5):
        y = y1 * k / 4
        out.append(
            f'<text x="{L - 5}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="11">{y:.3g}</text>'
            f'<line x1="{L}" y1="{sy(y):.1f}" x2="{w - R}" y2="{sy(y):.1f}" stroke="#eee"/>'
        )
    for x in sorted({p[0] for p in pts}):
        out.append(f'<text x="{sx(x):.1f}" y="{h - B + 15}" text-anchor="middle" font-size="11">{x:g}</text>')
    for n, (name, s) in enumerate(series.items()):
        col = COLORS[n % len(COLORS)]
        xy = [(sx(x), sy(y)) for x, y in s if y is not None]
        if not xy:
            continue
        out.append(
            f'<polyline fill="none" stroke="{col}" stroke-width="2" points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in xy)}"/>'
        )
        out += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{col}"/>' for a, b in xy]
        out.append(f'<text x="{L + 10}" y="{T + 14 + 14 * n}" fill="{col}" font-size="12">{html.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def charts(report: dict) -> list[str]:
    out = []
    rt = report.get("realtime")
    if rt and rt["levels"]:
        lv = rt["levels"]
        out.append(
            svg_lines(
                "Stream latency vs concurrent streams",
                "streams",
                "seconds",
                {
                    "final p95": [(r["streams"], r["final_p95"]) for r in lv],
                    "final p50": [(r["streams"], r["final_p50"]) for r in lv],
                    "first partial p95": [(r["streams"], r["first_update_p95"]) for r in lv],
                    f"SLO {rt['slo_ms']:g} ms": [(r["streams"], rt["slo_ms"] / 1000) for r in lv],
                },
            )
        )
    rq = report.get("requests")
    if rq:
        out.append(
            svg_lines(
                "Request latency vs concurrency",
                "concurrent requests",
                "seconds",
                {
                    "p95": [(r["concurrency"], r["latency_p95"]) for r in rq],
                    "mean": [(r["concurrency"], r["latency_mean"]) for r in rq if r.get("latency_mean") is not None],
                    "p50": [(r["concurrency"], r["latency_p50"]) for r in rq],
                    f"target {report.get('requests_slo_ms', 0) / 1000:g} s": [
                        (r["concurrency"], report.get("requests_slo_ms", 0) / 1000) for r in rq
                    ],
                },
            )
        )
    sw = report.get("sweep")
    if sw:
        series: dict[str, list] = {}
        for r in sw:
            series.setdefault(f"{r['instances']} instance(s)", []).append(
                (r["batch_size"], r["audio_hours_per_wall_hour"])
            )
        out.append(svg_lines("Throughput vs batch size", "batch size", "audio hours per wall hour", series))
    b = report.get("batch")
    if b and len({r["files"] for r in b}) > 1:
        series = {}
        for r in b:
            series.setdefault(r["mode"], []).append((r["files"], r["audio_hours_per_wall_hour"]))
        out.append(svg_lines("Throughput vs files in the batch", "files", "audio hours per wall hour", series))
    return [c for c in out if c]


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td:first-child{text-align:left}svg{margin:0 1em 1em 0;border:1px solid #eee}.h li{font-weight:600}"
)


def render_html(report: dict) -> str:
    m = report["machine"]
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>tingxie capacity</title><style>{CSS}</style></head><body>",
        f"<h1>tingxie capacity</h1><p>{e(report['time'])} — <code>{e(report['command'].strip())}</code> against {e(report['target'])}; "
        f"{e(str(m.get('cpu', '')))} {m.get('cores')} cores, {m.get('memory_gb', '?')} GiB, device {e(str(m.get('device', '-')))}; "
        f"audio: {e(report['audio']['source'])}.</p>",
        "<ul class='h'>" + "".join(f"<li>{e(h)}</li>" for h in headline(report)) + "</ul>",
    ]
    for title, key, cols, cls in (
        ("Batch capacity", "batch", BATCH_COLS, "batch"),
        ("Settings sweep", "sweep", SWEEP_COLS, "sweep"),
        ("Synchronous requests", "requests", REQ_COLS, "requests"),
    ):
        if report.get(key):
            parts.append(f"<h2>{title}</h2>" + html_table(report[key], cols, cls))
    if report.get("realtime"):
        rt = report["realtime"]
        parts.append(
            f"<h2>Real-time streams</h2><p>{rt['audio_s_per_stream']} s of paced audio per stream; streams within final p95 ≤ "
            f"{rt['slo_ms']:g} ms: <b>{clients_text(rt.get('within_slo_estimate'), rt['max_streams_within_slo'], max(r['streams'] for r in rt['levels']))}</b>"
            + (f" ({html.escape(rt['within_slo_how'])})" if rt.get("within_slo_how") else "")
            + "</p>"
            + html_table(rt["levels"], STREAM_COLS, "realtime")
        )
    st = stage_rows(report)
    if st:
        parts.append("<h2>Where time goes</h2>" + html_table(st, _stage_cols(st), "stages"))
    res = resource_rows(report)
    if res:
        parts.append("<h2>Resources</h2>" + html_table(res, _res_cols(res), "resources"))
    if report.get("cost"):
        parts.append("<h2>Cost</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in cost_lines(report)) + "</ul>")
    ch = charts(report)
    if ch:
        parts.append("<h2>Charts</h2>" + "".join(ch))
    if report.get("notes"):
        parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in report["notes"]) + "</ul>")
    parts.append(
        f"<details><summary>raw JSON</summary><pre>{e(json.dumps(report, indent=1, ensure_ascii=False))}</pre></details></body></html>"
    )
    return "".join(parts)


def write_reports(report: dict, html_path: Path) -> list[Path]:
    """HTML at `html_path`, JSON and Markdown next to it (same stem)."""
    html_path = Path(html_path)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    j, md = html_path.with_suffix(".json"), html_path.with_suffix(".md")
    j.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    md.write_text(markdown(report), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return [j, md, html_path]
