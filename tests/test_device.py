"""Device choice: cpu/cuda/mps and compute types, decided in one place."""

from __future__ import annotations

import pytest

from tingxie import device as device_mod
from tingxie.types import OptionsError


def test_device_choice_on_cpu(monkeypatch):
    monkeypatch.setattr(device_mod, "cuda_device_count", lambda: 0)  # the same expectations on a GPU host
    c = device_mod.choose()
    assert (c.device, c.compute_type) == ("cpu", "int8")
    assert c.instances * c.threads <= max(1, device_mod.cpu_cores())
    with pytest.raises(OptionsError, match="no CUDA device"):
        device_mod.choose("cuda")
    with pytest.raises(OptionsError, match="needs a GPU"):
        device_mod.choose("cpu", "float16")
    with pytest.raises(OptionsError, match="unknown device"):
        device_mod.choose("tpu")


def test_mps_falls_back_to_cpu_with_a_note():
    c = device_mod.choose("mps")
    assert c.device == "cpu" and "Metal" in c.note


def test_device_choice_with_gpus(monkeypatch):
    # A GPU cannot exist here: stand in for CTranslate2's device count only.
    monkeypatch.setattr(device_mod, "cuda_device_count", lambda: 2)
    c = device_mod.choose()
    assert (c.device, c.index, c.compute_type) == ("cuda", 0, "float16")
    assert device_mod.choose("cuda:1", "int8_float16").index == 1
    with pytest.raises(OptionsError, match="only 2 CUDA"):
        device_mod.choose("cuda:2")
