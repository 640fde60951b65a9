"""The one place that decides device, compute type, instances and threads.

How many CUDA devices exist is the families' to say (engines/registry.cuda_devices);
the choice is made here. CTranslate2 runs on CUDA or CPU only; `mps` (Apple) is accepted but falls back to CPU
with one warning, because CTranslate2 has no Metal backend. The process-wide memory and
BLAS-thread settings are made on import in `tingxie/__init__.py`: they must precede numpy.
"""

from __future__ import annotations

import logging
import os
import re

from .types import DeviceChoice, OptionsError

__all__ = ["COMPUTE_TYPES", "DeviceChoice", "choose", "cpu_cores", "cuda_device_count"]

log = logging.getLogger(__name__)

COMPUTE_TYPES = ("auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "float16", "bfloat16", "float32")


def cuda_device_count() -> int:
    """CUDA devices the model families can use: each family's folder knows its runtime
    (Whisper's CTranslate2), so the registry asks them; nothing here imports one."""
    from .engines.registry import cuda_devices

    return cuda_devices()


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
