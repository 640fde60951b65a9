"""The one place that decides device, compute type, instances and threads.

CTranslate2 runs on CUDA or CPU only; `mps` (Apple) is accepted but falls back to CPU
with one warning, because CTranslate2 has no Metal backend. The process-wide memory and
BLAS-thread settings are made on import in `tingxie/__init__.py`: they must precede numpy.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from .types import OptionsError

log = logging.getLogger(__name__)

COMPUTE_TYPES = ("auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "float16", "bfloat16", "float32")


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cpu" | "cuda"
    index: int
    compute_type: str
    instances: int
    threads: int  # intra-op threads per instance (CPU only; 0 lets CTranslate2 decide)
    batch_size: int
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.device}:{self.index}" if self.device == "cuda" else "cpu"


def cuda_device_count() -> int:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count()
    except Exception:  # a broken CUDA install must not stop CPU use
        return 0


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def choose(
    device: str = "auto",
    compute_type: str = "auto",
    instances: int = 0,
    threads: int = 0,
    batch_size: int = 0,
) -> DeviceChoice:
    """Resolve user choices into a concrete device plan, refusing impossible ones."""
    device = (device or "auto").strip().lower()
    if compute_type not in COMPUTE_TYPES:
        raise OptionsError(f"unknown compute type {compute_type!r}; choose one of {', '.join(COMPUTE_TYPES)}")
    if instances < 0 or threads < 0 or batch_size < 0:
        raise OptionsError("instances, threads and batch size must be ≥ 0")
    note = ""
    n_cuda = cuda_device_count()
    if device == "mps":
        note = "mps requested, but CTranslate2 has no Apple Metal backend: running on CPU"
        log.warning(note)
        device = "cpu"
    if device == "auto":
        device = "cuda" if n_cuda > 0 else "cpu"
    m = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", device)
    if not m:
        raise OptionsError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    kind, index = m.group(1), int(m.group(2) or 0)
    if kind == "cuda":
        if n_cuda == 0:
            raise OptionsError("device cuda requested but CTranslate2 sees no CUDA device")
        if index >= n_cuda:
            raise OptionsError(f"device cuda:{index} requested but only {n_cuda} CUDA device(s) exist")
        ct = "float16" if compute_type == "auto" else compute_type
        inst = instances or 1
        return DeviceChoice("cuda", index, ct, inst, 0, batch_size or 16, note)
    if compute_type in ("float16", "int8_float16", "bfloat16", "int8_bfloat16"):
        raise OptionsError(f"compute type {compute_type} needs a GPU; use int8 or float32 on CPU")
    cores = cpu_cores()
    ct = "int8" if compute_type == "auto" else compute_type
    inst = instances or cores
    thr = threads or max(1, cores // inst)
    return DeviceChoice("cpu", 0, ct, inst, thr, batch_size or 4, note)
