"""Tiny models in the exact interfaces sherpa-onnx loads, built with `onnx.helper`.

No real weights of these families can be obtained offline, so each builder writes a
model directory whose graph is a linear layer over the real input features plus a
constant bias that makes one known token sequence win. What comes out therefore depends
on what sherpa-onnx feeds in — input count, order and dtypes, the LFR frame count of
each window (longer audio → more of the sequence), the language and text-norm inputs —
and every metadata key its loaders read (sherpa-onnx/csrc/offline-sense-voice-model.cc,
offline-paraformer-model.cc, online-paraformer-model.cc, offline-ct-transformer-model.cc).

The token sequences advance at a fixed rate, so the expected text of a clip is known
from its length: `expected_*` below.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEAT = 560  # 80-bin fbank x LFR 7
TMAX = 1200  # LFR frames a tiny model covers (72 s)
LINEAR_SCALE = 1e-4  # the audio's pull: far below the bias, so the sequence wins
OPSET = 17

# SenseVoice: the text the model "says" in Chinese (any language but en) and English.
SV_ZH = list("今天天气很好。明天下雨吗？")
SV_EN = ["▁hello", "▁world", "."]
SV_SPECIAL = [
    "<blank>",
    "<|zh|>",
    "<|en|>",
    "<|ja|>",
    "<|ko|>",
    "<|yue|>",
    "<|HAPPY|>",
    "<|NEUTRAL|>",
    "<|Speech|>",
    "<|BGM|>",
    "<|withitn|>",
    "<|woitn|>",
]
# lang_* and with_itn/without_itn metadata values: SenseVoiceSmall's own ids
SV_LANG_IDS = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
SV_WITH_ITN, SV_WITHOUT_ITN = 14, 15
CTC_PERIOD = 2  # a token every 2 LFR frames (120 ms), blank in between

# Paraformer: characters and "@@" BPE pieces, cycled; one token per 6 CIF-peak steps
# (6 x 20 ms = 120 ms).
PF_SEQ = ["今", "天", "天", "气", "很", "好", "hel@@", "lo", "world"]
PF_PEAK_PERIOD = 6

NANO_SEQ = list("你好世界我们开会讨论预算")

ONLINE_SEQ = list("实时识别在这里")  # streaming Paraformer, cycled

PUNCT = ["<unk>", "_", "，", "。", "？", "、"]
PUNCT_AFTER = {"好": "，", "吗": "？", "气": "、"}


def _save(graph: onnx.GraphProto, path: Path, meta: dict) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tingxie-tests")
    model.ir_version = 8
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, str(v)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _const(name: str, arr) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr), name)


def _write_tokens(path: Path, symbols: list[str], encode=None) -> None:
    lines = [f"{encode(s) if encode else s} {i}" for i, s in enumerate(symbols)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cmvn_meta(meta: dict) -> dict:
    meta = dict(meta)
    meta["neg_mean"] = ",".join(["0"] * FEAT)
    meta["inv_stddev"] = ",".join(["1"] * FEAT)
    return meta


def _ctc_table(seq_ids: list[int], vocab: int, blank: int) -> np.ndarray:
    """[TMAX, vocab] bias: seq token k at frame k*CTC_PERIOD, blank elsewhere and after."""
    t = np.zeros((TMAX, vocab), np.float32)
    t[:, blank] = 10.0
    for k, tok in enumerate(seq_ids):
        f = k * CTC_PERIOD
        if f >= TMAX:
            break
        t[f, blank] = 0.0
        t[f, tok] = 10.0
    return t


def _onehot(ids, vocab: int) -> np.ndarray:
    out = np.zeros((len(ids), vocab), np.float32)
    for i, t in enumerate(ids):
        out[i, t] = 10.0
    return out


# -- SenseVoice -------------------------------------------------------------------------
def sense_voice(d: Path, drop_meta: tuple[str, ...] = (), name: str = "model.int8.onnx") -> Path:
    """SenseVoice: inputs x [N,T,560] f32, x_length [N] i32, language [N] i32,
    text_norm [N] i32; logits [N,T+4,V]: lang, emotion, event, itn tag, then the text."""
    symbols = SV_SPECIAL + SV_ZH + SV_EN
    # the text sequences repeat "今天天气很好。" style characters; dedupe into the vocab
    vocab_syms: list[str] = []
    for s in symbols:
        if s not in vocab_syms:
            vocab_syms.append(s)
    V = len(vocab_syms)
    idx = {s: i for i, s in enumerate(vocab_syms)}
    zh = _ctc_table([idx[s] for s in SV_ZH], V, 0)
    en = _ctc_table([idx[s] for s in SV_EN], V, 0)
    tables = np.stack([zh, en])  # [2, TMAX, V], picked by language == en

    lang_table = np.zeros((16, V), np.float32)
    for name_, i in SV_LANG_IDS.items():
        tag = {"auto": "<|zh|>", "nospeech": "<|zh|>"}.get(name_, f"<|{name_}|>")
        lang_table[i, idx[tag]] = 10.0
    emo_table = np.tile(_onehot([idx["<|HAPPY|>"]], V), (16, 1))
    event_table = np.tile(_onehot([idx["<|Speech|>"]], V), (16, 1))
    itn_table = np.zeros((16, V), np.float32)
    itn_table[SV_WITH_ITN, idx["<|withitn|>"]] = 10.0
    itn_table[SV_WITHOUT_ITN, idx["<|woitn|>"]] = 10.0
    W = (np.random.default_rng(0).standard_normal((FEAT, V)) * LINEAR_SCALE).astype(np.float32)

    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["lin"]),
        helper.make_node("Shape", ["x"], ["xshape"]),
        helper.make_node("Gather", ["xshape", "one"], ["T"], axis=0),  # [1]
        helper.make_node("Equal", ["language", "lang_en"], ["is_en_b"]),
        helper.make_node("Cast", ["is_en_b"], ["is_en"], to=TensorProto.INT64),
        helper.make_node("Gather", ["tables", "is_en"], ["bias_full"], axis=0),  # [N,TMAX,V]
        helper.make_node("Slice", ["bias_full", "zero", "T", "one"], ["bias"]),  # [N,T,V]
        helper.make_node("Add", ["lin", "bias"], ["body"]),
        helper.make_node("Gather", ["lang_table", "language"], ["l0"], axis=0),
        helper.make_node("Gather", ["emo_table", "language"], ["l1"], axis=0),
        helper.make_node("Gather", ["event_table", "language"], ["l2"], axis=0),
        helper.make_node("Gather", ["itn_table", "text_norm"], ["l3"], axis=0),
        *[helper.make_node("Unsqueeze", [f"l{i}", "one"], [f"u{i}"]) for i in range(4)],
        helper.make_node("Concat", ["u0", "u1", "u2", "u3", "body"], ["logits"], axis=1),
    ]
    inits = [
        _const("W", W),
        _const("tables", tables),
        _const("lang_table", lang_table),
        _const("emo_table", emo_table),
        _const("event_table", event_table),
        _const("itn_table", itn_table),
        _const("zero", np.array([0], np.int64)),
        _const("one", np.array([1], np.int64)),
        _const("lang_en", np.array(SV_LANG_IDS["en"], np.int32)),
    ]
    graph = helper.make_graph(
        nodes,
        "sense_voice_tiny",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", FEAT]),
            helper.make_tensor_value_info("x_length", TensorProto.INT32, ["N"]),
            helper.make_tensor_value_info("language", TensorProto.INT32, ["N"]),
            helper.make_tensor_value_info("text_norm", TensorProto.INT32, ["N"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", "T4", V])],
        inits,
    )
    meta = _cmvn_meta(
        {
            "lfr_window_size": 7,
            "lfr_window_shift": 6,
            "normalize_samples": 0,
            "model_type": "sense_voice_ctc",
            "version": "2",
            "vocab_size": V,
            "comment": "iic/SenseVoiceSmall (tingxie tiny test model)",
            **{f"lang_{k}": v for k, v in SV_LANG_IDS.items()},
            "with_itn": SV_WITH_ITN,
            "without_itn": SV_WITHOUT_ITN,
        }
    )
    for k in drop_meta:
        meta.pop(k, None)
    d.mkdir(parents=True, exist_ok=True)
    _write_tokens(d / "tokens.txt", vocab_syms)
    return _save(graph, d / name, meta)


def lfr_frames(seconds: float) -> int:
    """LFR frames sherpa-onnx makes of `seconds` of audio (25 ms/10 ms fbank with
    snip_edges, then LFR 7/6)."""
    n = int(round(seconds * 16000))
    fbank = 1 + (n - 400) // 160
    return 1 + (fbank - 1) // 6  # sherpa-onnx's ApplyLfr pads the edges (lfr.cc)


def expected_sense_voice(seconds: float, language: str = "zh") -> str:
    seq = SV_EN if language == "en" else SV_ZH
    n = -(-lfr_frames(seconds) // CTC_PERIOD)
    return "".join(seq[:n]).replace("▁", " ").strip()


# -- Fun-ASR-Nano, CTC export -------------------------------------------------------------
def funasr_nano_ctc(d: Path) -> Path:
    """The CTC form: one input x [1,T,560] (no CMVN), logits [1,T,V], blank = V-1,
    `Nano` in `comment`, base64 tokens."""
    symbols = [s for i, s in enumerate(NANO_SEQ) if s not in NANO_SEQ[:i]] + ["<blank>"]
    V = len(symbols)
    idx = {s: i for i, s in enumerate(symbols)}
    table = _ctc_table([idx[s] for s in NANO_SEQ], V, V - 1)
    W = (np.random.default_rng(1).standard_normal((FEAT, V)) * LINEAR_SCALE).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["lin"]),
        helper.make_node("Shape", ["x"], ["xshape"]),
        helper.make_node("Gather", ["xshape", "one"], ["T"], axis=0),
        helper.make_node("Slice", ["table", "zero", "T", "zero"], ["bias"]),  # [T,V]
        helper.make_node("Add", ["lin", "bias"], ["logits"]),
    ]
    inits = [
        _const("W", W),
        _const("table", table),
        _const("zero", np.array([0], np.int64)),
        _const("one", np.array([1], np.int64)),
    ]
    graph = helper.make_graph(
        nodes,
        "funasr_nano_ctc_tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T", FEAT])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "T", V])],
        inits,
    )
    meta = {
        "lfr_window_size": 7,
        "lfr_window_shift": 6,
        "normalize_samples": 0,
        "model_type": "sense_voice_ctc",
        "version": "1",
        "vocab_size": V,
        "blank_id": V - 1,
        "comment": "FunAudioLLM/Fun-ASR-Nano-2512 (tingxie tiny test model)",
    }
    d.mkdir(parents=True, exist_ok=True)
    _write_tokens(d / "tokens.txt", symbols, lambda s: base64.b64encode(s.encode()).decode())
    return _save(graph, d / "model.int8.onnx", meta)


def expected_nano(seconds: float) -> str:
    n = -(-lfr_frames(seconds) // CTC_PERIOD)
    return "".join(NANO_SEQ[:n])


# -- Paraformer (offline) ---------------------------------------------------------------
def paraformer(d: Path) -> Path:
    """Offline Paraformer: speech [N,T,560] f32, speech_lengths [N] i32 → logits
    [N,T,V], token_num, us_alphas, us_cif_peak [N,3T] (the CIF timestamps)."""
    symbols = ["<blank>", "<s>", "</s>"] + [s for i, s in enumerate(PF_SEQ) if s not in PF_SEQ[:i]] + ["<unk>"]
    V = len(symbols)
    idx = {s: i for i, s in enumerate(symbols)}
    eos = idx["</s>"]
    seq_table = _onehot([idx[PF_SEQ[k % len(PF_SEQ)]] for k in range(TMAX)], V)  # [TMAX,V]
    eos_row = _onehot([eos], V)[0]
    W = (np.random.default_rng(2).standard_normal((FEAT, V)) * LINEAR_SCALE).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["speech", "W"], ["lin"]),
        helper.make_node("Shape", ["speech"], ["sshape"]),
        helper.make_node("Gather", ["sshape", "one"], ["T"], axis=0),  # [1] int64
        helper.make_node("Squeeze", ["T", "zero"], ["T0"]),
        helper.make_node("Range", ["zero_s", "T0", "one_s"], ["pos"]),  # [T]
        helper.make_node("Cast", ["speech_lengths"], ["len64"], to=TensorProto.INT64),
        helper.make_node("Mul", ["len64", "three"], ["len3"]),  # [N]
        helper.make_node("Div", ["len3", "period"], ["npeaks"]),
        helper.make_node("Sub", ["npeaks", "one_s"], ["ntok"]),  # [N]
        helper.make_node("Unsqueeze", ["ntok", "one"], ["ntok2"]),  # [N,1]
        helper.make_node("Less", ["pos", "ntok2"], ["mask"]),  # [N,T]
        helper.make_node("Unsqueeze", ["mask", "two"], ["mask3"]),  # [N,T,1]
        helper.make_node("Slice", ["seq_table", "zero", "T", "zero"], ["seq"]),  # [T,V]
        helper.make_node("Where", ["mask3", "seq", "eos_row"], ["bias"]),  # [N,T,V]
        helper.make_node("Add", ["lin", "bias"], ["logits"]),
        helper.make_node("Cast", ["ntok"], ["token_num"], to=TensorProto.INT32),
        # CIF peaks, upsampled x3: a peak at every period-th step inside the speech
        helper.make_node("Mul", ["T0", "three"], ["T3"]),
        helper.make_node("Range", ["zero_s", "T3", "one_s"], ["k"]),
        helper.make_node("Mod", ["k", "period"], ["kmod"]),
        helper.make_node("Equal", ["kmod", "period_m1"], ["on_peak"]),  # [3T]
        helper.make_node("Unsqueeze", ["len3", "one"], ["len3_2"]),  # [N,1]
        helper.make_node("Less", ["k", "len3_2"], ["inside"]),  # [N,3T]
        helper.make_node("And", ["on_peak", "inside"], ["peak_b"]),
        helper.make_node("Cast", ["peak_b"], ["us_cif_peak"], to=TensorProto.FLOAT),
        helper.make_node("Identity", ["us_cif_peak"], ["us_alphas"]),
    ]
    inits = [
        _const("W", W),
        _const("seq_table", seq_table),
        _const("eos_row", eos_row),
        _const("zero", np.array([0], np.int64)),
        _const("one", np.array([1], np.int64)),
        _const("two", np.array([2], np.int64)),
        _const("zero_s", np.array(0, np.int64)),
        _const("one_s", np.array(1, np.int64)),
        _const("three", np.array(3, np.int64)),
        _const("period", np.array(PF_PEAK_PERIOD, np.int64)),
        _const("period_m1", np.array(PF_PEAK_PERIOD - 1, np.int64)),
    ]
    graph = helper.make_graph(
        nodes,
        "paraformer_tiny",
        [
            helper.make_tensor_value_info("speech", TensorProto.FLOAT, ["N", "T", FEAT]),
            helper.make_tensor_value_info("speech_lengths", TensorProto.INT32, ["N"]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", "T", V]),
            helper.make_tensor_value_info("token_num", TensorProto.INT32, ["N"]),
            helper.make_tensor_value_info("us_alphas", TensorProto.FLOAT, ["N", "T3"]),
            helper.make_tensor_value_info("us_cif_peak", TensorProto.FLOAT, ["N", "T3"]),
        ],
        inits,
    )
    meta = _cmvn_meta(
        {
            "lfr_window_size": 7,
            "lfr_window_shift": 6,
            "vocab_size": V,
            "model_type": "paraformer",
            "comment": "tingxie tiny test model",
        }
    )
    d.mkdir(parents=True, exist_ok=True)
    _write_tokens(d / "tokens.txt", symbols)
    return _save(graph, d / "model.int8.onnx", meta)


def paraformer_tokens(seconds: float) -> list[str]:
    n = 3 * lfr_frames(seconds) // PF_PEAK_PERIOD - 1
    return [PF_SEQ[k % len(PF_SEQ)] for k in range(max(0, n))]


def paraformer_token_times(seconds: float) -> list[float]:
    """Token start times within the window, as sherpa-onnx reads CIF peaks (20 ms each)."""
    return [round((k * PF_PEAK_PERIOD + PF_PEAK_PERIOD - 1) * 0.02, 3) for k in range(len(paraformer_tokens(seconds)))]


# -- streaming Paraformer ---------------------------------------------------------------
def streaming_paraformer(d: Path, D: int = 4) -> Path:
    """encoder.onnx: x [1,T,560], x_len [1] i32 → encoder_out [1,T,D], encoder_out_len,
    alpha [1,T] (0.5: CIF fires every 2 frames); decoder.onnx: encoder_out,
    encoder_out_len, acoustic_embedding [1,n,D], acoustic_embedding_length [1] i32,
    one state [1,D,1] → logits, sample_ids [1,n] i64, next state. The state counts the
    tokens emitted so far, so the text continues across chunks."""
    symbols = ["<blank>", "<s>", "</s>"] + [s for i, s in enumerate(ONLINE_SEQ) if s not in ONLINE_SEQ[:i]] + ["<unk>"]
    V = len(symbols)
    idx = {s: i for i, s in enumerate(symbols)}
    W = (np.random.default_rng(3).standard_normal((FEAT, D)) * LINEAR_SCALE).astype(np.float32)
    enc_nodes = [
        helper.make_node("MatMul", ["x", "W"], ["encoder_out"]),
        helper.make_node("Identity", ["x_len"], ["encoder_out_len"]),
        helper.make_node("ReduceSum", ["encoder_out", "minus1"], ["s"], keepdims=0),  # [1,T]
        helper.make_node("Mul", ["s", "zero_f"], ["s0"]),
        helper.make_node("Add", ["s0", "half"], ["alpha"]),
    ]
    enc = helper.make_graph(
        enc_nodes,
        "online_paraformer_encoder_tiny",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T", FEAT]),
            helper.make_tensor_value_info("x_len", TensorProto.INT32, [1]),
        ],
        [
            helper.make_tensor_value_info("encoder_out", TensorProto.FLOAT, [1, "T", D]),
            helper.make_tensor_value_info("encoder_out_len", TensorProto.INT32, [1]),
            helper.make_tensor_value_info("alpha", TensorProto.FLOAT, [1, "T"]),
        ],
        [
            _const("W", W),
            _const("minus1", np.array([-1], np.int64)),
            _const("zero_f", np.array(0.0, np.float32)),
            _const("half", np.array(0.5, np.float32)),
        ],
    )
    seq_ids = np.array([idx[ONLINE_SEQ[k % len(ONLINE_SEQ)]] for k in range(4096)], np.int64)
    dec_nodes = [
        helper.make_node("Shape", ["acoustic_embedding"], ["ashape"]),
        helper.make_node("Gather", ["ashape", "one_s"], ["n"], axis=0),  # scalar
        helper.make_node("Range", ["zero_s", "n", "one_s"], ["pos"]),  # [n]
        helper.make_node("ReduceMax", ["state_0"], ["count_f"], keepdims=0),  # scalar
        helper.make_node("Cast", ["count_f"], ["count"], to=TensorProto.INT64),
        helper.make_node("Add", ["pos", "count"], ["at"]),
        helper.make_node("Gather", ["seq_ids", "at"], ["ids"], axis=0),  # [n]
        helper.make_node("Unsqueeze", ["ids", "zero"], ["sample_ids"]),  # [1,n]
        helper.make_node("OneHot", ["sample_ids", "depth", "onoff"], ["logits"], axis=-1),
        helper.make_node("Cast", ["n"], ["n_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["state_0", "n_f"], ["next_state_0"]),
    ]
    dec = helper.make_graph(
        dec_nodes,
        "online_paraformer_decoder_tiny",
        [
            helper.make_tensor_value_info("encoder_out", TensorProto.FLOAT, [1, "T", D]),
            helper.make_tensor_value_info("encoder_out_len", TensorProto.INT32, [1]),
            helper.make_tensor_value_info("acoustic_embedding", TensorProto.FLOAT, [1, "n", D]),
            helper.make_tensor_value_info("acoustic_embedding_length", TensorProto.INT32, [1]),
            helper.make_tensor_value_info("state_0", TensorProto.FLOAT, [1, D, 1]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "n", V]),
            helper.make_tensor_value_info("sample_ids", TensorProto.INT64, [1, "n"]),
            helper.make_tensor_value_info("next_state_0", TensorProto.FLOAT, [1, D, 1]),
        ],
        [
            _const("seq_ids", seq_ids),
            _const("zero", np.array([0], np.int64)),
            _const("zero_s", np.array(0, np.int64)),
            _const("one_s", np.array(1, np.int64)),
            _const("depth", np.array(V, np.int64)),
            _const("onoff", np.array([0.0, 10.0], np.float32)),
        ],
    )
    meta = _cmvn_meta(
        {
            "vocab_size": V,
            "lfr_window_size": 7,
            "lfr_window_shift": 6,
            "encoder_output_size": D,
            "decoder_num_blocks": 1,
            "decoder_kernel_size": 2,
            "model_type": "paraformer",
            "comment": "tingxie tiny streaming test model",
        }
    )
    d.mkdir(parents=True, exist_ok=True)
    _write_tokens(d / "tokens.txt", symbols)
    _save(enc, d / "encoder.int8.onnx", meta)
    _save(dec, d / "decoder.int8.onnx", {"comment": "tingxie tiny streaming test model"})
    return d


# -- punctuation (CT-Transformer) -------------------------------------------------------
def punctuation(d: Path, vocab: str = "今天气很好明下雨吗实时识别在这里你我们开会世界讨论预算") -> Path:
    """CT-Transformer: text [1,T] i32, text_len [1] i32 → logits [1,T,P] (P static):
    a per-token punctuation table (好 → ，, 吗 → ？, 气 → 、)."""
    tokens = ["<unk>"] + list(dict.fromkeys(vocab)) + ["hello", "world"]
    P = len(PUNCT)
    table = np.zeros((len(tokens), P), np.float32)
    for i, t in enumerate(tokens):
        table[i, PUNCT.index(PUNCT_AFTER.get(t, "_"))] = 10.0
    nodes = [helper.make_node("Gather", ["table", "text"], ["logits"], axis=0)]
    graph = helper.make_graph(
        nodes,
        "ct_transformer_tiny",
        [
            helper.make_tensor_value_info("text", TensorProto.INT32, [1, "T"]),
            helper.make_tensor_value_info("text_len", TensorProto.INT32, [1]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "T", P])],
        [_const("table", table)],
    )
    meta = {
        "model_type": "ct_transformer",
        "vocab_size": len(tokens),
        "tokens": "|".join(tokens),
        "punctuations": "|".join(PUNCT),
        "unk_symbol": "<unk>",
        "comment": "tingxie tiny test model",
    }
    return _save(graph, d / "model.onnx", meta)


# -- Fun-ASR-Nano, LLM form (encoder-adaptor + LLM + embedding + tokenizer) ---------------
NANO_LLM_SEQ = list("大模型转写会议纪要")
LLM_H, LLM_MAXLEN = 4, 512  # hidden size; KV cache length (max_total_len)


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2/Qwen byte-level BPE's byte → printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=False)}


def funasr_nano_llm(d: Path) -> Path:
    """encoder_adaptor: x [1,T,560] → [1,T,H] with channel 0 = 1 (audio marker);
    embedding: ids [1,L] i64 → [1,L,H] zeros; llm (KV-delta export, one layer): embeds,
    attention_mask, cache_position, past_key/value [1,MAXLEN,1,2] → logits [1,L,V],
    key/value deltas [1,L,1,2]. The deltas store (generated?, audio?) per position, so
    the cache counts audio tokens and tokens generated so far: the model writes
    NANO_LLM_SEQ one character per 2 audio tokens (120 ms), then <|im_end|>. The
    tokenizer folder is Qwen-style byte-level BPE (tokenizer.json, vocab.json, merges.txt)."""
    import json

    b2u = _byte_to_unicode()
    vocab = {b2u[b]: i for i, b in enumerate(sorted(b2u))}
    out_ids = []
    for ch in NANO_LLM_SEQ:
        sym = "".join(b2u[b] for b in ch.encode())
        vocab.setdefault(sym, len(vocab))
        out_ids.append(vocab[sym])
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    added = [
        {
            "id": len(vocab) + i,
            "content": s,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, s in enumerate(specials)
    ]
    V = len(vocab) + len(specials)
    im_end = added[2]["id"]
    tok_dir = d / "Qwen3-0.6B"
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tok_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (tok_dir / "tokenizer.json").write_text(
        json.dumps({"version": "1.0", "added_tokens": added, "model": {"type": "BPE"}}, ensure_ascii=False),
        encoding="utf-8",
    )

    W = (np.random.default_rng(4).standard_normal((FEAT, LLM_H)) * LINEAR_SCALE).astype(np.float32)
    flag = np.zeros(LLM_H, np.float32)
    flag[0] = 1.0
    enc = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["lin"]), helper.make_node("Add", ["lin", "flag"], ["encoder_out"])],
        "nano_encoder_adaptor_tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T", FEAT])],
        [helper.make_tensor_value_info("encoder_out", TensorProto.FLOAT, [1, "T", LLM_H])],
        [_const("W", W), _const("flag", flag)],
    )
    _save(
        enc,
        d / "encoder_adaptor.int8.onnx",
        {"lfr_window_size": 7, "lfr_window_shift": 6, "llm_dim": LLM_H, "comment": "tingxie tiny test model"},
    )

    emb = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["inputs_embeds"], axis=0)],
        "nano_embedding_tiny",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "L"])],
        [helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, [1, "L", LLM_H])],
        [_const("table", np.zeros((V, LLM_H), np.float32))],
    )
    _save(emb, d / "embedding.int8.onnx", {"hidden_size": LLM_H, "comment": "tingxie tiny test model"})

    seq_table = np.zeros((len(out_ids) + 1, V), np.float32)
    for k, t in enumerate(out_ids):
        seq_table[k, t] = 10.0
    seq_table[len(out_ids), im_end] = 10.0
    nodes = [
        helper.make_node("Shape", ["inputs_embeds"], ["eshape"]),
        helper.make_node("Gather", ["eshape", "one_s"], ["L"], axis=0),  # scalar
        helper.make_node("Equal", ["L", "one_s"], ["is_step_b"]),
        helper.make_node("Cast", ["is_step_b"], ["is_step"], to=TensorProto.FLOAT),
        helper.make_node("Slice", ["inputs_embeds", "zero", "one", "two"], ["audio_now"]),  # [1,L,1]
        helper.make_node("ReduceSum", ["audio_now"], ["a_now"], keepdims=0),
        helper.make_node("Slice", ["past_key_0", "zero", "one", "three"], ["gen_past_k"]),  # [1,M,1,1] ch0
        helper.make_node("ReduceSum", ["gen_past_k"], ["g_past"], keepdims=0),
        helper.make_node("Slice", ["past_key_0", "one", "two", "three"], ["aud_past_k"]),  # ch1
        helper.make_node("ReduceSum", ["aud_past_k"], ["a_past"], keepdims=0),
        helper.make_node("Add", ["a_now", "a_past"], ["n_audio_f"]),
        helper.make_node("Round", ["n_audio_f"], ["n_audio_r"]),
        helper.make_node("Cast", ["n_audio_r"], ["n_audio"], to=TensorProto.INT64),
        helper.make_node("Div", ["n_audio", "two_s"], ["n_out"]),
        helper.make_node("Add", ["g_past", "is_step"], ["idx_f"]),
        helper.make_node("Round", ["idx_f"], ["idx_r"]),
        helper.make_node("Cast", ["idx_r"], ["idx"], to=TensorProto.INT64),
        helper.make_node("Min", ["n_out", "n_seq"], ["stop"]),
        helper.make_node("Less", ["idx", "stop"], ["more"]),
        helper.make_node("Where", ["more", "idx", "n_seq"], ["pick"]),
        helper.make_node("Gather", ["seq_table", "pick"], ["row"], axis=0),  # [V]
        helper.make_node("Reshape", ["row", "shape_11v"], ["row3"]),
        helper.make_node("Unsqueeze", ["L", "zero"], ["L1"]),
        helper.make_node("Concat", ["one", "L1", "vdim"], ["lshape"], axis=0),
        helper.make_node("Expand", ["row3", "lshape"], ["logits"]),
        # deltas: (generated marker, audio marker) per input position
        helper.make_node("Mul", ["audio_now", "zero_f"], ["zeros_l"]),
        helper.make_node("Add", ["zeros_l", "is_step"], ["gen_now"]),  # [1,L,1]
        helper.make_node("Concat", ["gen_now", "audio_now"], ["kv2"], axis=2),  # [1,L,2]
        helper.make_node("Unsqueeze", ["kv2", "two"], ["present_key_0"]),  # [1,L,1,2]
        helper.make_node("Identity", ["present_key_0"], ["present_value_0"]),
    ]
    inits = [
        _const("seq_table", seq_table),
        _const("zero", np.array([0], np.int64)),
        _const("one", np.array([1], np.int64)),
        _const("two", np.array([2], np.int64)),
        _const("three", np.array([3], np.int64)),
        _const("one_s", np.array(1, np.int64)),
        _const("two_s", np.array(2, np.int64)),
        _const("n_seq", np.array(len(out_ids), np.int64)),
        _const("zero_f", np.array(0.0, np.float32)),
        _const("shape_11v", np.array([1, 1, V], np.int64)),
        _const("vdim", np.array([V], np.int64)),
    ]
    llm = helper.make_graph(
        nodes,
        "nano_llm_tiny",
        [
            helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, [1, "L", LLM_H]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "M"]),
            helper.make_tensor_value_info("cache_position", TensorProto.INT64, ["L"]),
            helper.make_tensor_value_info("past_key_0", TensorProto.FLOAT, [1, LLM_MAXLEN, 1, 2]),
            helper.make_tensor_value_info("past_value_0", TensorProto.FLOAT, [1, LLM_MAXLEN, 1, 2]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "L", V]),
            helper.make_tensor_value_info("present_key_0", TensorProto.FLOAT, [1, "L", 1, 2]),
            helper.make_tensor_value_info("present_value_0", TensorProto.FLOAT, [1, "L", 1, 2]),
        ],
        inits,
    )
    _save(
        llm,
        d / "llm.int8.onnx",
        {
            "vocab_size": V,
            "hidden_size": LLM_H,
            "model_type": "qwen3_kv_delta",
            "num_layers": 1,
            "max_total_len": LLM_MAXLEN,
            "comment": "tingxie tiny test model",
        },
    )
    return d


def expected_nano_llm(seconds: float) -> str:
    """Fun-ASR-Nano's own LFR (no edge padding) over fbank without snip_edges."""
    fbank = int(round(seconds * 16000)) // 160
    audio_tokens = (fbank - 7) // 6 + 1
    return "".join(NANO_LLM_SEQ[: max(0, audio_tokens // 2)])


# -- speaker diarization ------------------------------------------------------------------
# Segmentation in pyannote segmentation-3.0's interface: input x (N, 1, T) samples, output
# y (N, frames, 7) powerset log-probabilities (∅, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}), 589
# frames for 10 s (a frame of 991 samples every 270, as the real model). A frame whose
# mean power is below SEG_POWER is silence; above it, local speaker 1 when the power of
# the signal's difference (its high frequencies) exceeds SEG_HIGH of it, else speaker 0.
# Embedding in 3D-Speaker's interface: input x (N, T, 80) fbank, output (N, 192): the
# standard deviation over time of each fbank bin less their average (then zeros), so two
# sounds whose fluctuating energy lies in different frequency bands are two voices.
SEG_POWER = 1e-4
SEG_HIGH = 0.5


def diarization_segmentation(path: Path) -> Path:
    w = np.full((1, 1, 991), 1.0 / 991, dtype=np.float32)
    diff = np.array([[[-1.0, 1.0]]], dtype=np.float32)  # x[n+1] - x[n]: high frequencies
    k, k2 = 1e5, 1e5
    # columns: ∅, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}; rows: power, power of the difference
    weights = np.array(
        [
            [-k, k + SEG_HIGH * k2, k - SEG_HIGH * k2, -k, -k, -k, -k],
            [0.0, -k2, k2, 0.0, 0.0, 0.0, 0.0],
        ],
        dtype=np.float32,
    )
    bias = np.array([k * SEG_POWER, -k * SEG_POWER, -k * SEG_POWER, -1e5, -1e5, -1e5, -1e5], dtype=np.float32)
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("Conv", ["sq", "w"], ["power"], strides=[270]),  # (N, 1, F)
        helper.make_node("Conv", ["x", "diff"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["dsq"]),
        helper.make_node("Conv", ["dsq", "w"], ["dpower"], strides=[270]),  # (N, 1, F)
        helper.make_node("Concat", ["power", "dpower"], ["both"], axis=1),  # (N, 2, F)
        helper.make_node("Transpose", ["both"], ["bt"], perm=[0, 2, 1]),  # (N, F, 2)
        helper.make_node("MatMul", ["bt", "weights"], ["scaled"]),  # (N, F, 7)
        helper.make_node("Add", ["scaled", "bias"], ["logits"]),
        helper.make_node("LogSoftmax", ["logits"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-segmentation",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "T"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "F", 7])],
        [_const("w", w), _const("diff", diff), _const("weights", weights), _const("bias", bias)],
    )
    meta = {
        "num_speakers": 3,
        "powerset_max_classes": 2,
        "num_classes": 7,
        "sample_rate": 16000,
        "window_size": 160000,
        "receptive_field_size": 991,
        "receptive_field_shift": 270,
        "model_type": "pyannote-segmentation-3.0",
        "version": "1",
        "model_author": "tingxie-tests",
        "maintainer": "tingxie-tests",
    }
    return _save(graph, path, meta)


def diarization_embedding(path: Path) -> Path:
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[1], keepdims=0),  # (N, 80)
        helper.make_node("Sqrt", ["var"], ["std"]),
        helper.make_node("ReduceMean", ["std"], ["level"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["std", "level"], ["shape"]),  # which bins fluctuate more than most
        helper.make_node("Pad", ["shape", "pads"], ["embedding"]),  # (N, 192)
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-embedding",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 80])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 192])],
        [_const("pads", np.array([0, 0, 0, 112], dtype=np.int64))],
    )
    meta = {
        "framework": "3d-speaker",
        "language": "Chinese-English",
        "comment": "tingxie-tests",
        "sample_rate": 16000,
        "output_dim": 192,
        "normalize_samples": 1,
        "feature_normalize_type": "global-mean",
    }
    return _save(graph, path, meta)


def diarization(models_dir: Path) -> tuple[Path, Path]:
    """Both tiny models in sherpa-onnx's release layout under `models_dir`."""
    seg = diarization_segmentation(models_dir / "sherpa-onnx-pyannote-segmentation-3-0" / "model.onnx")
    emb = diarization_embedding(models_dir / "3dspeaker_speech_campplus_sv_zh_en_16k-common_advanced.onnx")
    return seg, emb


def voice(seconds: float, low: bool, rate: int = 16000) -> np.ndarray:
    """A 'voice' the tiny models tell apart: three tones in a low (230–470 Hz) and three
    in a high (2.1–3.7 kHz) band; one band loud, its loudness swinging 4 times a second,
    the other quiet and steady. low=True: the low band is the loud one."""
    t = np.arange(int(seconds * rate)) / rate
    lows = sum(np.sin(2 * np.pi * f * t) for f in (230, 330, 470)) / 3
    highs = sum(np.sin(2 * np.pi * f * t) for f in (2100, 2900, 3700)) / 3
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    loud, quiet = (lows, highs) if low else (highs, lows)
    return (0.3 * loud * envelope + 0.05 * quiet).astype(np.float32)
