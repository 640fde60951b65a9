"""The families served through sherpa-onnx: SenseVoice, Paraformer (offline and
streaming), Fun-ASR-Nano (CTC export and LLM form) and the CT-Transformer punctuation
model. models.py runs them (sherpa-onnx itself is imported only when one is loaded, as
it is an optional extra); detect.py recognises and checks their folders.

`FAMILIES` is what the registry asks, most specific detection first. Each is probed
in a child process before it is loaded here: sherpa-onnx ends the process on a model
it cannot use.
"""

from __future__ import annotations

from ..base import Family
from . import detect as d
from .models import FunAsrNanoCtc, FunAsrNanoLlm, Paraformer, Punctuator, SenseVoice, StreamingParaformer

FAMILIES: tuple[Family, ...] = tuple(
    Family(name, detect, check, cls, cls.describe, probe_in_child=True)
    for name, detect, check, cls in (
        ("funasr-nano-llm", d.detect_nano_llm, d.check_nano_llm, FunAsrNanoLlm),
        ("streaming-paraformer", d.detect_streaming_paraformer, d.check_streaming_paraformer, StreamingParaformer),
        ("punctuation", d.detect_punctuation, d.check_punctuation, Punctuator),
        ("funasr-nano", d.detect_nano_ctc, d.check_sense_voice, FunAsrNanoCtc),
        ("sensevoice", d.detect_sense_voice, d.check_sense_voice, SenseVoice),
        ("paraformer", d.detect_paraformer, d.check_paraformer, Paraformer),
    )
)
