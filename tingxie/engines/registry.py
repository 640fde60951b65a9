"""Model families: how to recognise a model directory, check it, and load it.

`detect_family` looks only at file names and ONNX metadata. `validate` checks, before
anything is loaded into the serving process, every file and metadata key the family's
loader needs: sherpa-onnx ends the whole process (exit 255) when one is missing, so a
bad directory must be refused here with a `ModelError` naming what is missing. With
`probe=True` the model is also loaded once in a child process, which catches whatever
else would end a process (a corrupt graph, tokens that do not match the vocabulary).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import onnxmeta
from .base import ModelError, ModelSpec, Recognizer

PROBE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Family:
    name: str
    detect: Callable[[Path], bool]
    check: Callable[[Path], list[str]]  # problems, each naming what is missing
    factory: Callable[..., Recognizer]  # (model_id, path, choice, **options)
    describe: Callable[[str, Path], ModelSpec]  # (model_id, path): the spec without loading
    sherpa: bool = False  # loaded by sherpa-onnx: probe in a child process


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> None:
    FAMILIES[family.name] = family


# -- files and metadata -----------------------------------------------------------------
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


def _read_info(path: Path, problems: list[str]) -> onnxmeta.OnnxInfo | None:
    try:
        return onnxmeta.read(path)
    except (OSError, onnxmeta.OnnxReadError) as e:
        problems.append(f"{path.name} is not a readable ONNX model (truncated, or not ONNX: {e})")
        return None


def _need_keys(info: onnxmeta.OnnxInfo, fname: str, keys: list[str], problems: list[str]) -> None:
    missing = [k for k in keys if not info.metadata.get(k, "").strip()]
    if missing:
        problems.append(f"{fname} lacks ONNX metadata {', '.join(missing)}")
    for k in keys:
        v = info.metadata.get(k, "").strip()
        if v and k not in ("comment", "tokens", "punctuations", "unk_symbol") and not _numeric(v):
            problems.append(f"{fname} has a non-numeric value for metadata {k}")


def _numeric(v: str) -> bool:
    return all(re.fullmatch(r"-?\d+(\.\d*)?([eE][-+]?\d+)?", x.strip()) for x in v.split(",") if x.strip())


def _tokens(path: Path, problems: list[str]) -> list[str]:
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


def _vocab(info: onnxmeta.OnnxInfo, tokens: list[str], fname: str, problems: list[str]) -> None:
    v = info.metadata.get("vocab_size", "")
    if v.isdigit() and tokens and len(tokens) < int(v):
        problems.append(f"tokens.txt has {len(tokens)} tokens but {fname} declares vocab_size {v}")


def _input_types(info: onnxmeta.OnnxInfo, fname: str, want: list[str], problems: list[str]) -> None:
    """sherpa-onnx passes inputs by position with fixed element types."""
    got = info.graph_inputs
    if len(got) != len(want):
        problems.append(f"{fname} has {len(got)} inputs; sherpa-onnx feeds {len(want)}")
        return
    for (name, elem), w in zip(got, want, strict=False):
        if elem != w:
            problems.append(f"{fname} input {name!r} is {elem}; sherpa-onnx feeds {w}")


# -- SenseVoice and the Fun-ASR-Nano CTC export (one loader in sherpa-onnx) --------------
SV_KEYS = ["vocab_size", "lfr_window_size", "lfr_window_shift", "normalize_samples"]
SV_FULL_KEYS = SV_KEYS + [
    "with_itn",
    "without_itn",
    "lang_auto",
    "lang_zh",
    "lang_en",
    "lang_ja",
    "lang_ko",
    "lang_yue",
    "neg_mean",
    "inv_stddev",
]


def _is_nano(m: dict) -> bool:
    return "Nano" in m.get("comment", "")


def _sv_model(path: Path) -> Path | None:
    if (path / "tokens.txt").is_file() and not (path / "encoder.onnx").exists() and not pick(path, "encoder"):
        return pick(path, "model")
    return None


def detect_sense_voice(path: Path) -> bool:
    f = _sv_model(path)
    if f is None:
        return False
    m = meta(f)
    return not _is_nano(m) and (m.get("model_type", "").startswith("sense_voice") or "with_itn" in m or "lang_zh" in m)


def detect_nano_ctc(path: Path) -> bool:
    f = _sv_model(path)
    return f is not None and _is_nano(meta(f))


def _single_model(path: Path, problems: list[str], keys) -> tuple[Path, onnxmeta.OnnxInfo, list[str]] | None:
    """The model file, its ONNX info and tokens of a model.onnx + tokens.txt directory,
    with its metadata keys checked (`keys`: a list, or a function of the metadata)."""
    f = _sv_model(path)
    if f is None:
        problems.append("model.onnx (or model.int8.onnx) and tokens.txt are required")
        return None
    info = _read_info(f, problems)
    tokens = _tokens(path, problems)
    if info is None:
        return None
    _need_keys(info, f.name, keys(info.metadata) if callable(keys) else keys, problems)
    _vocab(info, tokens, f.name, problems)
    return f, info, tokens


def check_sense_voice(path: Path) -> list[str]:
    problems: list[str] = []
    found = _single_model(path, problems, lambda m: SV_KEYS if _is_nano(m) else SV_FULL_KEYS)
    if found is None:
        return problems
    f, info, _ = found
    nano = _is_nano(info.metadata)
    # x_length, language and text_norm must be int32: an int64 export decodes to ""
    _input_types(info, f.name, ["float"] if nano else ["float", "int32", "int32", "int32"], problems)
    return problems


# -- Paraformer --------------------------------------------------------------------------
PF_KEYS = ["vocab_size", "lfr_window_size", "lfr_window_shift", "neg_mean", "inv_stddev"]
ONLINE_PF_KEYS = PF_KEYS + ["encoder_output_size", "decoder_num_blocks", "decoder_kernel_size"]


def detect_paraformer(path: Path) -> bool:
    f = _sv_model(path)
    if f is None:
        return False
    m = meta(f)
    return (
        not _is_nano(m)
        and "with_itn" not in m
        and "punctuations" not in m
        and ("lfr_window_size" in m or "paraformer" in m.get("model_type", ""))
    )


def check_paraformer(path: Path) -> list[str]:
    problems: list[str] = []
    found = _single_model(path, problems, PF_KEYS)
    if found is None:
        return problems
    f, info, tokens = found
    if tokens and "</s>" not in tokens:
        problems.append("tokens.txt lacks </s> (Paraformer's end of sentence)")
    _input_types(info, f.name, ["float", "int32"], problems)
    if len(info.outputs) not in (2, 4):
        problems.append(f"{f.name} has {len(info.outputs)} outputs; sherpa-onnx reads 2 (or 4 with CIF timestamps)")
    return problems


def paraformer_has_timestamps(path: Path) -> bool:
    f = _sv_model(path)
    if f is None:
        return False
    try:
        return len(onnxmeta.read(f).outputs) >= 4
    except (OSError, onnxmeta.OnnxReadError):
        return False


def detect_streaming_paraformer(path: Path) -> bool:
    enc = pick(path, "encoder")
    return bool(enc and pick(path, "decoder") and (path / "tokens.txt").is_file() and "decoder_num_blocks" in meta(enc))


def check_streaming_paraformer(path: Path) -> list[str]:
    problems: list[str] = []
    enc, dec = pick(path, "encoder"), pick(path, "decoder")
    if enc is None or dec is None:
        return ["encoder.onnx and decoder.onnx (or their .int8.onnx) and tokens.txt are required"]
    tokens = _tokens(path, problems)
    info = _read_info(enc, problems)
    _read_info(dec, problems)
    if info is not None:
        _need_keys(info, enc.name, ONLINE_PF_KEYS, problems)
        _vocab(info, tokens, enc.name, problems)
        _input_types(info, enc.name, ["float", "int32"], problems)
        if len(info.outputs) < 3:
            problems.append(
                f"{enc.name} has {len(info.outputs)} outputs; sherpa-onnx reads 3 (encoder_out, length, alpha)"
            )
    return problems


# -- punctuation (CT-Transformer) --------------------------------------------------------
PUNCT_KEYS = ["tokens", "vocab_size", "punctuations", "unk_symbol"]


def detect_punctuation(path: Path) -> bool:
    f = pick(path, "model")
    return f is not None and "punctuations" in meta(f)


def check_punctuation(path: Path) -> list[str]:
    problems: list[str] = []
    f = pick(path, "model")
    if f is None:
        return ["model.onnx (or model.int8.onnx) is required"]
    info = _read_info(f, problems)
    if info is None:
        return problems
    m = info.metadata
    _need_keys(info, f.name, PUNCT_KEYS, problems)
    tokens = m.get("tokens", "").split("|") if m.get("tokens") else []
    if tokens and m.get("vocab_size", "").isdigit() and len(tokens) != int(m["vocab_size"]):
        problems.append(f"{f.name} metadata has {len(tokens)} tokens but vocab_size {m['vocab_size']}")
    puncts = m.get("punctuations", "").split("|")
    lacking = [p for p in ("。", "，", "？", "、", "_") if m.get("punctuations") and p not in puncts]
    if lacking:
        problems.append(f"{f.name} metadata punctuations lack {' '.join(lacking)}")
    if m.get("unk_symbol") and tokens and m["unk_symbol"] not in tokens:
        problems.append(f"{f.name} metadata unk_symbol is not among its tokens")
    return problems


# -- Fun-ASR-Nano, LLM form --------------------------------------------------------------
def nano_llm_tokenizer(path: Path) -> Path | None:
    for d in [path, *sorted(p for p in path.iterdir() if p.is_dir())] if path.is_dir() else []:
        if all((d / n).is_file() for n in ("tokenizer.json", "vocab.json", "merges.txt")):
            return d
    return None


def detect_nano_llm(path: Path) -> bool:
    return bool(pick(path, "encoder_adaptor") and pick(path, "llm") and pick(path, "embedding"))


def check_nano_llm(path: Path) -> list[str]:
    problems = [f"{s}.onnx is missing" for s in ("encoder_adaptor", "llm", "embedding") if pick(path, s) is None]
    if nano_llm_tokenizer(path) is None:
        problems.append(
            "the tokenizer directory (tokenizer.json, vocab.json and merges.txt, e.g. Qwen3-0.6B/) is missing"
        )
    enc = pick(path, "encoder_adaptor")
    if enc is not None:
        info = _read_info(enc, problems)
        if info is not None:
            _need_keys(info, enc.name, ["lfr_window_size", "lfr_window_shift", "llm_dim"], problems)
    llm = pick(path, "llm")
    if llm is not None and (info := _read_info(llm, problems)) is not None:
        # what offline-funasr-nano-model.cc exits on: a KV-delta export with
        # 1 + 2*layers outputs and 3 + 2*layers inputs (embeds, mask, cache_position, KV)
        _need_keys(info, llm.name, ["vocab_size"], problems)
        if "kv_delta" not in info.metadata.get("model_type", ""):
            problems.append(f"{llm.name} is not a KV-delta export (metadata model_type lacks kv_delta)")
        n_out, n_in = len(info.outputs), len(info.graph_inputs)
        if n_out < 3 or (n_out - 1) % 2:
            problems.append(f"{llm.name} has {n_out} outputs; sherpa-onnx wants logits + 2 per layer")
        elif n_in != 3 + (n_out - 1):
            problems.append(
                f"{llm.name} has {n_in} inputs; sherpa-onnx wants {3 + n_out - 1} (embeds, mask, cache_position, KV)"
            )
        if info.graph_inputs and info.graph_inputs[0][1] != "float":
            problems.append(f"{llm.name} input embeds must be float32")
    return problems


# -- Whisper (CTranslate2) ---------------------------------------------------------------
def detect_whisper(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def check_whisper(path: Path) -> list[str]:
    problems = [f"{n} is missing" for n in ("model.bin", "config.json") if not (path / n).is_file()]
    if not any((path / n).is_file() for n in ("tokenizer.json", "vocabulary.json", "vocabulary.txt")):
        problems.append("tokenizer.json (or vocabulary.json) is missing")
    if (path / "config.json").is_file():
        try:
            json.loads((path / "config.json").read_text())
        except ValueError:
            problems.append("config.json is not valid JSON")
    return problems


# -- the registry ------------------------------------------------------------------------
def _lazy(module: str, name: str) -> Callable:
    """Import a family's module only when it is used (sherpa-onnx is optional)."""

    def call(*args, **kwargs):
        import importlib

        obj = importlib.import_module(f"tingxie.engines.{module}")
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj(*args, **kwargs)

    return call


# Order matters: the most specific detection first.
register(
    Family(
        "whisper",
        detect_whisper,
        check_whisper,
        _lazy("whisper.reference", "load"),
        _lazy("whisper.recognizer", "describe"),
    )
)
register(
    Family(
        "funasr-nano-llm",
        detect_nano_llm,
        check_nano_llm,
        _lazy("sherpa.models", "FunAsrNanoLlm"),
        _lazy("sherpa.models", "FunAsrNanoLlm.describe"),
        sherpa=True,
    )
)
register(
    Family(
        "streaming-paraformer",
        detect_streaming_paraformer,
        check_streaming_paraformer,
        _lazy("sherpa.models", "StreamingParaformer"),
        _lazy("sherpa.models", "StreamingParaformer.describe"),
        sherpa=True,
    )
)
register(
    Family(
        "punctuation",
        detect_punctuation,
        check_punctuation,
        _lazy("sherpa.models", "Punctuator"),
        _lazy("sherpa.models", "Punctuator.describe"),
        sherpa=True,
    )
)
register(
    Family(
        "funasr-nano",
        detect_nano_ctc,
        check_sense_voice,
        _lazy("sherpa.models", "FunAsrNanoCtc"),
        _lazy("sherpa.models", "FunAsrNanoCtc.describe"),
        sherpa=True,
    )
)
register(
    Family(
        "sensevoice",
        detect_sense_voice,
        check_sense_voice,
        _lazy("sherpa.models", "SenseVoice"),
        _lazy("sherpa.models", "SenseVoice.describe"),
        sherpa=True,
    )
)
register(
    Family(
        "paraformer",
        detect_paraformer,
        check_paraformer,
        _lazy("sherpa.models", "Paraformer"),
        _lazy("sherpa.models", "Paraformer.describe"),
        sherpa=True,
    )
)


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
        if _read_info(f, problems) is None:
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
    if probe and fam.sherpa:
        probe_load(p, family)
    return family


def probe_load(path: Path, family: str) -> None:
    """Load and run the model once in a child process; a crash there is a ModelError
    here, with the loader's own complaint (paths removed)."""
    _probe_child(["tingxie.engines.probe", family, str(path)], f"model {path.name!r} ({family})", path)


def _probe_child(args: list[str], what: str, path: Path) -> None:
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


def describe(model_id: str, path: str | Path) -> ModelSpec:
    """Family, languages and capabilities of a directory, without loading it (for
    /v1/models and `tingxie models`). Raises ModelError for an unknown directory."""
    p = Path(path)
    return FAMILIES[detect_family(p)].describe(model_id, p)


def load(
    model_id: str, path: str | Path, choice=None, family: str | None = None, probe: bool = True, **options
) -> Recognizer:
    """Validate (and, for sherpa-onnx families, probe) a directory, then load it."""
    p = Path(path)
    family = validate(p, family, probe=probe)
    if choice is None:
        from ..device import choose

        choice = choose("cpu")
    return FAMILIES[family].factory(model_id, p, choice, **options)


# -- diarization: a segmentation model and a speaker-embedding model ---------------------
# Not recognizers: found anywhere under the models folder, in sherpa-onnx's release
# layouts (a segmentation folder with model.onnx, an embedding .onnx file loose in the
# models folder) and in ours (`tingxie models --prepare diarization`: each in a folder
# of its own with its licence and checksums).
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


def check_segmentation(f: Path) -> list[str]:
    problems: list[str] = []
    info = _read_info(f, problems)
    if info is None:
        return problems
    _need_keys(info, f.name, SEGMENTATION_KEYS, problems)
    _input_types(info, f.name, ["float"], problems)
    if info.metadata.get("sample_rate", "16000") != "16000":
        problems.append(f"{f.name} is for {info.metadata['sample_rate']} Hz; sherpa-onnx diarizes 16000 Hz audio")
    return problems


def check_embedding(f: Path) -> list[str]:
    problems: list[str] = []
    info = _read_info(f, problems)
    if info is None:
        return problems
    _need_keys(info, f.name, EMBEDDING_KEYS, problems)
    _input_types(info, f.name, ["float"], problems)
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
    _probe_child(args, f"diarization models {models.name!r}", models.segmentation.parent)
