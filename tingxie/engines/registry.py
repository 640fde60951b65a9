"""The families, listed: which model folders tingxie serves and in which order to ask.

Each family lives in a folder of its own (engines/<family>/) and says, in a `Family`
(base.py), how to recognise, check, describe and load a folder of its kind. The registry
only lists them and asks them in order (the most specific detection first); adding a
family is one folder and one line in `_LISTED`. No family imports the registry.

`validate` checks, before anything is loaded into the serving process, every file and
metadata key the family's loader needs, and refuses a bad folder with a `ModelError`
naming what is missing. With `probe=True` a family that asks for it (sherpa-onnx ends
the whole process on a model it cannot use) is also loaded once in a child process.
"""

from __future__ import annotations

from pathlib import Path

from . import sherpa, whisper
from .base import Family, ModelError, ModelSpec, Recognizer
from .checks import probe_child, read_info

_LISTED: tuple[Family, ...] = (
    whisper.FAMILY,
    *sherpa.FAMILIES,
)
FAMILIES: dict[str, Family] = {f.name: f for f in _LISTED}


def detect_family(path: str | Path) -> str:
    p = Path(path)
    if not p.is_dir():
        raise ModelError(f"model directory {p.name!r} does not exist")
    for fam in FAMILIES.values():
        try:
            if fam.detect(p):
                return fam.name
        except OSError:
            continue
    for f in sorted(p.glob("*.onnx")):
        problems: list[str] = []
        if read_info(f, problems) is None:
            raise ModelError(f"model {p.name!r}: {problems[0]}")
    raise ModelError(
        f"{p.name!r} is not a model directory tingxie knows: expected a CTranslate2 Whisper "
        "(model.bin, config.json, tokenizer.json) or a sherpa-onnx SenseVoice, Paraformer, "
        "Fun-ASR-Nano or punctuation directory (model.onnx and tokens.txt; see docs/models.md)"
    )


def validate(path: str | Path, family: str | None = None, probe: bool = False) -> str:
    """Check a model directory without loading it here; return its family.

    Raises ModelError naming every missing file or metadata key. `probe` also loads it
    once in a child process (sherpa-onnx families), so whatever would end a process
    ends only the child."""
    p = Path(path)
    family = family or detect_family(p)
    fam = FAMILIES.get(family)
    if fam is None:
        raise ModelError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    problems = fam.check(p)
    if problems:
        raise ModelError(f"model {p.name!r} ({family}) cannot be loaded: " + "; ".join(problems))
    if probe and fam.probe_in_child:
        probe_load(p, family)
    return family


def probe_load(path: Path, family: str) -> None:
    """Load and run the model once in a child process (engines/probe.py); a crash there
    is a ModelError here, with the loader's own complaint (paths removed)."""
    probe_child(["tingxie.engines.probe", family, str(path)], f"model {path.name!r} ({family})", path)


def describe(model_id: str, path: str | Path) -> ModelSpec:
    """Family, languages and capabilities of a directory, without loading it (for
    /v1/models and `tingxie models`). Raises ModelError for an unknown directory."""
    p = Path(path)
    return FAMILIES[detect_family(p)].describe(model_id, p)


def load(
    model_id: str, path: str | Path, choice, family: str | None = None, probe: bool = True, **options
) -> Recognizer:
    """Validate (and, for sherpa-onnx families, probe) a directory, then load it on
    `choice` (device.choose decides it)."""
    p = Path(path)
    family = validate(p, family, probe=probe)
    return FAMILIES[family].factory(model_id, p, choice, **options)


def cuda_devices() -> int:
    """CUDA devices the families' runtimes can use (device.py asks; the most any
    family reports)."""
    return max((f.cuda_devices() for f in _LISTED if f.cuda_devices is not None), default=0)
