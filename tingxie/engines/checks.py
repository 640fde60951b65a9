"""Checking a model folder before anything is loaded: ONNX files and their metadata
(the sherpa-onnx families, diarization) and a trial load in a child process.

sherpa-onnx ends the whole process (exit 255) when a file or metadata key it needs is
missing, so each family checks, here, everything its loader reads and names what is
missing; `probe_child` loads a model once in a child process, which catches whatever
else would end a process (a corrupt graph, tokens that do not match the vocabulary).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from . import onnxmeta
from .base import ModelError

PROBE_TIMEOUT_S = 600.0


def pick(path: Path, stem: str, prefer_int8: bool = True) -> Path | None:
    """`stem.int8.onnx` or `stem.onnx`: sherpa-onnx releases ship both, int8 is the
    faster on CPU, float32 the one to use on a GPU."""
    names = [f"{stem}.int8.onnx", f"{stem}.onnx"]
    for n in names if prefer_int8 else names[::-1]:
        if (path / n).is_file():
            return path / n
    return None


def meta(path: Path) -> dict[str, str]:
    try:
        return onnxmeta.read(path).metadata
    except (OSError, onnxmeta.OnnxReadError):
        return {}


def read_info(path: Path, problems: list[str]) -> onnxmeta.OnnxInfo | None:
    try:
        return onnxmeta.read(path)
    except (OSError, onnxmeta.OnnxReadError) as e:
        problems.append(f"{path.name} is not a readable ONNX model (truncated, or not ONNX: {e})")
        return None


def need_keys(info: onnxmeta.OnnxInfo, fname: str, keys: list[str], problems: list[str]) -> None:
    missing = [k for k in keys if not info.metadata.get(k, "").strip()]
    if missing:
        problems.append(f"{fname} lacks ONNX metadata {', '.join(missing)}")
    for k in keys:
        v = info.metadata.get(k, "").strip()
        if v and k not in ("comment", "tokens", "punctuations", "unk_symbol") and not _numeric(v):
            problems.append(f"{fname} has a non-numeric value for metadata {k}")


def _numeric(v: str) -> bool:
    return all(re.fullmatch(r"-?\d+(\.\d*)?([eE][-+]?\d+)?", x.strip()) for x in v.split(",") if x.strip())


def tokens_txt(path: Path, problems: list[str]) -> list[str]:
    f = path / "tokens.txt"
    if not f.is_file():
        problems.append("tokens.txt is missing")
        return []
    out = []
    for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.rsplit(maxsplit=1)
        if parts:
            out.append(parts[0] if len(parts) == 2 else " ")
    return out


def vocab(info: onnxmeta.OnnxInfo, tokens: list[str], fname: str, problems: list[str]) -> None:
    v = info.metadata.get("vocab_size", "")
    if v.isdigit() and tokens and len(tokens) < int(v):
        problems.append(f"tokens.txt has {len(tokens)} tokens but {fname} declares vocab_size {v}")


def input_types(info: onnxmeta.OnnxInfo, fname: str, want: list[str], problems: list[str]) -> None:
    """sherpa-onnx passes inputs by position with fixed element types."""
    got = info.graph_inputs
    if len(got) != len(want):
        problems.append(f"{fname} has {len(got)} inputs; sherpa-onnx feeds {len(want)}")
        return
    for (name, elem), w in zip(got, want, strict=False):
        if elem != w:
            problems.append(f"{fname} input {name!r} is {elem}; sherpa-onnx feeds {w}")


def probe_child(args: list[str], what: str, path: Path) -> None:
    """`python -m ARGS` in a child process; its crash or timeout is a ModelError naming `what`."""
    cmd = [sys.executable, "-m", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired as e:
        raise ModelError(f"{what} did not load within {PROBE_TIMEOUT_S:.0f} s") from e
    if r.returncode != 0:
        raise ModelError(f"{what} failed to load: {_complaint(r.stderr + r.stdout, path)}")


def _complaint(text: str, path: Path) -> str:
    """The loader's last meaningful lines, without the server's paths."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keep = [
        ln for ln in lines if re.search(r"does not exist|Invalid|error|Error|failed|Failed|missing|!=", ln)
    ] or lines[-2:]
    out = " | ".join(keep[-3:])
    out = out.replace(str(path.resolve()), path.name).replace(str(path), path.name)
    out = re.sub(r"(/[^\s:'\"]+)+/", "", out)  # any other absolute path: keep the file name
    return out[:500] or "the loader exited without a message"
