"""`tingxie transcribe` and `tingxie models` as a user runs them (a real process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import MODELS, ROOT

from tingxie import models as models_mod


def _cli(*args, home: Path):
    env = {"TINGXIE_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "tingxie", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / models_mod.BUNDLED).symlink_to(MODELS / models_mod.BUNDLED)
    return home


def test_cli_writes_one_output_per_file_and_reports_bad_ones(tmp_path, english_wav):
    home = _home(tmp_path)
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    r = _cli(
        "transcribe",
        str(english_wav),
        str(bad),
        str(empty),
        str(tmp_path / "missing.m4a"),
        "--format",
        "srt,json",
        "-o",
        str(out),
        home=home,
    )
    assert r.returncode == 1
    assert "files ok: 1, failed: 3" in r.stdout and "RTF" in r.stdout
    assert "notes.wav" in r.stderr and "not an audio file" in r.stderr
    assert "empty.mp3" in r.stderr and "empty" in r.stderr
    assert "missing.m4a" in r.stderr and "not found" in r.stderr
    srt = (out / "fox.srt").read_text()
    assert srt.startswith("1\n00:00:") and "fox" in srt.lower()
    d = json.loads((out / "fox.json").read_text())
    assert d["language"] == "en" and d["segments"][0]["raw_text"] and d["rtf"] > 0
    assert not (out / "notes.srt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "docx"], "unknown output format"),
        (["--language", "klingon"], "unknown language"),
        (["--beam-size", "0"], "beam_size must be between 1 and 10, not 0"),
        (["--vad-max-segment-s", "45"], "vad_max_segment_s must be between 1.0 and 30.0, not 45.0"),
        (["--device", "tpu"], "unknown device"),
    ],
)
def test_cli_refuses_bad_options_before_work(tmp_path, english_wav, args, message):
    r = _cli("transcribe", str(english_wav), *args, "-o", str(tmp_path / "o"), home=_home(tmp_path))
    assert r.returncode == 2 and message in r.stderr
    assert not (tmp_path / "o" / "fox.txt").exists()


def test_cli_models_lists_the_bundled_model(tmp_path):
    r = _cli("models", home=_home(tmp_path))
    from tingxie import device as device_mod

    # the device this host has: cpu here, cuda on a GPU host
    assert r.returncode == 0 and "whisper-base" in r.stdout and "ready" in r.stdout
    assert f"device: {device_mod.choose().device}" in r.stdout
