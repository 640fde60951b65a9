"""Batched Whisper inference on CTranslate2.

One `Engine` holds one loaded model with `instances` replicas (CTranslate2's
inter_threads): the scheduler's workers call `decode` concurrently and each call runs
on a free replica. `decode` takes windows from any number of files and requests and
returns one `WindowResult` per window, with absolute timestamps.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper.transcribe import get_suppressed_tokens

from ...text import has_words, is_chinese, is_cjk
from ...types import SAMPLE_RATE, DecodeOptions, DeviceChoice, OptionsError, Segment, Word
from ...windows import Piece, Window
from ..base import WindowResult
from . import word_prior
from .result import COMPRESSION_LIMIT, LOW_LOGPROB, WhisperResult, falls_back, hints

log = logging.getLogger(__name__)

FRAMES = 3000  # 30 s of 10 ms mel frames: Whisper's fixed input length
DYNAMIC_MARGIN_FRAMES = 100  # 1 s of padding after the speech
# Shorter inputs are cheaper still, but Whisper often returns nothing for a second of
# speech encoded alone (measured on eval utterances: 3 s misses, 8 s recovers them).
MIN_FRAMES = 800
MAX_TOKENS = 448  # Whisper's decoder context
# Token budget per window: enough for fast speech with timestamps (≈ 7 tokens/s for
# Mandarin, ≈ 5 for English), small enough that a repetition loop ends early.
BUDGET_BASE, BUDGET_PER_S = 24, 14
# Whisper's own rule for "this window was silence": high no-speech probability and low
# confidence together.
NO_SPEECH_PROB = 0.6
BEST_OF = 5
GAP_SPLIT_S = 3.0  # shorter pauses inside one subtitle are acceptable; aligning costs time


# Batch work is encoded at its own length (plus the margin) when the window holds at
# least this much speech. The encoder's cost grows faster than its input (a 21 s input
# costs half of 30 s), and packed windows average ≈ 23 s. Calibrated on the eval set
# (short clips) and six 3-minute recordings: from 20 s up the CER held (17.15 → 17.18 %
# long, eval unchanged); from 12 s the eval's zh CER rose 0.8 points, from 8 s 1.1.
OWN_LENGTH_MIN_S = 20.0
# Continuations (what Whisper left out at the end of a window; 16 s on average) from this
# length: on the eval set and six 3-minute recordings the CER held (eval zh 17.08 → 16.56,
# long 17.29 → 17.26 %) and the encoder's seconds fell 4 %.
CONTINUATION_MIN_S = 10.0


def own_length(w: Window) -> bool:
    """Real-time sentences, and long batch windows of Chinese (continuations from a
    lower length: CONTINUATION_MIN_S). The thresholds were calibrated on Mandarin;
    English encoded at its own length lost words at the end of a window ("to do for
    them") and misread others ("rhythm" → "prism"), so other languages, and a file's
    first window (language not yet known), keep the 30 s input
    (bench/results/english.md)."""
    if w.compact:
        return True
    least = CONTINUATION_MIN_S if hints(w).continuation else OWN_LENGTH_MIN_S
    return w.seconds >= least and is_chinese(w.options.language)


def window_logprob(score: float, tokens: int) -> float:
    """The log-probability the fallback rule judges a decode by. CTranslate2's score is
    the log-probability per token; Whisper divides the sum by tokens + 1, which rates a
    short decode likelier (fewer fallbacks); measured on the eval set that cost 0.7
    points of Mandarin CER (docs/throughput.md; `bench/accuracy.py --variants
    whisper-logprob` measures it per half)."""
    return score


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def token_budget(seconds: float) -> int:
    return int(BUDGET_BASE + BUDGET_PER_S * seconds)


# Whisper's language codes in its tokenizer's order (openai/whisper tokenizer.LANGUAGES;
# large-v3 added yue). Ours, not faster-whisper's private copy: a model's own tokenizer
# says which of them it has (tokenizer_languages).
WHISPER_LANGUAGES: tuple[str, ...] = (
    "af",
    "am",
    "ar",
    "as",
    "az",
    "ba",
    "be",
    "bg",
    "bn",
    "bo",
    "br",
    "bs",
    "ca",
    "cs",
    "cy",
    "da",
    "de",
    "el",
    "en",
    "es",
    "et",
    "eu",
    "fa",
    "fi",
    "fo",
    "fr",
    "gl",
    "gu",
    "ha",
    "haw",
    "he",
    "hi",
    "hr",
    "ht",
    "hu",
    "hy",
    "id",
    "is",
    "it",
    "ja",
    "jw",
    "ka",
    "kk",
    "km",
    "kn",
    "ko",
    "la",
    "lb",
    "ln",
    "lo",
    "lt",
    "lv",
    "mg",
    "mi",
    "mk",
    "ml",
    "mn",
    "mr",
    "ms",
    "mt",
    "my",
    "ne",
    "nl",
    "nn",
    "no",
    "oc",
    "pa",
    "pl",
    "ps",
    "pt",
    "ro",
    "ru",
    "sa",
    "sd",
    "si",
    "sk",
    "sl",
    "sn",
    "so",
    "sq",
    "sr",
    "su",
    "sv",
    "sw",
    "ta",
    "te",
    "tg",
    "th",
    "tk",
    "tl",
    "tr",
    "tt",
    "uk",
    "ur",
    "uz",
    "vi",
    "yi",
    "yo",
    "zh",
    "yue",
)


def tokenizer_languages(path: Path) -> tuple[str, ...]:
    """The languages a Whisper model can transcribe: those with a language token in its
    tokenizer. whisper-base has 99 and no <|yue|> (large-v3 added it); asking for a
    language without its token makes the decoder write nonsense ("Welcome to to to")."""
    try:
        added = json.loads((path / "tokenizer.json").read_text(encoding="utf-8")).get("added_tokens", [])
    except (OSError, ValueError):
        return WHISPER_LANGUAGES  # not readable here (not assembled yet): let the model decide
    tokens = {t.get("content") for t in added if isinstance(t, dict)}
    return tuple(c for c in WHISPER_LANGUAGES if f"<|{c}|>" in tokens) or ("en",)


class Engine:
    """A loaded Whisper model. Thread-safe: call `decode` from several threads."""

    def __init__(
        self,
        model_id: str,
        path: str,
        choice: DeviceChoice,
        dynamic_frames: bool = True,
        detect_languages: tuple[str, ...] = (),
    ):
        from faster_whisper import WhisperModel

        self.model_id = model_id
        self.dynamic_frames = dynamic_frames
        self.path = path
        self.choice = choice
        t0 = time.perf_counter()
        self._fw = WhisperModel(
            path,
            device=choice.device,
            device_index=choice.index,
            compute_type=choice.compute_type,
            cpu_threads=choice.threads,
            num_workers=choice.instances,
            local_files_only=True,
        )
        self.model: ctranslate2.models.Whisper = self._fw.model
        ctranslate2.set_random_seed(0)  # temperature fallback samples: keep runs repeatable
        self.load_seconds = time.perf_counter() - t0
        self.multilingual = self.model.is_multilingual
        self.languages = tokenizer_languages(Path(path)) if self.multilingual else ("en",)
        # auto-detection picks only among these (TINGXIE_DETECT_LANGUAGES); () = all
        unknown = [x for x in detect_languages if x not in self.languages]
        if unknown:
            raise OptionsError(f"TINGXIE_DETECT_LANGUAGES: {model_id} has no language {', '.join(unknown)}")
        self.detect_languages = tuple(detect_languages)
        self._tokenizers: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()
        self.suppress = list(get_suppressed_tokens(self.tokenizer("en"), [-1]))

    def warm_up(self) -> None:
        """Run each input shape once: CTranslate2's first call on a new shape allocates
        and tunes, which would otherwise land on the first user's request (a second or
        more on CPU)."""
        noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE * 2).astype(np.float32)
        for compact in (True, False):
            w = Window(noise, [Piece(0, 0, len(noise))], DecodeOptions(language="en", beam_size=1), compact)
            self.decode([w])
        if self.multilingual:  # the first Chinese window would otherwise read the dictionary
            word_prior.PRIOR.load()

    @property
    def whisper(self):
        """The faster-whisper model around the same weights (reference.py's baseline)."""
        return self._fw

    # -- helpers -------------------------------------------------------------------
    def pick_language(self, ranked: list[tuple[str, float]]) -> tuple[str, float]:
        """The most likely language among the configured candidates, with its share of
        their probability: quiet Mandarin the model rates "pl 0.3, zh 0.25" is zh when
        only zh and en are expected."""
        if not self.detect_languages:
            return ranked[0]
        allowed = [(code, p) for code, p in ranked if code in self.detect_languages]
        if not allowed:
            return ranked[0]
        total = sum(p for _, p in allowed)
        code, p = allowed[0]
        return code, (p / total if total > 0 else p)

    def tokenizer(self, language: str, task: str = "transcribe"):
        from faster_whisper.tokenizer import Tokenizer

        key = (language, task)
        with self._lock:
            tok = self._tokenizers.get(key)
            if tok is None:
                tok = Tokenizer(self._fw.hf_tokenizer, self.multilingual, task=task, language=language)
                self._tokenizers[key] = tok
        return tok

    def features(self, samples: np.ndarray, frames: int = FRAMES) -> np.ndarray:
        feats = self._fw.feature_extractor(samples)[:, :-1][:, :frames]
        if feats.shape[1] < frames:
            feats = np.pad(feats, ((0, 0), (0, frames - feats.shape[1])))
        return feats

    def input_frames(self, window: Window) -> int:
        """Mel frames to encode for a window. Whisper was trained on 30 s inputs, but the
        encoder's cost grows faster than linearly with length (attention), so real-time
        sentences, short requests and long batch windows (`own_length`) are encoded at
        their own length plus a margin, rounded up to whole seconds. Only windows of one
        length share a batch (batch_key): Whisper's encoder has no padding mask, so a
        window padded to a longer neighbour's length would read differently, and a
        file's text would depend on what else the server was doing."""
        if not self.dynamic_frames or not own_length(window):
            return FRAMES
        frames = window.num_samples // 160 + DYNAMIC_MARGIN_FRAMES
        return min(FRAMES, max(MIN_FRAMES, -(-frames // 100) * 100))

    def prompt_prefix(self, window: Window) -> list[int]:
        """Previous-text tokens: hotwords and the initial prompt bias the decoder, and a
        continuation hears the text decoded before it in its window (faster-whisper's
        `condition_on_previous_text`: without it a continuation read "the room" as "the
        realm" a sentence after the window had said "room" twice)."""
        opts = window.options
        text = " ".join(x for x in [opts.initial_prompt or "", " ".join(opts.hotwords)] if x.strip())
        previous = hints(window).previous.strip()
        if not text and not previous:
            return []
        tok = self.tokenizer("en")
        ids = tok.encode(" " + text.strip()) if text else []
        if previous:
            ids += tok.encode(previous if is_cjk(opts.language) else " " + previous)
        return [tok.sot_prev] + ids[-(MAX_TOKENS // 2 - 1) :]

    def batch_key(self, window: Window, prefix_len: int) -> tuple:
        """Windows that may share one generate call: CTranslate2 needs the same beam
        size and start-of-transcript position for every item of a batch, and one input
        length (input_frames) keeps each window's encoding its own."""
        frames = self.input_frames(window)
        kept = hints(window).encoded
        encoded = None if kept is None else kept.shape
        return (window.options.beam_size, window.options.temperature, prefix_len, frames, encoded)

    # -- inference -----------------------------------------------------------------
    def decode(self, windows: list[Window]) -> list[WindowResult]:
        """Encode, detect language where unknown, and generate — one batch."""
        if not windows:
            return []
        t0 = time.perf_counter()
        reused = [e for w in windows if (e := hints(w).encoded) is not None]
        if len(reused) == len(windows):  # a fallback: same audio, encoded before (batch_key)
            enc = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(reused)))
            t1 = t2 = time.perf_counter()
        else:
            n_frames = self.input_frames(windows[0])  # one length per batch (batch_key)
            feats = np.stack([self.features(w.samples(), n_frames) for w in windows])
            t1 = time.perf_counter()
            enc = self.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats)), to_cpu=False)
            t2 = time.perf_counter()

        languages: list[tuple[str, float]] = []
        # a language the model lacks (refused up front; this guards older stored jobs) is detected
        need_detect = [i for i, w in enumerate(windows) if w.options.language not in self.languages]
        detected: dict[int, tuple[str, float]] = {}
        if need_detect:
            if not self.multilingual:
                detected = {i: ("en", 1.0) for i in need_detect}
            else:
                all_langs = self.model.detect_language(enc)
                for i in need_detect:
                    detected[i] = self.pick_language([(token[2:-2], prob) for token, prob in all_langs[i]])
        for i, w in enumerate(windows):
            languages.append(detected.get(i, (w.options.language or "en", 1.0)))

        prompts = []
        for w, (lang, _) in zip(windows, languages, strict=False):
            tok = self.tokenizer(lang, w.options.task)
            prompts.append(self.prompt_prefix(w) + list(tok.sot_sequence))
        budget = max(token_budget(w.seconds) for w in windows)
        # CTranslate2 counts the prompt in max_length and generates at most
        # min(max_length // 2, max_length - len(prompt) + 1) tokens (measured, 4.8): a
        # prompt must lengthen max_length, or hotwords and an initial prompt eat the budget
        # (a long initial prompt left a short window nothing: an empty result).
        prompt_len = max(len(p) for p in prompts)
        max_len = min(MAX_TOKENS, max(budget, budget // 2 + prompt_len))
        opts = windows[0].options
        # With temperature > 0 (the fallback for a failed greedy/beam pass), sample
        # BEST_OF candidates and keep the most likely, as Whisper does.
        sampling = (
            {"sampling_temperature": opts.temperature, "sampling_topk": 0, "num_hypotheses": BEST_OF}
            if opts.temperature > 0
            else {}
        )
        # a Chinese window keeps the beam's hypotheses: the word prior chooses among them
        rescore = [
            word_prior.PRIOR_WEIGHT > 0 and opts.temperature == 0 and opts.beam_size > 1 and lang == "zh"
            for lang, _ in languages
        ]
        if any(rescore):
            sampling["num_hypotheses"] = opts.beam_size
        results = self.model.generate(
            enc,
            prompts,
            beam_size=opts.beam_size if opts.temperature == 0 else 1,
            max_length=max_len,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            # faster-whisper's (and openai/whisper's) set: non-speech symbols plus the
            # control tokens, which CTranslate2's own default [-1] leaves in
            suppress_tokens=self.suppress,
            max_initial_timestamp_index=50,
            **sampling,
        )
        t3 = time.perf_counter()

        out: list[WhisperResult] = []
        tokens_of: dict[int, list[int]] = {}  # id(segment) → its text tokens, for word alignment
        for w, r, (lang, lang_p), prompt, by_prior in zip(windows, results, languages, prompts, rescore, strict=False):
            tok = self.tokenizer(lang, w.options.task)
            if by_prior:
                texts = [tok.decode([t for t in ids if t < tok.eot]) for ids in r.sequences_ids]
                best = word_prior.choose(texts, list(r.scores), w.options.hotwords)
            else:
                best = max(range(len(r.sequences_ids)), key=lambda k: r.scores[k] if r.scores else 0.0)
            seq = r.sequences_ids[best]
            avg_logprob = window_logprob(r.scores[best], len(seq)) if r.scores else 0.0
            cap = min(max_len // 2, max_len - len(prompt) + 1)  # what CTranslate2 generates at most
            segs = self._segments(
                w, seq, tok, avg_logprob, r.no_speech_prob, hit_budget=len(seq) >= cap - 1, tokens_of=tokens_of
            )
            out.append(
                WhisperResult(
                    segs,
                    lang,
                    lang_p,
                    len(seq),
                    avg_logprob=float(avg_logprob),
                    no_speech_prob=float(r.no_speech_prob),
                    compression_ratio=compression_ratio(tok.decode([t for t in seq if t < tok.eot])),
                )
            )
        gaps = [long_gaps(w) for w in windows]
        # a continuation's words tell what it repeats of the text before (recognizer.overlap_cut)
        wanted = [
            w.options.word_timestamps or hints(w).continuation or any(crosses_gap(s, g) for s in r.segments)
            for w, r, g in zip(windows, out, gaps, strict=False)
        ]
        if any(wanted):
            self._add_words(windows, out, enc, wanted, tokens_of)
            for w, r, g in zip(windows, out, gaps, strict=False):
                if g:
                    r.segments = [
                        p
                        for s in r.segments
                        for p in (split_at_gaps(s, g, w.options.word_timestamps) if crosses_gap(s, g) else [s])
                    ]
        t4 = time.perf_counter()
        share = 1.0 / len(windows)
        for res in out:
            res.timings = {
                "features": (t1 - t0) * share,
                "encoder": (t2 - t1) * share,
                "decoder": (t3 - t2) * share,
                "post": (t4 - t3) * share,
            }
        self._keep_for_fallback(windows, out, enc)
        return [*out]  # as the protocol's WindowResults

    def _keep_for_fallback(self, windows: list[Window], out: list[WhisperResult], enc) -> None:
        """A result that will fall back (recognizer.with_fallback) keeps its encoder
        output: each of up to five temperatures would otherwise encode the same audio
        again (on CPU as costly as the decode: a 1.5 s clip took 5.2 s). On a GPU the
        output stays on the device and encoding costs little: not kept."""
        if self.choice.device != "cpu":
            return
        host = None
        for i, (w, res) in enumerate(zip(windows, out, strict=True)):
            if falls_back(w, res):
                host = np.asarray(enc) if host is None else host
                res.encoded = np.array(host[i])

    def _segments(
        self,
        w: Window,
        seq: list[int],
        tok,
        avg_logprob: float,
        no_speech: float,
        hit_budget: bool,
        tokens_of: dict[int, list[int]],
    ) -> list[Segment]:
        """Split generated tokens at timestamp pairs into segments with absolute times."""
        if no_speech > NO_SPEECH_PROB and avg_logprob < LOW_LOGPROB:
            return []  # silence: Whisper would only hallucinate here
        ts_begin, eot = tok.timestamp_begin, tok.eot
        pieces: list[tuple[float, float | None, list[int]]] = []
        cur: list[int] = []
        cur_start: float | None = None
        last_ts = 0.0
        for t in seq:
            if t >= ts_begin:
                ts = (t - ts_begin) * 0.02
                if cur:
                    pieces.append((cur_start if cur_start is not None else last_ts, ts, cur))
                    cur, cur_start = [], None
                else:
                    cur_start = ts
                last_ts = ts
            elif t < eot:
                if cur_start is None:
                    cur_start = last_ts
                cur.append(t)
        if cur:
            pieces.append((cur_start if cur_start is not None else last_ts, None, cur))

        segments: list[Segment] = []
        for _k, (start, end, tokens) in enumerate(pieces):
            text = tok.decode(tokens).strip()
            if not has_words(text):
                continue  # "…", "- -": what Whisper writes for silence and noise
            flags = []
            a = w.to_absolute(min(start, w.seconds))
            b = w.end if end is None else w.to_absolute(min(end, w.seconds), is_end=True)
            if end is None and hit_budget:
                flags.append("truncated")
            if compression_ratio(text) > COMPRESSION_LIMIT:
                flags.append("repetitive")
            segments.append(
                Segment(
                    id=0,
                    start=round(a, 3),
                    end=round(max(a, b), 3),
                    text=text,
                    raw_text=text,
                    avg_logprob=round(float(avg_logprob), 4),
                    no_speech_prob=round(float(no_speech), 4),
                    flags=flags,
                )
            )
            tokens_of[id(segments[-1])] = tokens  # for word alignment, within this decode
        return segments

    def _add_words(
        self,
        windows: list[Window],
        results: list[WhisperResult],
        enc,
        wanted: list[bool],
        tokens_of: dict[int, list[int]],
    ) -> None:
        """Word times from cross-attention alignment, one align call for the batch.

        Words come back in token order, so each segment takes as many words as it has
        tokens."""
        text_tokens = [
            [t for s in r.segments for t in tokens_of[id(s)]] if want else []
            for r, want in zip(results, wanted, strict=False)
        ]
        if not any(text_tokens):
            return
        tok = self.tokenizer(results[0].language, windows[0].options.task)
        safe = [t or tok.encode(" ") for t in text_tokens]  # align needs ≥ 1 token per item
        frames = [max(2, min(FRAMES, w.num_samples // 160)) for w in windows]
        aligned = self._fw.find_alignment(tok, safe, enc, frames)
        for w, r, words, want in zip(windows, results, aligned, wanted, strict=False):
            if not want:
                continue
            it = iter(words)
            for seg in r.segments:
                seg.words, need = [], len(tokens_of[id(seg)])
                while need > 0 and (x := next(it, None)) is not None:
                    need -= len(x["tokens"])
                    seg.words.append(
                        Word(
                            start=round(w.to_absolute(min(x["start"], w.seconds)), 3),
                            end=round(w.to_absolute(min(x["end"], w.seconds), is_end=True), 3),
                            word=x["word"],
                            probability=round(float(x["probability"]), 3),
                        )
                    )


def long_gaps(w: Window) -> list[tuple[float, float]]:
    """(end, next start) in source seconds for pieces packed across a pause of
    GAP_SPLIT_S or more: a subtitle must not run through such a pause."""
    out = []
    for a, b in zip(w.pieces, w.pieces[1:], strict=False):
        end, nxt = (a.start + a.length) / SAMPLE_RATE, b.start / SAMPLE_RATE
        if nxt - end >= GAP_SPLIT_S:
            out.append((end, nxt))
    return out


def crosses_gap(seg: Segment, gaps: list[tuple[float, float]]) -> bool:
    return any(seg.start < end and seg.end > nxt for end, nxt in gaps)


def split_at_gaps(seg: Segment, gaps: list[tuple[float, float]], keep_words: bool) -> list[Segment]:
    """Cut a segment that spans packed pauses into one segment per side, by its words
    (Whisper's words carry their own leading spaces, so joining them keeps the text)."""
    if not seg.words:
        return [seg]
    cuts = sorted((nxt, end) for end, nxt in gaps if seg.start < end and seg.end > nxt)
    groups: list[list[Word]] = [[]]
    limits: list[float] = []  # where each group's pause begins: its end may not pass it
    k = 0
    for word in seg.words:
        while k < len(cuts) and (word.start + word.end) / 2 >= cuts[k][0] - 0.05:
            if groups[-1]:
                groups.append([])
                limits.append(cuts[k][1])
            k += 1
        groups[-1].append(word)
    if len(groups) == 1:
        return [seg]
    limits.append(seg.end)
    out = []
    for g, limit in zip(groups, limits, strict=False):
        text = "".join(w.word for w in g).strip()
        end = max(g[0].start, min(g[-1].end, limit))
        part = Segment(
            0,
            g[0].start,
            end,
            text,
            text,
            g if keep_words else None,
            seg.avg_logprob,
            seg.no_speech_prob,
            list(seg.flags),
        )
        out.append(part)
    return out
