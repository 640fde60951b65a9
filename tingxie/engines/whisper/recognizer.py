"""Whisper (CTranslate2) behind the recognizer protocol: the existing `Engine` with
the spec, the one-argument `batch_key` the protocol asks for, and Whisper's own policy
for a window's result (temperature fallback, continuation of what it left out)."""

from __future__ import annotations

import difflib
import json
from dataclasses import replace
from pathlib import Path

from ... import windows as windows_mod
from ...text import comparison_form, has_words, is_cjk
from ...types import Segment
from ...windows import Window
from ..base import Capabilities, ModelSpec, Submit, WindowResult
from .result import WhisperHints, WhisperResult, falls_back, hints


def whisper_languages(multilingual: bool) -> tuple[str, ...]:
    if not multilingual:
        return ("en",)
    from .engine import WHISPER_LANGUAGES

    return WHISPER_LANGUAGES


# Whisper punctuates English itself; its Mandarin (and Cantonese) output often has none.
UNPUNCTUATED = ("zh", "yue")


def whisper_spec(model_id: str, multilingual: bool, languages: tuple[str, ...] | None = None) -> ModelSpec:
    """`languages`: those the model's tokenizer has a token for (engine.tokenizer_languages)."""
    caps = Capabilities(
        word_timestamps=True,
        language_detection=multilingual,
        punctuation=True,
        hotwords=True,
        translation=multilingual,
        unpunctuated_languages=UNPUNCTUATED,
    )
    return ModelSpec("whisper", model_id, languages or whisper_languages(multilingual), 30.0, caps)


def vocabulary_size(path: Path) -> int:
    """Tokens in a CTranslate2 Whisper folder (English-only models have 51864)."""
    if (path / "vocabulary.json").is_file():
        return len(json.loads((path / "vocabulary.json").read_text(encoding="utf-8")))
    if (path / "vocabulary.txt").is_file():
        return len((path / "vocabulary.txt").read_text(encoding="utf-8").splitlines())
    tok = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    ids = set(tok.get("model", {}).get("vocab", {}).values()) | {t["id"] for t in tok.get("added_tokens", [])}
    return len(ids)


def describe(model_id: str, path: Path) -> ModelSpec:
    """The spec without loading: CTranslate2 calls a Whisper multilingual when its
    vocabulary has 51865 tokens or more."""
    from .engine import tokenizer_languages

    multilingual = vocabulary_size(Path(path)) >= 51865
    return whisper_spec(model_id, multilingual, tokenizer_languages(Path(path)) if multilingual else None)


class WhisperRecognizer:
    """Wraps a loaded `engine.Engine` behind the recognizer protocol, with Whisper's
    optional abilities (base.Refines, base.EmptiesCache); the engine itself is
    `self.engine`."""

    family = "whisper"

    def __init__(self, engine):
        self.engine = engine
        self.model_id = engine.model_id

    @property
    def spec(self) -> ModelSpec:
        return whisper_spec(self.model_id, bool(self.engine.multilingual), self.engine.languages)

    def batch_key(self, window: Window) -> tuple:
        return self.engine.batch_key(window, len(self.engine.prompt_prefix(window)))

    def decode(self, windows: list[Window]) -> list[WindowResult]:
        return self.engine.decode(windows)

    def warm_up(self) -> None:
        self.engine.warm_up()

    def refine(self, window: Window, result: WindowResult, submit: Submit) -> WindowResult:
        return complete(window, result, submit)

    def empty_cache(self) -> None:
        """CTranslate2 keeps freed CUDA blocks in its caching allocator; moving the
        model to host memory and back returns them."""
        self.engine.model.unload_model(to_cpu=True)
        self.engine.model.load_model()


def load_whisper(
    model_id: str, path: Path, choice, dynamic_frames: bool = True, detect_languages: tuple[str, ...] = (), **_options
) -> WhisperRecognizer:
    from .engine import Engine

    return WhisperRecognizer(
        Engine(model_id, str(path), choice, dynamic_frames=dynamic_frames, detect_languages=detect_languages)
    )


# -- Whisper's policy for a window's result ----------------------------------------------
# Speech left undecoded at the end of a window worth a second pass (seconds).
MIN_REMAINDER_S = 1.5
MAX_PASSES = 3
# A continuation starts where the window's text ended and is prompted with all of it, as
# Whisper's seek loop does. (Sessions 15-19 started it a second inside the last segment,
# prompted without that segment, so that a word the last timestamp cut was heard whole;
# chosen again on calibration in session 20: the overlap re-heard its second as other
# words — "articulated by speech." came back "In this speech," — and the short
# continuations lacked the last sentence's context ("money's speech" for "my speech").
# Calibration Mandarin long set 19.43 → 18.95 % CER, 8 → 6 continuations; docs/accuracy.md.)
# How far into a continuation's text its repeat of the text before can reach, in words or
# Chinese characters: a second of speech is 2-4 English words or 3-6 characters.
OVERLAP_UNITS = 8
# How far past the end of the text before a repeated word's aligned end may fall.
OVERLAP_TOLERANCE_S = 0.1


FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)
# faster-whisper's `prompt_reset_on_temperature`: text sampled hotter prompts nothing.
PROMPT_RESET_TEMPERATURE = 0.5
# A prompted continuation whose text is this share of a stretch of its prompt (and at
# least this many units long) is heard again without the prompt (copies_prompt).
COPY_SHARE = 0.8
COPY_MIN_UNITS = 4


def with_fallback(window: Window, result: WindowResult, submit: Submit) -> WindowResult:
    """Whisper's temperature fallback, per window: redo a failed decode by sampling at
    rising temperatures; keep the first that passes, else the most likely seen."""
    if not isinstance(result, WhisperResult) or not falls_back(window, result):
        return result
    tried = [result]
    for temp in FALLBACK_TEMPERATURES:
        options = replace(window.options, temperature=temp, language=result.language)
        hot = replace(window, options=options, hints=replace(hints(window), encoded=result.encoded))
        r = _whisper(submit(hot))
        r.temperature = temp
        r.language_probability = result.language_probability
        tried.append(r)
        if not r.needs_fallback:
            break
    result.encoded = None  # 3 MB a window: not kept past its fallback
    best = tried[-1] if not tried[-1].needs_fallback else max(tried, key=lambda r: r.avg_logprob)
    best.decodes = sum(r.decodes for r in tried)
    # every try cost its stages, not only the one kept
    best.timings = {k: sum(r.timings.get(k, 0.0) for r in tried) for k in {k for r in tried for k in r.timings}}
    return best


def _whisper(r: WindowResult) -> WhisperResult:
    """A fallback's decode, as this family's engine returns it."""
    if not isinstance(r, WhisperResult):
        raise TypeError("a Whisper fallback decode returned another family's result")
    return r


def complete(window: Window, result: WindowResult, submit: Submit) -> WindowResult:
    """Decode again what Whisper left out at the end of a window (it sometimes stops
    early); the continuation batches with everyone else's windows."""
    result = with_fallback(window, result, submit)
    # continuations keep the window's language, as Whisper's seek loop does
    w = (
        window
        if window.options.language
        else replace(window, options=replace(window.options, language=result.language))
    )
    # the text that prompts the next continuation starts here: as in Whisper's seek loop,
    # text sampled at a high temperature is doubtful and prompts nothing
    since = len(result.segments) if _sampled_hot(result) else 0
    for _ in range(MAX_PASSES):
        if not result.segments:
            break
        left = windows_mod.remainder(w, result.segments[-1].end)
        if left is None or left.seconds < MIN_REMAINDER_S:
            break
        previous = _joined(result.segments[since:], result.language)
        rest = replace(left, hints=WhisperHints(continuation=True, previous=previous))
        decodes = [with_fallback(rest, submit(rest), submit)]
        if previous and copies_prompt(decodes[0].segments, previous, result.language):
            # Whisper's known failure with a prompt: over a breath or trailing quiet it
            # writes the prompt again (对收入群体的救助… on the calibration long set), or
            # says the prompt's end again and stops as if the window were done (最真實的狀態了,
            # no closing timestamp, and three sentences after it never decoded: quiet
            # set). Heard without the prompt, real speech says the same and goes on.
            rest = replace(rest, hints=WhisperHints(continuation=True))
            decodes.append(with_fallback(rest, submit(rest), submit))
        more = decodes[-1]
        for d in decodes:
            result.tokens += d.tokens
            result.decodes += d.decodes
            for k, v in d.timings.items():
                result.timings[k] = result.timings.get(k, 0.0) + v
        more.segments = overlap_cut(result.segments, more.segments, result.language, w.options.word_timestamps)
        if not more.segments:
            break  # nothing new from where the text ended (or only what was said before)
        result.segments.extend(more.segments)
        if _sampled_hot(more):
            since = len(result.segments)
        w = rest
        result = WhisperResult(
            result.segments,
            result.language,
            result.language_probability,
            result.tokens,
            result.timings,
            decodes=result.decodes,
        )
    return result


def copies_prompt(segments: list[Segment], previous: str, language: str) -> bool:
    """Whether a continuation's text is mostly (COPY_SHARE of its units, in runs of two
    or more) a stretch of the text before it: its prompt, or the segment it overlaps."""
    said = _units(" ".join(s.text for s in segments), language)
    if len(said) < COPY_MIN_UNITS:
        return False
    blocks = difflib.SequenceMatcher(None, _units(previous, language), said, autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks if b.size >= 2) >= COPY_SHARE * len(said)


def _sampled_hot(r: WindowResult) -> bool:
    return isinstance(r, WhisperResult) and r.temperature > PROMPT_RESET_TEMPERATURE


def _joined(segments: list[Segment], language: str) -> str:
    """Segments' text as the model wrote it, one string (a continuation's prompt)."""
    return ("" if is_cjk(language) else " ").join(s.raw_text.strip() for s in segments)


def _units(text: str, language: str) -> list[str]:
    """The text as scoring compares it (Simplified script, no punctuation, lower case):
    its characters for Chinese and Japanese, else its words. One decode may write a
    phrase in Traditional, the next in Simplified."""
    form = comparison_form(text, language)
    return list(form) if is_cjk(language) else form.split()


def overlap_cut(before: list[Segment], after: list[Segment], language: str, keep_words: bool) -> list[Segment]:
    """`after` (a continuation's segments, with their words) without what it repeats of
    `before`'s end.

    A continuation starts where `before`'s text ended, but not always after the words it
    said: Whisper's last timestamp can fall inside the last word (eval-extra
    mfa_cold_corpus: 23.19 s, inside "good", 23.04-23.32 s), and a prompted decode may say
    its prompt's last words again. Its words that end by the time `before` ended
    (OVERLAP_TOLERANCE_S later, for the alignment's error) are cut, a word across that
    time too when it repeats `before`'s last word, and an exact repeat of `before`'s last
    words wherever it was aligned; the rest keeps the words it was said with. Without
    words (an alignment that gave none), only an exact repeat is cut (`repeated_units`).
    `keep_words`: the request asked for word times; otherwise they are dropped once used."""
    if not before or not after:
        return after
    end = before[-1].end
    tail = _units(" ".join(s.text for s in before[-2:]), language)
    out: list[Segment] = []
    if after[0].words:
        for seg in after:
            words = list(seg.words or [])
            if out or not words:  # a segment without words (split at a gap) goes by its end
                if out or seg.end > end + OVERLAP_TOLERANCE_S:
                    out.append(seg)
                continue
            while words and words[0].end <= end + OVERLAP_TOLERANCE_S:
                words.pop(0)
            across = _units(words[0].word, language) if words and words[0].start < end else []
            if across and tail[-len(across) :] == across:
                words.pop(0)
            # the overlap said again word for word, but aligned after the time `before`
            # ended: "I regard this activity not so much." then "not so much." at 78.85–
            # 80.53 s (gentle_lucier_long), a phrase the reader got twice
            words = _without_repeat(tail, words, language)
            if not has_words("".join(w.word for w in words)):
                continue  # all of it said before (a mark may be left): the next segment is looked at
            if len(words) < len(seg.words or []):
                text = "".join(w.word for w in words).strip()
                seg = replace(seg, start=words[0].start, text=text, raw_text=text, words=words)
            out.append(seg)
    else:
        # without times only an exact repeat is cut (a Chinese one of two characters or
        # more): 第一句 then 第二句 share two characters and repeat nothing
        drop = repeated_units(tail, _units(" ".join(s.text for s in after), language), 2 if is_cjk(language) else 1)
        for seg in after:
            units = _units(seg.text, language)
            if out or not drop:
                out.append(seg)
            elif len(units) <= drop:
                drop -= len(units)
            else:
                out.append(_without_first(seg, drop, language))
                drop = 0
    if out:  # the new text starts where the text before ended, not inside it
        out[0] = replace(out[0], start=max(out[0].start, min(end, out[0].end)))
    if not keep_words:
        out = [replace(s, words=None) for s in out]
    return out


def _without_repeat(tail: list[str], words: list, language: str) -> list:
    """`words` without the whole words at their start that repeat `tail`'s end exactly
    (two units or more: one shared word or character is too common to be a repeat)."""
    k = repeated_units(tail, _units("".join(w.word for w in words), language), 2)
    while words and k > 0:
        n = len(_units(words[0].word, language))
        if n > k:
            break  # a word only partly repeated stays
        k -= n
        words = words[1:]
    return words


def repeated_units(tail: list[str], head: list[str], least: int) -> int:
    """The most units (at least `least`, at most OVERLAP_UNITS) that `head` starts with
    and `tail` ends with; 0 when none."""
    for k in range(min(len(tail), len(head), OVERLAP_UNITS), least - 1, -1):
        if tail[-k:] == head[:k]:
            return k
    return 0


def _without_first(seg: Segment, n: int, language: str) -> Segment:
    """The segment less its first `n` units (`_units`: characters or words)."""
    text, seen, i = seg.text, 0, 0
    while i < len(text) and seen < n:
        if is_cjk(language):
            seen += len(_units(text[i], language))
            i += 1
        else:
            while i < len(text) and text[i].isspace():
                i += 1
            start = i
            while i < len(text) and not text[i].isspace():
                i += 1
            seen += len(_units(text[start:i], language))
    rest = text[i:].lstrip(" ,.;:!?，。、；：！？")
    return replace(seg, text=rest, raw_text=rest)
