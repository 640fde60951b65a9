"""Text post-processing of model output: ITN, Chinese script, punctuation, repetition and junk guards.
(Scoring against references — CER/WER — is `tingxie/bench/score.py`.)

Whisper writes numbers the way they were spoken ("二零二五年三月十二号"); readers want them
the way people write them ("2025年3月12日"). wetext's WFSTs find the numbers, but several
of its written forms are not how people write (2025/03/12, 3:30p.m., 10min, ¥350,
"wait a 2nd .") and it turns some idioms into digits (十字路口 → 10字路口). So we let wetext
tag the text, then write each tagged token ourselves where its form is wrong, shield
idioms, and give back the input unchanged whenever the tags do not cover it exactly:
ITN may fail to convert, but must never lose words.
"""

from __future__ import annotations

import difflib
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tingxie.types import Segment, TextOptions, Word

_CHINESE = ("zh", "yue")


def _base(language: str | None) -> str:
    return (language or "").lower().replace("_", "-").split("-")[0]


def is_cjk(language: str | None) -> bool:
    """Languages written without spaces between words: joined without spaces, scored by CER."""
    return _base(language) in ("zh", "yue", "ja")


# ---------------------------------------------------------------- shared, lazily built tools

_INIT_LOCK = threading.Lock()
_SHARED: dict[str, Any] = {}


def _shared(key: str, build: Callable[[], Any]) -> Any:
    """Build an expensive object once per process, even when threads race for it."""
    if key not in _SHARED:
        with _INIT_LOCK:
            if key not in _SHARED:
                _SHARED[key] = build()
    return _SHARED[key]


class _Locked:
    """A shared converter behind a lock: neither kaldifst nor OpenCC promises that one
    object may run in several threads at once, and a call takes microseconds."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        with self._lock:
            return self._fn(*args)


def _opencc(config: str) -> _Locked:
    def build() -> _Locked:
        import opencc

        return _Locked(opencc.OpenCC(config).convert)

    return _shared(f"opencc:{config}", build)


# Forms OpenCC leaves that mainland writing does not use: 甚么 (Taiwan's 甚麼 is 什么),
# 妳 (written 你); and a word tw2s gets wrong (土著 is zhù, not the particle 着).
_SIMPLIFIED_FIXES = re.compile("甚么|妳|土着")
_FIX = {"甚么": "什么", "妳": "你", "土着": "土著"}


def t2s(text: str) -> str:
    """Traditional → Simplified Chinese. Whisper writes Mandarin in Taiwan (and some Hong
    Kong) forms, which plain OpenCC `t2s` keeps: 帶著 → 带著. `tw2s` reads Taiwan forms
    (著 as the particle 着 by context, 著名 stays), `hk2s` Hong Kong ones (衞 → 卫).
    Not `tw2sp`: its phrase table swaps vocabulary (計程車 → 出租车), which would write
    words the speaker did not say."""
    if not text:
        return text
    out = _opencc("hk2s")(_opencc("tw2s")(text))
    return _SIMPLIFIED_FIXES.sub(lambda m: _FIX[m.group()], out)


def s2t(text: str) -> str:
    """Simplified → Traditional Chinese in Taiwan standard forms (著, 裡, 為), the forms
    most Traditional text uses; OpenCC's generic `s2t` writes 着/裏/爲, which read as
    Simplified or archaic to Taiwan readers and mixed with Whisper's own Taiwan forms."""
    return _opencc("s2tw")(text)


@dataclass
class _Token:
    name: str
    members: dict[str, str]
    sep: str  # how the words of one token were joined: " " in English

    @property
    def original(self) -> str:
        """The spoken words this token covers (meta fields dropped)."""
        return self.sep.join(v for k, v in self.members.items() if k not in ("preserve_order", "kind") and v)


@dataclass
class _Grammar:
    tokens: Callable[[str], list[_Token]]
    verbalize: Callable[[_Token], str]


def _wetext(lang: str) -> _Grammar:
    """wetext's ITN tagger and verbaliser for one language, built on first use (importing
    wetext loads its FSTs, ~0.3 s) and then shared by all threads."""
    return _shared(f"wetext:{lang}", lambda: _build_grammar(lang))


def _build_grammar(lang: str) -> _Grammar:
    from wetext.constants import ITN_ORDERS
    from wetext.token_parser import Token, TokenParser
    from wetext.utils import tag, verbalize

    def tokens(text: str) -> list[_Token]:
        tagged = tag(text, lang, "itn")
        parser = TokenParser(lang, "itn")
        if tagged:
            parser.parse(tagged)
        sep = " " if lang == "en" else ""
        return [
            _Token(t.name, {k: re.sub(r"\\(.)", r"\1", v) for k, v in t.members.items()}, sep) for t in parser.tokens
        ]

    def verbalize_token(token: _Token) -> str:
        t = Token(token.name)
        for k, v in token.members.items():
            t.append(k, v.replace("\\", "\\\\").replace('"', '\\"'))
        return verbalize(t.string(ITN_ORDERS), lang, "itn")

    return _Grammar(_Locked(tokens), _Locked(verbalize_token))


# ---------------------------------------------------------------- finalize


def finalize(raw: str, language: str, opts: TextOptions) -> str:
    """The text users see: stripped, numbers written (ITN), Chinese in the chosen script.
    wetext's zh grammar only reads simplified characters, so Chinese is converted to
    simplified before ITN (and back to traditional afterwards when asked)."""
    text = raw.strip()
    lang = _base(language)
    if lang in _CHINESE:
        simplified = t2s(text)
        if opts.zh_script == "hans":
            return itn_zh(simplified) if opts.itn else simplified
        if opts.zh_script == "hant":  # always via simplified, so every form comes out alike
            return s2t(itn_zh(simplified) if opts.itn else simplified)
        if not opts.itn:
            return text
        return itn_zh(text) if simplified == text else s2t(itn_zh(simplified))
    if lang == "en" and opts.itn:
        return itn_en(text)
    return text


def finalize_words(words: list[Word], raw: str, language: str, opts: TextOptions) -> list[Word]:
    """A segment's words as its text reads (`finalize(raw)`): in the requested script,
    and where ITN rewrote a stretch ("twenty five" → "25", "二零二四年" → "2024年"), the
    words it rewrote become one word with the written form, from the first one's start to
    the last one's end. Words are the model's tokens and `raw` is their text; ITN reads
    context (十 alone is 10, in 十分 it is not), so the words are mapped onto the
    segment's finalized text rather than each finalized alone."""
    if not words:
        return words
    no_itn = replace(opts, itn=False)
    conv = [replace(w, word=_keep_space(w.word, finalize(w.word, language, no_itn))) for w in words]
    if not opts.itn:
        return conv
    src = "".join(w.word for w in conv)
    lead = src[: len(src) - len(src.lstrip())]
    dst = lead + finalize(raw, language, opts)
    if dst == src:
        return conv
    owner = [i for i, w in enumerate(conv) for _ in w.word]
    texts = [""] * len(conv)
    group = list(range(len(conv)))  # the first word of the group each word is merged into
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, src, dst, autojunk=False).get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                texts[owner[i1 + k]] += dst[j1 + k]
            continue
        ws = sorted({owner[k] for k in range(i1, i2)}) or [owner[i1 - 1] if i1 else 0]
        for k in range(ws[0] + 1, ws[-1] + 1):
            group[k] = group[ws[0]]
        texts[group[ws[0]]] += dst[j1:j2]
    out: list[Word] = []
    for i, w in enumerate(conv):
        if group[i] != i:  # merged into the word that starts its group
            out[-1].end = max(out[-1].end, w.end)
            out[-1].word += texts[i]
            continue
        out.append(replace(w, word=texts[i]))
    return [w for w in out if w.word.strip()]


def _keep_space(before: str, after: str) -> str:
    """`after` with `before`'s leading whitespace (finalize strips it; words keep it)."""
    return before[: len(before) - len(before.lstrip())] + after


# ---------------------------------------------------------------- punctuation


@dataclass
class Clause:
    """One piece of a transcript as the punctuation step sees it: a segment's final text
    and the silence that follows it (seconds; 0 when the next segment follows at once)."""

    text: str
    pause_after: float = 0.0


# A punctuator takes a transcript's (or one real-time sentence's) clauses in order and
# gives back each clause's punctuated text. `PUNCTUATORS` run in order: the rules below
# work on Whisper's output alone; a model (e.g. a CT-Transformer, as FunASR and
# sherpa-onnx use) can replace them or run after them on what they wrote.
Punctuator = Callable[[list[Clause], str, bool], list[str]]

# Whisper's segment boundaries abut (no timing between clauses), so a pause is only
# seen where the VAD cut the audio: that is a sentence end. Measured in docs/text.md.
SENTENCE_PAUSE_S = 1.0
_IDEO = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_IDEO_RE = re.compile(f"[{_IDEO}]")
_FULL = {",": "，", ".": "。", "?": "？", "!": "！", ":": "：", ";": "；"}
_SENTENCE_END = "。？！…"
_CLAUSE_END = "，、：；"
_CLOSERS = "”’」』）》】\"')"
# A space a writer would not put: between ideographs, or between an ideograph and a
# number that a measure word follows (周五 7点半); a space next to Latin words stays.
_CJK_SPACE = re.compile(f"(?<=[{_IDEO}])[ \u3000]+(?=[{_IDEO}]|\\d+(?:[.:]\\d+)?[{_IDEO}])")
_ELLIPSIS = re.compile(r"\.{2,}|…+")


def is_chinese(language: str | None) -> bool:
    return _base(language) in _CHINESE


def has_ideographs(text: str) -> bool:
    return bool(_IDEO_RE.search(text))


def has_words(text: str) -> bool:
    """Whether a model's text says anything: "…", "- -" and a lone "." are what models
    write for silence and noise."""
    return any(ch.isalnum() for ch in text)


def comparison_form(text: str, language: str) -> str:
    """The form two texts of one language are compared in — references and hypotheses
    when scoring (see the eval README), a continuation and the text before it when
    cutting a repeat (engines/whisper/recognizer.overlap_cut):
    NFKC; for Chinese Simplified script, no punctuation and no spaces (CER counts
    characters); otherwise lower case, punctuation removed except apostrophes inside
    words, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    if is_cjk(language):
        if is_chinese(language):
            text = t2s(text)
        return "".join(c for c in text if not c.isspace() and not unicodedata.category(c).startswith("P"))
    text = text.lower().replace("’", "'").replace("‘", "'")
    text = "".join(c if c == "'" or not unicodedata.category(c).startswith("P") else " " for c in text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def written_marks(text: str) -> str:
    """Punctuation inside one Chinese clause as Chinese is written: full-width marks
    next to Chinese (你好,世界 → 你好，世界), an ASCII mark left inside English and
    numbers (Apple Pay, 3.5, 7:30), and the spaces Whisper puts between clauses
    turned into commas (理解 因为 → 理解，因为)."""
    if not has_ideographs(text):
        return text
    text = _ELLIPSIS.sub(lambda m: "……" if _cjk_context(text, m.start(), m.end()) else m.group(), text)
    out = []
    for i, ch in enumerate(text):
        if ch in _FULL and _cjk_context(text, i, i + 1):
            ch = _FULL[ch]
        out.append(ch)
    text = _CJK_SPACE.sub("，", "".join(out))
    text = re.sub(r"\s*([，。？！、：；…])\s*", r"\1", text)  # no space around a full-width mark
    return re.sub(
        r"([，、：；])[，、：；。？！]+|([。？！])[，、：；]+", lambda m: m.group()[-1] if m[1] else m[2], text
    )


def _cjk_context(text: str, a: int, b: int) -> bool:
    """Whether the ASCII mark text[a:b] belongs to Chinese: a Chinese character is its
    nearest neighbour on either side, or it ends the clause after a number (涨了30.),
    and it does not sit between two digits (3.5, 7:30, 1,000)."""
    before = text[:a].rstrip()
    after = text[b:].lstrip()
    p, n = before[-1:], after[:1]
    if p.isdigit() and n.isdigit() and b - a == 1:
        return False
    if (p and _IDEO_RE.match(p)) or (n and _IDEO_RE.match(n)):
        return True
    return not n and (p.isdigit() or p in _CLOSERS)


def _question(text: str) -> bool:
    return text.endswith(("吗", "嗎"))


def punctuate_rules(clauses: list[Clause], language: str, open_end: bool = False) -> list[str]:
    """Rule punctuation for Chinese. Inside a clause: `written_marks`. Between clauses:
    Whisper's segments end at clause boundaries, so each clause that has no mark gets
    one — a comma, or a sentence end (。, ？ after 吗) after a pause of
    SENTENCE_PAUSE_S or at the last clause. `open_end`: the last clause is still being
    spoken (a real-time partial), so it gets no mark."""
    out = []
    for i, c in enumerate(clauses):
        text = written_marks(c.text.strip())
        last = i == len(clauses) - 1
        if not text or not has_ideographs(text) or (last and open_end):
            out.append(text)
            continue
        body = text.rstrip(_CLOSERS)
        closers = text[len(body) :]
        sentence_end = last or c.pause_after >= SENTENCE_PAUSE_S
        if body.endswith(tuple(_SENTENCE_END)):
            pass
        elif sentence_end:
            body = body.rstrip(_CLAUSE_END) + ("？" if _question(body.rstrip(_CLAUSE_END)) else "。")
        elif not body.endswith(tuple(_CLAUSE_END)):
            body += "，"
        out.append(body + closers)
    return out


PUNCTUATORS: list[Punctuator] = [punctuate_rules]


def punctuate(clauses: list[Clause], language: str, open_end: bool = False) -> list[str]:
    """Each clause's text punctuated as its language is written. Only Chinese is
    changed: Whisper punctuates English itself, and its Chinese mostly not at all."""
    texts = [c.text for c in clauses]
    if not is_chinese(language):
        return texts
    for punctuator in PUNCTUATORS:
        texts = punctuator([replace(c, text=t) for c, t in zip(clauses, texts, strict=False)], language, open_end)
    return texts


def punctuate_segments(segments: list[Segment], language: str, opts: TextOptions) -> None:
    """The punctuation step of a file's text stage, on its segments in time order
    (each segment's raw text stays as the model wrote it)."""
    if not opts.punctuate or not is_chinese(language) or not segments:
        return
    clauses = [
        Clause(s.text, max(0.0, nxt.start - s.end) if nxt else 0.0)
        for s, nxt in zip(segments, [*segments[1:], None], strict=False)
    ]
    for s, text in zip(segments, punctuate(clauses, language), strict=False):
        s.text = text


# ---------------------------------------------------------------- zh ITN

_NUM = "零〇一二两三四五六七八九十百千万亿幺"
_DIGIT = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2, "幺": 1}

# Idioms and fixed phrases wetext would write in digits (九九八十一 → "998 11",
# 十字路口 → 10字路口, 十分感谢 → 10分感谢), and approximations with 几, which Chinese
# writes in characters (十几个 → 10几个, 几十 → 几10). These spans are left untouched.
_PROTECT = re.compile(
    "|".join(
        [
            "九九八十一",
            "三三两两",
            "八九不离十",
            "十有八九",
            "十之八九",
            "[三四五六七]十而",
            "五十步笑百步",
            "三十六计",
            "七十二变",
            "十八般",
            "二十四节气",
            "十二生肖",
            "十万火急",
            "一点一点",
            "百八十",
            "一千零一夜",
            "九一八事变",
            "一二九运动",
            f"(?<![{_NUM}])十字",
            f"(?<![{_NUM}点])十分(?![钟之])",  # 十分 = "very"; 九十分 and 三点十分 still convert
            f"(?:好几|几|数)[十百千万亿]+[{_NUM}]*",
            f"[{_NUM}]+几",
        ]
    )
)
_QUARTER = re.compile(f"([{_NUM}]{{1,3}})点([一三])刻")
_ZERO = re.compile(f"(?<=[{_NUM}])〇|〇(?=[{_NUM}])")
_DAYPART_HOUR = re.compile(f"(上午|下午|早上|早晨|清晨|中午|晚上|傍晚|凌晨|夜里|半夜|午夜)([{_NUM}]{{1,3}})点(?!点)")


def itn_zh(text: str) -> str:
    """Chinese inverse text normalisation of simplified text; idioms are left alone."""
    out, pos = [], 0
    for m in _PROTECT.finditer(text):
        out += [_itn_zh_plain(text[pos : m.start()]), m.group()]
        pos = m.end()
    out.append(_itn_zh_plain(text[pos:]))
    return _DIGIT_CLOCK.sub(_digit_clock, "".join(out))


# A clock time Whisper already wrote in digits (7点半, 3点15分, 8点一刻): written H:MM
# like the times ITN writes from characters, so one recording never has both styles.
_DIGIT_CLOCK = re.compile(r"(?<![\d.:])(\d{1,2})点(半|一刻|三刻|(\d{1,2})分)(?!钟|\d)")


def _digit_clock(m: re.Match[str]) -> str:
    hour = int(m[1])
    minute = {"半": 30, "一刻": 15, "三刻": 45}.get(m[2]) if m[3] is None else int(m[3])
    if minute is None or hour > 24 or minute > 59:
        return m.group()
    return f"{hour}:{minute:02d}"


def _itn_zh_plain(text: str) -> str:
    if not re.search(f"[{_NUM}]", text):
        return text
    spoken = _ZERO.sub("零", text)  # 二〇二五 is not in wetext's grammar
    spoken = _QUARTER.sub(lambda m: f"{m[1]}点{'十五' if m[2] == '一' else '四十五'}分", spoken)
    grammar = _wetext("zh")
    tokens = grammar.tokens(spoken)
    if "".join(t.original for t in tokens) != spoken:
        return text
    parts = []
    for tok in tokens:
        if tok.name == "char":
            parts.append(tok.original)
            continue
        custom = _ZH_WRITERS.get(tok.name)
        written = custom(tok, grammar.verbalize) if custom else None
        parts.append(grammar.verbalize(tok) if written is None else written)
    return _DAYPART_HOUR.sub(_daypart_hour, "".join(parts))


def _cn_digits(s: str) -> str | None:
    """Chinese numeral → digits: 二零二五 → "2025" (read digit by digit),
    三十一 → "31", 两千零二十五 → "2025"; None when it is not a plain number."""
    if not s:
        return None
    if all(c in _DIGIT for c in s):
        return "".join(str(_DIGIT[c]) for c in s)
    total, section, num = 0, 0, 0
    for c in s:
        if c in _DIGIT:
            num = _DIGIT[c]
        elif c in "十百千":
            section += (num or 1) * {"十": 10, "百": 100, "千": 1000}[c]
            num = 0
        elif c == "万":
            total, section, num = (section + num) * 10000, 0, 0
        else:
            return None
    return str(total + section + num)


def _cn_int(s: str, suffixes: str = "") -> int | None:
    digits = _cn_digits(s[:-1] if s and s[-1] in suffixes else s)
    return int(digits) if digits else None


_Writer = Callable[[_Token, Callable[[_Token], str]], "str | None"]


def _date(tok: _Token, verbalize: Callable[[_Token], str]) -> str | None:
    """2025年3月12日, as Chinese writes dates; wetext writes 2025/03/12, which also
    glues onto a following time (2025/03/123:30p.m.)."""
    m, out = tok.members, ""
    if "year" in m:
        year = _cn_digits(m["year"].removesuffix("年"))
        if year is None:
            return None
        out += f"{year}年"
    if "month" in m:
        month = _cn_int(m["month"], "月")
        if month is None or not 1 <= month <= 12:
            return None
        out += f"{month}月"
    if "day" in m:
        day = _cn_int(m["day"], "日号")
        if day is None or not 1 <= day <= 31:
            return None
        out += f"{day}日"
    return out or None


def _time(tok: _Token, verbalize: Callable[[_Token], str]) -> str | None:
    """下午3:30: the spoken part of day stays in front (wetext moves it behind as
    "p.m." and drops 早上) and the clock is H:MM."""
    m = tok.members
    if set(m) - {"noon", "hour", "minute", "second"} or "hour" not in m:
        return None
    hour = _cn_int(m["hour"], "点")
    minute = 30 if m.get("minute") == "半" else _cn_int(m.get("minute") or "零", "分")
    if hour is None or minute is None or hour > 24 or minute > 59:
        return None
    clock = f"{hour}:{minute:02d}"
    if "second" in m:
        second = _cn_int(m["second"], "秒")
        if second is None or second > 59:
            return None
        clock += f":{second:02d}"
    return m.get("noon", "") + clock


_LEADING_NUMBER = re.compile(r"\d+(?:\.\d+)?[万亿]?")


def _money(tok: _Token, verbalize: Callable[[_Token], str]) -> str | None:
    """350元 / 50美元 rather than ¥350 / $50: the currency stays the word that was said."""
    number = _LEADING_NUMBER.search(verbalize(tok))
    currency = tok.members.get("currency", "")
    return number.group() + currency if number and currency else None


def _measure(tok: _Token, verbalize: Callable[[_Token], str]) -> str | None:
    """10分钟 / 3.5公斤 / 24小时 rather than 10min / 3.5kg / 24h; a range of neighbouring
    numerals (三四个) stays in characters. Percentages keep wetext's 92.5%."""
    written, original = verbalize(tok), tok.original
    if "~" in written:
        return original
    unit = re.search(f"[^{_NUM}点]+$", original)
    number = _LEADING_NUMBER.match(written)
    if not unit or not number or original.startswith(("百分之", "千分之")):
        return None
    return number.group() + unit.group()


def _cardinal(tok: _Token, verbalize: Callable[[_Token], str]) -> str | None:
    """Digits without wetext's group spaces (邮编100 080 → 100080); a range of two
    neighbouring numerals (五六, 三四百) is an approximation and stays in characters."""
    written = verbalize(tok)
    return tok.original if "~" in written else re.sub(r"(?<=\d) (?=\d)", "", written)


_ZH_WRITERS: dict[str, _Writer] = {
    "date": _date,
    "time": _time,
    "money": _money,
    "measure": _measure,
    "cardinal": _cardinal,
}


def _daypart_hour(m: re.Match[str]) -> str:
    """下午两点 → 下午2点, like 上午10点, which wetext already writes in digits."""
    hour = _cn_int(m[2])
    return f"{m[1]}{hour}点" if hour is not None and hour <= 24 else m.group()


# ---------------------------------------------------------------- en ITN

_MONTHS = {
    "january", "february", "march", "april", "may", "june", "july",
    "august", "september", "october", "november", "december",
}  # fmt: skip
_SMALL_ORDINALS = {"first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"}


def itn_en(text: str) -> str:
    """English inverse text normalisation. wetext's tagger returns nothing for text
    with a double quote or backslash, so those split the text into parts."""
    parts = re.split(r'(["\\])', text)
    return "".join(p if p in ('"', "\\") else _itn_en_part(p) for p in parts)


def _itn_en_part(text: str) -> str:
    core = text.strip()
    if not re.search(r"[A-Za-z]", core):
        return text
    tokens = _wetext("en").tokens(core)
    spaced = _spaces_before(tokens, core)
    if spaced is None:
        return text
    out = []
    for i, _tok in enumerate(tokens):
        out.append((" " if spaced[i] else "") + _write_en(tokens, i))
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
    return lead + "".join(out) + trail


def _spaces_before(tokens: list[_Token], text: str) -> list[bool] | None:
    """Whether the input had whitespace before each token (wetext's tags do not say
    after punctuation), or None when the tokens do not spell out the input exactly."""
    spaced, pos = [], 0
    for tok in tokens:
        start = pos
        while pos < len(text) and text[pos].isspace():
            pos += 1
        spaced.append(pos > start and start > 0)
        for ch in tok.original.replace(" ", ""):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text) or text[pos] != ch:
                return None
            pos += 1
    return spaced if pos == len(text) else None


def _write_en(tokens: list[_Token], i: int) -> str:
    """One token, written: "100%" not "100 %", "3:30 p.m." not "03:30 p.m.", "50 cents"
    not "$0.50" (which also misread "a dollar and five cents"), and small
    ordinals stay words ("for the first time", "wait a second") except in dates."""
    tok = tokens[i]
    if tok.name in ("word", "punctuation"):
        return tok.original
    if tok.name == "electronic" and " " in tok.members.get("username", ""):
        return tok.original  # "e-mail me at john at gmail dot com" is not me at john@…
    if tok.name == "ordinal" and tok.original.lower() in _SMALL_ORDINALS:
        before = tokens[i - 1].original.lower() if i > 0 else ""
        after = " ".join(t.original.lower().strip(".,!?;:") for t in tokens[i + 1 : i + 3])
        in_date = before in _MONTHS or (after.startswith("of ") and after[3:] in _MONTHS)
        if not in_date:
            return tok.original
    written = _wetext("en").verbalize(tok)
    cents = re.fullmatch(r"\$0\.(\d\d)", written)
    if tok.name == "money" and cents and not tok.members.get("value"):
        n = int(cents.group(1))  # "fifty cents" is written "50 cents", not "$0.50"
        return f"{n} cent" if n == 1 else f"{n} cents"
    written = re.sub(r"(?<=\d) %", "%", written)
    return re.sub(r"^0(\d:\d\d)", r"\1", written)


# ---------------------------------------------------------------- repetition guard

_CJK = "\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"  # ideographs, kana, CJK punctuation
_UNIT = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")  # one CJK character, or one space-separated word
MAX_NGRAM = 15


def spoken_units(text: str) -> int:
    """How much `text` says: its CJK characters and space-separated words (a character is
    a syllable, a word one to three), punctuation not counted."""
    return sum(1 for m in _UNIT.finditer(text) if any(c.isalnum() for c in m.group()))


def _min_repeats(n: int) -> int:
    """Repeats of an n-unit gram that count as a loop. Speech repeats short things
    (哈哈哈, 对对对对, "very very", 好的好的好的) but not a phrase four times running."""
    return 7 if n == 1 else 5 if n == 2 else 4


def collapse_repetitions(text: str) -> tuple[str, bool]:
    """Cut Whisper's hallucination loops ("那那那那那…", "谢谢观看谢谢观看…",
    "I don't know. I don't know. …") to their first repeats (3 for single units, 2 for
    longer grams), dropping a trailing partial repeat too. Units are CJK characters and
    space-separated words; case and edge punctuation are ignored when comparing.
    Returns the text and whether anything was cut."""
    spans = [(m.start(), m.end()) for m in _UNIT.finditer(text)]
    keys = [_unit_key(text[a:b]) for a, b in spans]
    cuts: list[tuple[int, int]] = []
    i = 0
    while i < len(keys):
        loop = _loop_at(keys, i)
        if loop is None:
            i += 1
            continue
        n, end = loop
        cuts.append((spans[i + (3 if n == 1 else 2) * n - 1][1], spans[end - 1][1]))
        i = end
    if not cuts:
        return text, False
    out, pos = [], 0
    for a, b in cuts:
        out.append(text[pos:a])
        pos = b
    out.append(text[pos:])
    return "".join(out), True


def _loop_at(keys: list[str], i: int) -> tuple[int, int] | None:
    """(gram length, end index) of a loop starting at unit i, shortest gram first."""
    for n in range(1, min(MAX_NGRAM, len(keys) - i) + 1):
        gram = keys[i : i + n]
        reps = 1
        while keys[i + reps * n : i + (reps + 1) * n] == gram:
            reps += 1
        if reps >= _min_repeats(n):
            end = i + reps * n
            tail = keys[end:]
            if 0 < len(tail) < n and tail == gram[: len(tail)]:
                end = len(keys)  # the loop ran into the token limit mid-phrase
            return n, end
    return None


def _unit_key(unit: str) -> str:
    stripped = "".join(c for c in unit.casefold() if not unicodedata.category(c).startswith("P"))
    return stripped or unit


# ---------------------------------------------------------------- junk guard

_BRACKETS = set("《》〈〉【】〔〕「」『』()（）[]［］{}<>")
_LATIN = re.compile(r"[A-Za-z]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")


def junk_reason(text: str, language: str) -> str | None:
    """Why a segment's text is model junk rather than speech, or None:
    "brackets" — mostly bracket marks around Latin or repeated items
    (《平和表配》《iPOP》《iPOP: Whisper's memory of titles and subtitles, not speech);
    "script" — a Chinese or Japanese request answered wholly in Latin letters
    ("Thank you for watching.");
    "loop" — a hallucination loop that collapse_repetitions would cut."""
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return None
    brackets = sum(c in _BRACKETS for c in visible)
    inside = re.findall(r"[《〈【〔「『(（\[［{<]([^》〉】〕」』)）\]］}>]*)", text)
    if brackets >= 3 and brackets >= 0.2 * len(visible) and (_LATIN.search(text) or len(set(inside)) < len(inside)):
        return "brackets"
    if _base(language) in (*_CHINESE, "ja") and not _HAN.search(text) and len(_LATIN.findall(text)) >= 6:
        return "script"
    if collapse_repetitions(text)[1]:
        return "loop"
    return None
