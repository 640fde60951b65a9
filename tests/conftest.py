"""Shared test helpers: synthetic speech (espeak-ng) and the real-speech corpus."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _synth_speech(text: str, path: Path, voice: str = "en") -> Path:
    """Speak `text` with espeak-ng into a 16 kHz mono 16-bit WAV at `path`."""
    path = Path(path)
    raw = path.with_name(path.stem + ".espeak.wav")
    # a little slower than espeak's default, with short silences around it: closer to a
    # person speaking, which Whisper-base recognises far more reliably
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
    to_16k = ["-af", "adelay=300:all=1,apad=pad_dur=0.3", "-ar", "16000", "-ac", "1", str(path)]
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(raw), *to_16k],
        check=True,
        capture_output=True,
    )
    raw.unlink()
    return path


# The longest test files (≈ ½–2 minutes each on 2 cores), longest first: with one file
# per worker (`--dist loadfile`), starting them first lets the short files even out the
# workers' ends, instead of a long file starting last and running alone.
LONGEST_FIRST = (
    "test_install.py",  # a wheelhouse, an offline install from it, then the quick bench in it
    "test_scaleout.py",
    "test_faults.py",  # ≈ 6.5 min alone on a contended 2-core machine
    "test_diarization.py",
    "test_accuracy.py",
    "test_stream.py",
    "test_bench.py",
    "test_web.py",
    "test_web_day.py",
    "test_server.py",
    "test_openai_stream.py",
    "test_realtime_api.py",
    "test_security.py",
    "test_punctuation.py",
    "test_pipeline.py",
    "test_limits.py",
    "test_schema.py",
    "test_stream_limits.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: tests keep their order within a file


def pytest_terminal_summary(terminalreporter) -> None:
    """Figures a test records as `record_property("summary", ...)` (the eval set's error
    rates), printed after the run; printing from a test is lost under pytest-xdist."""
    for key in ("passed", "failed"):
        for rep in terminalreporter.stats.get(key, []):
            for name, value in getattr(rep, "user_properties", []):
                if name == "summary" and rep.when == "call":
                    terminalreporter.write_line(str(value))


@pytest.fixture(scope="session")
def synth_speech() -> Callable[..., Path]:
    """`synth_speech(text, path, voice='en') -> path`; skips when the tools are absent."""
    missing = [t for t in ("espeak-ng", "ffmpeg") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install espeak-ng ffmpeg)")
    return _synth_speech


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The real-speech evaluation corpus (`../shared/eval`, manifest.jsonl inside)."""
    d = (REPO / ".." / "shared" / "eval").resolve()
    if not (d / "manifest.jsonl").is_file():
        pytest.skip(f"real-speech corpus not present at {d} (../shared/eval/manifest.jsonl)")
    return d


# -- the real model, for stage tests (test_pipeline, test_cli) ----------------------------
@pytest.fixture(scope="module")
def manager():
    """The real model on this machine's device (one per test module)."""
    from helpers import MODELS

    from tingxie import models as models_mod
    from tingxie.manager import ModelManager
    from tingxie.settings import Settings

    models_mod.assemble_bundled(MODELS)
    m = ModelManager(Settings(home=MODELS.parent))
    yield m
    m.close()


@pytest.fixture(scope="module")
def sched(manager):
    return manager.scheduler()


@pytest.fixture(scope="module")
def english_wav(tmp_path_factory, synth_speech):
    d = tmp_path_factory.mktemp("speech")
    return synth_speech("The quick brown fox jumps over the lazy dog. Please call me tomorrow morning.", d / "fox.wav")
