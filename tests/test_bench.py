"""`tingxie bench`: small real runs of each mode (real engine, real server) whose
figures must be present and consistent, readable reports, and clear argument errors.
No timing thresholds: speed is what the bench reports, not what tests assert."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from server_fixture import Server

from tingxie import bench

REPO = Path(__file__).resolve().parent.parent


def run_bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tingxie", "bench", "-q", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def load(report: Path) -> dict:
    return json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))


def check_capacity_row(r: dict, files: int, duration: float) -> None:
    assert r["files"] == files
    assert r["audio_seconds"] == pytest.approx(files * duration, rel=1e-3)
    assert r["audio_hours"] == pytest.approx(files * duration / 3600, rel=1e-2)
    assert r["wall_seconds"] > 0
    assert r["rtf"] == pytest.approx(r["wall_seconds"] / r["audio_seconds"], rel=0.02)
    assert r["audio_hours_per_wall_hour"] == pytest.approx(r["audio_seconds"] / r["wall_seconds"], rel=0.02)
    assert r["audio_hours_per_day"] == pytest.approx(24 * r["audio_seconds"] / r["wall_seconds"], rel=0.02)
    assert not r["errors"]


@pytest.mark.parametrize(
    "args, option",
    [
        (["--files", "0"], "--files"),
        (["--streams", "abc"], "--streams"),
        (["--concurrency", "2,x"], "--concurrency"),
        (["--url", "gpu-box:8000"], "--url"),
        (["--slo-ms", "-5"], "--slo-ms"),
        (["--duration", "0"], "--duration"),
        (["--modes", "batch,fast"], "--modes"),
        (["--audio-dir", "/nonexistent/calls"], "--audio-dir"),
        (["--report", "out.json"], "--report"),
        (["--refs", "/nonexistent/refs.jsonl"], "--refs"),
    ],
)
def test_bad_arguments_name_the_option(args, option, tmp_path):
    r = run_bench(*args, "--report", str(tmp_path / "r.html")) if option != "--report" else run_bench(*args)
    assert r.returncode == 2, r.stderr
    assert option in r.stderr
    assert "Traceback" not in r.stderr


def test_empty_audio_dir_is_refused(tmp_path):
    (tmp_path / "calls").mkdir()
    (tmp_path / "calls" / "notes.txt").write_text("not audio")
    r = run_bench("--audio-dir", str(tmp_path / "calls"), "--report", str(tmp_path / "r.html"))
    assert r.returncode == 2
    assert "--audio-dir" in r.stderr and "no audio files" in r.stderr


def test_batch_and_sweep_on_the_engine(tmp_path):
    report = tmp_path / "cap.html"
    r = run_bench("--modes", "batch,sweep", "--files", "1,2", "--duration", "12", "--batch-sizes", "1,2", "--instances", "1",
                  "--server-cost", "30000", "--amortize-years", "3", "--power-watts", "300", "--kwh-price", "0.5", "--cloud-price", "2",
                  "--report", str(report))
    assert r.returncode == 0, r.stderr[-3000:]
    d = load(report)
    modes = [(x["mode"], x["files"]) for x in d["batch"]]
    assert modes == [("tingxie", 1), ("serial", 1), ("tingxie", 2), ("serial", 2)]
    for x in d["batch"]:
        check_capacity_row(x, x["files"], 12)
        assert x["resources"]["peak_rss_mb"] > 0
    serial = [x for x in d["batch"] if x["mode"] == "serial"]
    # the reference: faster-whisper's sequential transcribe, one file at a time
    assert all(x["batch_size"] == 1 and x["instances"] == 1 and x["pipeline"] == "reference" for x in serial)
    tx = [x for x in d["batch"] if x["mode"] == "tingxie"]
    assert all({"decode", "vad", "encoder", "decoder"} <= set(x["stage_seconds"]) for x in tx)
    for t, s in zip(tx, serial):
        assert t["speedup_vs_serial"] == pytest.approx(s["wall_seconds"] / t["wall_seconds"], rel=0.02)
    if d["audio"]["references"]:  # accuracy guard: each run scored
        assert all(x["accuracy_percent"] for x in d["batch"])
    assert [(x["batch_size"], x["instances"]) for x in d["sweep"]] == [(1, 1), (2, 1)]
    best = max(d["sweep"], key=lambda x: x["audio_hours_per_wall_hour"])
    assert (d["recommendation"]["batch_size"], d["recommendation"]["instances"]) == (best["batch_size"], best["instances"])
    c = d["cost"]
    server_h = 30000 / (3 * 365 * 24) + 0.3 * 0.5
    assert c["server_per_hour"] == pytest.approx(server_h, rel=1e-3)
    top = max(tx, key=lambda x: x["audio_hours_per_wall_hour"])
    assert c["per_audio_hour"] == pytest.approx(server_h / top["audio_hours_per_wall_hour"], rel=0.02)
    assert c["cloud_over_self_hosted"] == pytest.approx(2 / c["per_audio_hour"], rel=0.05)
    page = report.read_text(encoding="utf-8")
    assert '<table class="batch">' in page and '<table class="sweep">' in page and "<svg" in page
    assert "Batch capacity" in report.with_suffix(".md").read_text(encoding="utf-8")
    assert "audio h / day" in r.stdout and "recommended on this machine" in r.stdout


def test_realtime_and_requests_against_a_local_server(tmp_path):
    report = tmp_path / "rt.html"
    r = run_bench("--modes", "realtime,requests", "--streams", "1,2", "--stream-seconds", "8", "--concurrency", "1,2",
                  "--report", str(report))
    assert r.returncode == 0, r.stderr[-3000:]
    d = load(report)
    rt = d["realtime"]
    assert [x["streams"] for x in rt["levels"]] == [1, 2]
    for x in rt["levels"]:
        assert x["finals"] >= x["streams"]
        assert x["final_p50"] <= x["final_p95"]
    ok = [x["streams"] for x in rt["levels"] if x["final_p95"] * 1000 <= rt["slo_ms"]]
    assert rt["max_streams_within_slo"] == max(ok, default=0)
    assert rt["server_resources"]["peak_rss_mb"] > 0
    for x, c in zip(d["requests"], (1, 2)):
        assert x["concurrency"] == c and x["ok"] == x["requests"] == 4
        assert x["requests_per_s"] == pytest.approx(x["requests"] / x["wall_seconds"], rel=0.05)
        assert x["latency_p50"] <= x["latency_p95"]
    page = report.read_text(encoding="utf-8")
    assert '<table class="realtime">' in page and '<table class="requests">' in page


def test_a_running_server_by_url(tmp_path):
    with Server(tmp_path / "home") as srv:
        report = tmp_path / "url.html"
        r = run_bench("--url", srv.url, "--modes", "batch,requests,realtime", "--files", "2", "--duration", "10",
                      "--concurrency", "2", "--streams", "1", "--stream-seconds", "6", "--report", str(report))
    assert r.returncode == 0, r.stderr[-3000:]
    d = load(report)
    assert d["target"] == srv.url
    (b,) = d["batch"]
    assert b["mode"] == "server"
    check_capacity_row(b, 2, 10)
    assert d["requests"][0]["ok"] == 4
    assert d["realtime"]["levels"][0]["finals"] >= 1
    assert "sweep" not in d  # a remote server's settings cannot be swept
    assert "<table" in report.read_text(encoding="utf-8")


def test_espeak_audio_when_the_eval_set_is_absent(tmp_path, monkeypatch):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    monkeypatch.setattr(bench, "DEFAULT_EVAL", tmp_path / "absent")
    corpus = bench.load_corpus(None, None, tmp_path)
    assert "espeak" in corpus.source and all(u.lang == "en" and u.text for u in corpus.utterances)
    rows = bench.recordings(corpus, 2, 20, tmp_path / "rec")
    assert [r["duration"] for r in rows] == [20.0, 20.0]
    assert all(Path(r["path"]).is_file() and r["text"] for r in rows)


def test_own_recordings_with_references(tmp_path, corpus_dir):
    calls = tmp_path / "calls"
    calls.mkdir()
    rows = [json.loads(x) for x in (corpus_dir / "manifest.jsonl").read_text().splitlines() if x.strip()][:3]
    for m in rows:
        shutil.copy(corpus_dir / m["audio"], calls / m["audio"])
    refs = tmp_path / "refs.jsonl"
    refs.write_text("\n".join(json.dumps(m, ensure_ascii=False) for m in rows))
    corpus = bench.load_corpus(str(calls), str(refs), tmp_path)
    assert len(corpus.files) == 3 and all(f["text"] for f in corpus.files)
    recs = bench.recordings(corpus, 5, 60, tmp_path / "rec")  # the user's files, cycled
    assert len(recs) == 5 and len({r["id"] for r in recs}) == 5
    assert recs[3]["path"] == recs[0]["path"]
