"""Finding and checking diarization's two models: a segmentation model and a
speaker-embedding model. Not recognizers: found anywhere under the models folder, in
sherpa-onnx's release layouts (a segmentation folder with model.onnx, an embedding
.onnx file loose in the models folder) and in ours (`tingxie models --prepare
diarization`: each in a folder of its own with its licence and checksums)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..checks import input_types, meta, need_keys, probe_child, read_info

SEGMENTATION_KEYS = [
    "num_speakers",
    "powerset_max_classes",
    "num_classes",
    "sample_rate",
    "window_size",
    "receptive_field_size",
    "receptive_field_shift",
]
EMBEDDING_KEYS = ["sample_rate", "output_dim", "normalize_samples"]
EMBEDDING_FRAMEWORKS = ("3d-speaker", "wespeaker", "nemo")


@dataclass(frozen=True)
class DiarizationModels:
    segmentation: Path  # the .onnx file
    embedding: Path  # the .onnx file

    @property
    def name(self) -> str:
        return f"{self.segmentation.parent.name} + {self.embedding.stem}"


def _onnx_candidates(models_dir: Path) -> list[Path]:
    """.onnx files in the models folder and one level down, int8 after float32 of the
    same stem (diarization is short work; float32 is the exact export)."""
    if not models_dir.is_dir():
        return []
    files = [*models_dir.glob("*.onnx"), *models_dir.glob("*/*.onnx")]
    return sorted(
        (f for f in files if f.is_file() and not f.name.startswith(".")), key=lambda f: (".int8." in f.name, str(f))
    )


def is_segmentation(f: Path) -> bool:
    return meta(f).get("model_type", "") == "pyannote-segmentation-3.0"


def is_embedding(f: Path) -> bool:
    m = meta(f)
    return m.get("framework", "") in EMBEDDING_FRAMEWORKS and "output_dim" in m


def _check(f: Path, keys: list[str], problems: list[str]) -> dict[str, str] | None:
    """A one-input float ONNX model with these metadata keys; its metadata, or None
    when it cannot be read."""
    info = read_info(f, problems)
    if info is None:
        return None
    need_keys(info, f.name, keys, problems)
    input_types(info, f.name, ["float"], problems)
    return info.metadata


def check_segmentation(f: Path) -> list[str]:
    problems: list[str] = []
    m = _check(f, SEGMENTATION_KEYS, problems)
    if m is not None and m.get("sample_rate", "16000") != "16000":
        problems.append(f"{f.name} is for {m['sample_rate']} Hz; sherpa-onnx diarizes 16000 Hz audio")
    return problems


def check_embedding(f: Path) -> list[str]:
    problems: list[str] = []
    _check(f, EMBEDDING_KEYS, problems)
    return problems


def find_diarization(models_dir: Path) -> DiarizationModels | None:
    """The first valid segmentation and embedding models under `models_dir` (checked
    without loading), or None when either is missing."""
    seg = emb = None
    for f in _onnx_candidates(models_dir):
        if seg is None and is_segmentation(f) and not check_segmentation(f):
            seg = f
        elif emb is None and is_embedding(f) and not check_embedding(f):
            emb = f
    return DiarizationModels(seg, emb) if seg and emb else None


def probe_diarization(models: DiarizationModels) -> None:
    """Load both models in sherpa-onnx's diarizer and run it once, in a child process:
    sherpa-onnx ends the whole process on a model it cannot use."""
    args = ["tingxie.engines.diarization.probe", str(models.segmentation), str(models.embedding)]
    probe_child(args, f"diarization models {models.name!r}", models.segmentation.parent)
