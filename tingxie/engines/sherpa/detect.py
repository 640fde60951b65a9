"""How each sherpa-onnx family recognises its folder (`detect`) and checks, before
sherpa-onnx sees it, every file and metadata key its loader reads (`check`): sherpa-onnx
ends the process on a missing one instead of raising. File names and ONNX metadata only;
nothing is loaded."""

from __future__ import annotations

from pathlib import Path

from .. import onnxmeta
from ..checks import input_types, meta, need_keys, pick, read_info, tokens_txt, vocab

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
    info = read_info(f, problems)
    tokens = tokens_txt(path, problems)
    if info is None:
        return None
    need_keys(info, f.name, keys(info.metadata) if callable(keys) else keys, problems)
    vocab(info, tokens, f.name, problems)
    return f, info, tokens


def check_sense_voice(path: Path) -> list[str]:
    problems: list[str] = []
    found = _single_model(path, problems, lambda m: SV_KEYS if _is_nano(m) else SV_FULL_KEYS)
    if found is None:
        return problems
    f, info, _ = found
    nano = _is_nano(info.metadata)
    # x_length, language and text_norm must be int32: an int64 export decodes to ""
    input_types(info, f.name, ["float"] if nano else ["float", "int32", "int32", "int32"], problems)
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
    input_types(info, f.name, ["float", "int32"], problems)
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
    tokens = tokens_txt(path, problems)
    info = read_info(enc, problems)
    read_info(dec, problems)
    if info is not None:
        need_keys(info, enc.name, ONLINE_PF_KEYS, problems)
        vocab(info, tokens, enc.name, problems)
        input_types(info, enc.name, ["float", "int32"], problems)
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
    info = read_info(f, problems)
    if info is None:
        return problems
    m = info.metadata
    need_keys(info, f.name, PUNCT_KEYS, problems)
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
        info = read_info(enc, problems)
        if info is not None:
            need_keys(info, enc.name, ["lfr_window_size", "lfr_window_shift", "llm_dim"], problems)
    llm = pick(path, "llm")
    if llm is not None and (info := read_info(llm, problems)) is not None:
        # what offline-funasr-nano-model.cc exits on: a KV-delta export with
        # 1 + 2*layers outputs and 3 + 2*layers inputs (embeds, mask, cache_position, KV)
        need_keys(info, llm.name, ["vocab_size"], problems)
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
