"""The proof for issue 27: on an install made by `scripts/install.sh` alone (no extras, so
no jiwer, no test packages) and with no system package on PATH (espeak-ng hidden), the
quick `tingxie bench` runs to the end on the speech the package ships, and answers the
capacity question in its first lines. pip's cache is reused, so the venv builds without
downloading what the machine already fetched."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("plain") / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINGXIE_", "VIRTUAL_ENV", "PYTHON"))}
    env.update({"VENV": str(venv), "TINGXIE_HOME": str(venv.parent / "home")})
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh")], capture_output=True, text=True, env=env, timeout=900
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return venv


@pytest.mark.timeout(2400)  # install + the quick bench; CI runs other test files beside it
def test_quick_bench_on_a_plain_install_without_espeak(plain_venv, tmp_path):
    py = plain_venv / "bin" / "python"
    # what the install holds: none of the test extra
    have = subprocess.run(
        [str(py), "-c", "import importlib.util as u; print([m for m in ('jiwer', 'pytest') if u.find_spec(m)])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert have == "[]"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINGXIE_", "VIRTUAL_ENV", "PYTHON"))}
    # PATH holds only the venv: espeak-ng (and every other system tool) is out of reach
    env.update({"PATH": str(plain_venv / "bin"), "TINGXIE_HOME": str(plain_venv.parent / "home")})
    report = tmp_path / "capacity.html"
    r = subprocess.run(
        [str(plain_venv / "bin" / "tingxie"), "bench", "-q", "--report", str(report)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=1200,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    d = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))
    assert "bundled English speech" in d["audio"]["source"] and d["audio"]["references"]
    # the answer comes first: hours/day, live streams, short requests, the serve settings
    first = r.stdout.splitlines()[:7]
    assert any("audio hours/day" in x for x in first), first
    assert any(x.startswith("live streams:") for x in first), first
    assert any(x.startswith("short requests:") for x in first), first
    assert any("tingxie serve --batch-size" in x for x in first), first
    (t,) = [b for b in d["batch"] if b["mode"] == "tingxie"]
    assert t["repeats"] == 2 and not t["errors"] and t["audio_hours_per_day"] > 0
    assert t["accuracy_percent"]["en"] < 50  # the bundled speech is transcribed, not just timed
    assert "cost" not in d  # no prices given: no cost section
    # the recommendation is stored where `tingxie serve` on this install reads it, unless
    # the run's own load measure says its figures are not the machine's
    stored = plain_venv.parent / "home" / "bench" / "recommended.json"
    if d["machine_load"]["trustworthy"]:
        saved = json.loads(stored.read_text())
        assert (saved["batch_size"], saved["instances"]) == (
            d["recommendation"]["batch_size"],
            d["recommendation"]["instances"],
        )
    else:
        assert not stored.exists() and "not stored" in r.stdout and "NOT TRUSTWORTHY" in r.stdout
