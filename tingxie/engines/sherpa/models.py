"""Families served through sherpa-onnx: SenseVoice, Paraformer (offline and streaming),
Fun-ASR-Nano (CTC export and LLM form) and the CT-Transformer punctuation model.

Each offline engine decodes a batch of windows as one `decode_streams` call (SenseVoice
and Paraformer pad them into one forward pass; sherpa-onnx releases the GIL while it
runs), and turns the tokens' own times into segments and words with absolute times.
Directories must pass their check (detect.py, asked by `registry.validate`) first: sherpa-onnx ends the process on a
missing metadata key instead of raising.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from pathlib import Path

import numpy as np

from ...text import has_words
from ...types import SAMPLE_RATE, DecodeOptions, Segment, Word
from ...windows import Piece, Window
from ..base import Capabilities, ModelError, ModelSpec, TaggedResult, WindowResult
from ..checks import pick
from .detect import nano_llm_tokenizer, paraformer_has_timestamps

SENSE_VOICE_LANGUAGES = ("zh", "en", "ja", "ko", "yue")
SENTENCE_END = set("。！？!?；;") | {"."}
# sherpa-onnx's tokens carry no end time: a token lasts until the next one, at most this.
MAX_TOKEN_S = 0.6


def _sherpa():
    try:
        import sherpa_onnx
    except ImportError as e:  # the optional extra is not installed
        raise ModelError("this model family needs sherpa-onnx: EXTRAS='[sherpa]' bash scripts/install.sh") from e
    return sherpa_onnx


def _provider(choice) -> str:
    """sherpa-onnx runs on onnxruntime: CUDA needs the sherpa-onnx CUDA wheel
    (onnxruntime-gpu inside); the CPU wheel falls back to CPU with a warning."""
    return "cuda" if getattr(choice, "device", "cpu") == "cuda" else "cpu"


def _threads(choice) -> int:
    return max(1, int(getattr(choice, "threads", 1) or 1))


# -- tokens → text, words, segments ------------------------------------------------------
def _is_cjk(ch: str) -> bool:
    return bool(ch) and (unicodedata.east_asian_width(ch[0]) in ("W", "F"))


def _is_punct(s: str) -> bool:
    s = s.strip()
    return bool(s) and all(unicodedata.category(c).startswith("P") for c in s)


def words_from_tokens(tokens: list[str], times: list[float], style: str) -> list[tuple[str, float, int]]:
    """Merge sub-word tokens into words: (word, start, index of its last token).

    `style` "sp": sentencepiece (a leading space starts a word, as sherpa-onnx writes ▁);
    "bpe@@": Paraformer's pieces ending in @@ continue into the next. CJK characters are
    words of their own; punctuation joins the word before it. Words after the first
    carry a leading space where the text has one, so joining them gives the text."""
    out: list[list] = []  # [text, start, last index, glued]
    glue_next = False
    for i, (tok, t) in enumerate(zip(tokens, times, strict=False)):
        if not tok:
            continue
        if style == "bpe@@":
            cont = tok.endswith("@@")
            piece = tok[:-2] if cont else tok
            if out and (glue_next or _is_punct(piece)):
                out[-1][0] += piece
                out[-1][2] = i
            elif _is_cjk(piece):
                # sherpa-onnx's own rule: a space between an ASCII word and CJK
                after_ascii = bool(out) and out[-1][0][-1:].isascii() and out[-1][0][-1:].isalnum()
                out.append([(" " if after_ascii else "") + piece, t, i])
            else:
                out.append([(" " if out else "") + piece, t, i])
            glue_next = cont
            continue
        starts_word = tok.startswith(" ") or _is_cjk(tok.strip()) or not out
        if _is_punct(tok) and out:
            out[-1][0] += tok.strip()
            out[-1][2] = i
        elif starts_word:
            word = tok.strip() if _is_cjk(tok.strip()) else tok
            out.append([word if out else word.lstrip(), t, i])
        else:
            out[-1][0] += tok
            out[-1][2] = i
    return [(w, s, last) for w, s, last in out]


def _join(words: list[str]) -> str:
    return "".join(words).strip()


def _piece_at(w: Window, t: float) -> int:
    s = int(round(t * SAMPLE_RATE))
    for i, p in enumerate(w.pieces):
        if s < p.offset + p.length:
            return i
    return len(w.pieces) - 1


def segments_from_tokens(
    w: Window, tokens: list[str], times: list[float], style: str, want_words: bool
) -> list[Segment]:
    """One segment per sentence, never across two packed pieces (the silence between
    them was cut out); times absolute in the window's source."""
    if not tokens:
        return []
    if len(times) != len(tokens):
        text = _join([x for x, _, _ in words_from_tokens(tokens, [0.0] * len(tokens), style)])
        return [Segment(0, round(w.start, 3), round(w.end, 3), text, text)] if text else []
    words = words_from_tokens(tokens, times, style)
    groups: list[list[tuple[str, float, float]]] = []
    prev_piece = -1
    for k, (word, start, _last) in enumerate(words):
        nxt = words[k + 1][1] if k + 1 < len(words) else None
        piece = _piece_at(w, start)
        p = w.pieces[piece]
        piece_end = (p.offset + p.length) / SAMPLE_RATE
        end = min(piece_end, start + MAX_TOKEN_S, nxt if nxt is not None else piece_end)
        if not groups or piece != prev_piece or (groups[-1] and groups[-1][-1][0].strip()[-1:] in SENTENCE_END):
            groups.append([])
        groups[-1].append((word, start, max(start, end)))
        prev_piece = piece
    segments = []
    for g in groups:
        text = _join([x for x, _, _ in g])
        if not has_words(text):
            continue
        a = w.to_absolute(g[0][1])
        b = w.to_absolute(g[-1][2], is_end=True)
        seg_words = None
        if want_words:
            seg_words = [
                Word(round(w.to_absolute(s), 3), round(w.to_absolute(e, is_end=True), 3), x if i else x.lstrip(), 0.0)
                for i, (x, s, e) in enumerate(g)
            ]
        segments.append(Segment(0, round(a, 3), round(max(a, b), 3), text, text, seg_words))
    return segments


def _tag(s: str) -> str:
    return s.strip().removeprefix("<|").removesuffix("|>")


def _script_language(text: str) -> str:
    return "zh" if any(_is_cjk(c) for c in text) else "en"


def _result_tokens(res) -> tuple[list[str], list[float]]:
    """Tokens and times of a sherpa-onnx result. Byte-level tokens (Fun-ASR-Nano's
    base64 vocabulary) may not be valid UTF-8 one by one; then the text is one token."""
    try:
        tokens = list(res.tokens)
        times = [float(t) for t in res.timestamps]
    except UnicodeDecodeError:
        return [res.text], [0.0]
    return tokens, times


# -- offline engines ---------------------------------------------------------------------
class _Offline:
    """Shared by the offline families: batched decode through `decode_streams`."""

    family = ""
    style = "sp"
    languages: tuple[str, ...] = ()
    caps = Capabilities()

    def __init__(self, model_id: str, path: Path, choice=None, **options):
        self.model_id = model_id
        self.path = Path(path)
        self.choice = choice
        self.options = options
        self._lock = threading.Lock()
        self._recognizers: dict[str, object] = {}
        self.spec = self.describe(model_id, self.path)
        t0 = time.perf_counter()
        self._recognizer("")
        self.load_seconds = time.perf_counter() - t0

    @classmethod
    def describe(cls, model_id: str, path: Path) -> ModelSpec:
        """The spec, from the directory alone (model lists show it without loading)."""
        return ModelSpec(cls.family, model_id, cls.languages, 30.0, cls.caps)

    def _build(self, language: str):
        raise NotImplementedError

    def _file(self, stem: str = "model") -> str:
        return str(pick(self.path, stem, prefer_int8=_provider(self.choice) == "cpu"))

    def _run_options(self) -> dict:
        return {"num_threads": _threads(self.choice), "provider": _provider(self.choice)}

    def _recognizer(self, language: str):
        with self._lock:
            rec = self._recognizers.get(language)
            if rec is None:
                rec = self._recognizers[language] = self._build(language)
            return rec

    def _rec_language(self, options: DecodeOptions) -> str:
        return ""

    def batch_key(self, window: Window) -> tuple:
        return (self.family, self._rec_language(window.options))

    def warm_up(self) -> None:
        noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32)
        self.decode([Window(noise, [Piece(0, 0, len(noise))], DecodeOptions())])

    def decode(self, windows: list[Window]) -> list[WindowResult]:
        if not windows:
            return []
        out: list[WindowResult | None] = [None] * len(windows)
        groups: dict[str, list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault(self._rec_language(w.options), []).append(i)
        for lang, idx in groups.items():
            t0 = time.perf_counter()
            rec = self._recognizer(lang)
            streams = []
            for i in idx:
                s = rec.create_stream()
                s.accept_waveform(SAMPLE_RATE, np.ascontiguousarray(windows[i].samples(), dtype=np.float32))
                streams.append(s)
            t1 = time.perf_counter()
            rec.decode_streams(streams)
            t2 = time.perf_counter()
            for i, s in zip(idx, streams, strict=False):
                r = self._convert(windows[i], s.result)
                r.timings = {
                    "features": (t1 - t0) / len(idx),
                    "encoder": (t2 - t1) / len(idx),
                    "decoder": 0.0,
                    "post": 0.0,
                }
                out[i] = r
        return out  # type: ignore[return-value]

    def _convert(self, w: Window, res) -> WindowResult:
        tokens, times = _result_tokens(res)
        segs = segments_from_tokens(w, tokens, times, self.style, w.options.word_timestamps)
        lang = w.options.language or _script_language(res.text)
        return TaggedResult(segs, lang, 1.0, tokens=len(tokens))


class SenseVoice(_Offline):
    family = "sensevoice"
    languages = SENSE_VOICE_LANGUAGES
    caps = Capabilities(word_timestamps=True, language_detection=True, punctuation=True, itn=True, tags=True)

    def _build(self, language: str):
        return _sherpa().OfflineRecognizer.from_sense_voice(
            model=self._file(),
            tokens=str(self.path / "tokens.txt"),
            language=language,
            use_itn=True,
            **self._run_options(),
        )

    def _rec_language(self, options: DecodeOptions) -> str:
        # the language is a recognizer setting in sherpa-onnx: one recognizer per
        # requested language, made on first use; "" lets the model detect it
        return options.language if options.language in SENSE_VOICE_LANGUAGES else ""

    def _convert(self, w: Window, res) -> WindowResult:
        r = super()._convert(w, res)
        detected = _tag(res.lang)
        if detected in SENSE_VOICE_LANGUAGES and not w.options.language:
            r.language = detected
        r.emotion, r.event = _tag(res.emotion), _tag(res.event)  # type: ignore[attr-defined]
        tags = {k: v for k, v in (("emotion", r.emotion), ("event", r.event)) if v}  # type: ignore[attr-defined]
        for seg in r.segments:
            seg.tags = dict(tags)
        return r


class FunAsrNanoCtc(_Offline):
    """Fun-ASR-Nano's CTC export: sherpa-onnx loads it with the SenseVoice loader and
    tells it apart by `Nano` in the model's `comment` metadata."""

    family = "funasr-nano"
    languages = ("zh", "en", "ja")
    caps = Capabilities(word_timestamps=True, language_detection=True, punctuation=True, itn=True)

    def _build(self, language: str):
        return _sherpa().OfflineRecognizer.from_sense_voice(
            model=self._file(), tokens=str(self.path / "tokens.txt"), **self._run_options()
        )


class Paraformer(_Offline):
    family = "paraformer"
    style = "bpe@@"
    languages = ("zh", "en")

    @classmethod
    def describe(cls, model_id: str, path: Path) -> ModelSpec:
        # word times only from exports with the CIF-peak output
        caps = Capabilities(word_timestamps=paraformer_has_timestamps(Path(path)))
        return ModelSpec(cls.family, model_id, cls.languages, 30.0, caps)

    def _build(self, language: str):
        return _sherpa().OfflineRecognizer.from_paraformer(
            paraformer=self._file(), tokens=str(self.path / "tokens.txt"), **self._run_options()
        )


class FunAsrNanoLlm(_Offline):
    """Fun-ASR-Nano as encoder-adaptor + LLM + embedding + tokenizer. sherpa-onnx
    generates one window at a time (autoregressive) and gives no real token times, so a
    window is one segment. Language and hotwords are recognizer settings there (each
    would load the LLM again), so the model detects the language itself."""

    family = "funasr-nano-llm"
    languages = ("zh", "en", "ja")
    caps = Capabilities(language_detection=True, punctuation=True, itn=True)

    def _build(self, language: str):
        return _sherpa().OfflineRecognizer.from_funasr_nano(
            encoder_adaptor=self._file("encoder_adaptor"),
            llm=self._file("llm"),
            embedding=self._file("embedding"),
            tokenizer=str(nano_llm_tokenizer(self.path)),
            **self._run_options(),
        )

    def _convert(self, w: Window, res) -> WindowResult:
        text = res.text.strip()
        segs = [Segment(0, round(w.start, 3), round(w.end, 3), text, text)] if has_words(text) else []
        return TaggedResult(segs, w.options.language or _script_language(text), 1.0, tokens=len(res.tokens))


# -- streaming Paraformer ----------------------------------------------------------------
class ParaformerSession:
    """One live utterance. `accept` decodes each 0.6 s chunk as it becomes ready, so
    `partial` grows while the speaker talks; `finish` decodes the short tail."""

    def __init__(self, rec):
        self._rec = rec
        self._s = rec.create_stream()
        self._done = False

    def accept(self, samples: np.ndarray) -> None:
        if self._done:
            raise RuntimeError("stream already finished")
        self._s.accept_waveform(SAMPLE_RATE, np.ascontiguousarray(samples, dtype=np.float32))
        while self._rec.is_ready(self._s):
            self._rec.decode_stream(self._s)

    def partial(self) -> str:
        return self._rec.get_result(self._s).strip()

    def finish(self) -> str:
        if not self._done:
            self._done = True
            self._s.set_option("is_final", "1")  # decode the last short chunk too
            self._s.input_finished()
            while self._rec.is_ready(self._s):
                self._rec.decode_stream(self._s)
        return self.partial()


class StreamingParaformer:
    family = "streaming-paraformer"

    def __init__(self, model_id: str, path: Path, choice=None, **options):
        so = _sherpa()
        self.model_id = model_id
        self.path = Path(path)
        cpu = _provider(choice) == "cpu"
        t0 = time.perf_counter()
        self._rec = so.OnlineRecognizer.from_paraformer(
            tokens=str(self.path / "tokens.txt"),
            encoder=str(pick(self.path, "encoder", cpu)),
            decoder=str(pick(self.path, "decoder", cpu)),
            num_threads=_threads(choice),
            provider=_provider(choice),
        )
        self.load_seconds = time.perf_counter() - t0
        self.spec = self.describe(model_id, self.path)

    @classmethod
    def describe(cls, model_id: str, path: Path) -> ModelSpec:
        return ModelSpec(cls.family, model_id, ("zh", "en"), 30.0, Capabilities(streaming=True))

    def open_stream(self) -> ParaformerSession:
        return ParaformerSession(self._rec)

    def batch_key(self, window: Window) -> tuple:
        return (self.family,)

    def warm_up(self) -> None:
        s = self.open_stream()
        s.accept(np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32))
        s.finish()

    def decode(self, windows: list[Window]) -> list[WindowResult]:
        """Offline use (files, final results): each window streamed through whole. The
        streaming model gives no token times, so a window is one segment."""
        out: list[WindowResult] = []
        for w in windows:
            s = self.open_stream()
            s.accept(w.samples())
            text = s.finish()
            segs = [Segment(0, round(w.start, 3), round(w.end, 3), text, text)] if has_words(text) else []
            out.append(TaggedResult(segs, w.options.language or _script_language(text), 1.0))
        return out


# -- punctuation -------------------------------------------------------------------------
class Punctuator:
    """CT-Transformer punctuation (sherpa-onnx OfflinePunctuation) for families that
    write none (Paraformer, Whisper's Mandarin)."""

    family = "punctuation"

    def __init__(self, model_id: str, path: Path, choice=None, **options):
        so = _sherpa()
        self.model_id = model_id
        cfg = so.OfflinePunctuationConfig(
            model=so.OfflinePunctuationModelConfig(
                ct_transformer=str(pick(Path(path), "model", _provider(choice) == "cpu")),
                num_threads=_threads(choice),
                provider=_provider(choice),
            )
        )
        self._p = so.OfflinePunctuation(cfg)
        self.spec = self.describe(model_id, Path(path))

    @classmethod
    def describe(cls, model_id: str, path: Path) -> ModelSpec:
        return ModelSpec(
            cls.family, model_id, ("zh", "en"), 0.0, Capabilities(segment_timestamps=False, punctuation=True)
        )

    def punctuate(self, text: str) -> str:
        return self._p.add_punctuation(text) if text.strip() else text

    def apply(self, result: WindowResult) -> WindowResult:
        """Punctuate each segment's text (raw_text too: later ITN starts from it)."""
        for seg in result.segments:
            if seg.raw_text.strip() and not _is_punct(seg.raw_text.strip()[-1]):
                same = seg.text == seg.raw_text
                seg.raw_text = self.punctuate(seg.raw_text)
                seg.text = seg.raw_text if same else self.punctuate(seg.text)
        return result
