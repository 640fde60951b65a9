"""Text post-processing: ITN, Chinese script, repetition guard."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tingxie.text import (
    collapse_repetitions,
    finalize,
    finalize_words,
    is_cjk,
)
from tingxie.types import TextOptions, Word

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval" / "manifest.jsonl"


def zh(text: str, **opts: object) -> str:
    return finalize(text, "zh", TextOptions(**opts))  # type: ignore[arg-type]


def en(text: str) -> str:
    return finalize(text, "en", TextOptions())


# ---------------------------------------------------------------- zh ITN

ZH_CASES = [
    # dates: 年月日, never 2025/03/12
    ("二零二五年三月十二号", "2025年3月12日"),
    ("二〇二五年三月十二日", "2025年3月12日"),
    ("二〇二五年三月", "2025年3月"),
    ("十二月二十五日", "12月25日"),
    ("五月一日放假", "5月1日放假"),
    ("一九九八年", "1998年"),
    ("两千零二十五年", "2025年"),
    # times: part of day kept, H:MM
    ("下午三点半", "下午3:30"),
    ("晚上八点十五分", "晚上8:15"),
    ("早上七点半", "早上7:30"),
    ("下午三点十五分三十秒", "下午3:15:30"),
    ("三点一刻", "3:15"),
    ("九点零五分", "9:05"),
    ("十一点半", "11:30"),
    ("中午十二点半", "中午12:30"),
    ("下午两点", "下午2点"),
    ("上午十点", "上午10点"),
    # a date followed by a time must not glue together (wetext: 2025/03/123:30p.m.)
    ("二零二五年三月十二号下午三点半开会", "2025年3月12日下午3:30开会"),
    ("三月十二号晚上八点", "3月12日晚上8点"),
    # percentages, money, measures
    ("百分之九十二点五", "92.5%"),
    ("百分之五十", "50%"),
    ("三百五十块钱", "350块钱"),
    ("三百五十元", "350元"),
    ("一百二十元五角", "120.5元"),
    ("五十美元", "50美元"),
    ("十分钟", "10分钟"),
    ("二十四小时", "24小时"),
    ("三点五公斤", "3.5公斤"),
    ("三百米", "300米"),
    # phone numbers and codes: digits, no group spaces
    ("一三八零零一三八零零零", "13800138000"),
    ("电话是一三九一二三四五六七八", "电话是13912345678"),
    ("邮编一零零零八零", "邮编100080"),
    ("拨打幺幺零", "拨打110"),
    # plain numbers in running text
    ("四十六岁的国企出纳员", "46岁的国企出纳员"),
    ("新工厂将提供至少十五万个就业机会", "新工厂将提供至少15万个就业机会"),
    ("考了九十分", "考了90分"),
    ("三点十分", "3:10"),
]


@pytest.mark.parametrize(("spoken", "written"), ZH_CASES)
def test_zh_itn_writes_numbers_as_chinese_users_do(spoken: str, written: str) -> None:
    assert zh(spoken) == written


ZH_UNCHANGED = [
    "一会儿", "一起", "一个人", "万一", "统一", "一模一样", "一心一意", "独一无二",
    "一点点", "一下", "三个人", "星期一", "第一", "初一", "一两天",
    # idioms and phrases wetext itself turns into digits
    "九九八十一", "八九不离十", "三三两两", "十有八九", "十之八九", "十字路口", "红十字会",
    "十万火急", "十分感谢", "三十而立", "三十六计", "一点一点",
    # approximations stay in characters
    "十几个", "几十万", "好几十", "二十几岁", "五六个", "三四百", "七八个", "三五天",
    "我们一起去吃饭吧", "今天天气不错",
]  # fmt: skip


@pytest.mark.parametrize("text", ZH_UNCHANGED)
def test_zh_itn_leaves_ordinary_text_and_idioms_alone(text: str) -> None:
    assert zh(text) == text


def test_zh_itn_keeps_surrounding_text_and_digits() -> None:
    assert zh('他说"一百"。') == '他说"100"。'
    assert zh("我用iPhone 十五 pro") == "我用iPhone 15 pro"
    assert zh("2025年3月12日下午3点") == "2025年3月12日下午3点"


_NUMBERISH = re.compile(r"[零〇一二两三四五六七八九十百千万亿幺点半刻分秒年月日号元块0-9:.%/~]")


@pytest.mark.skipif(not EVAL.exists(), reason=f"eval corpus not found at {EVAL}")
def test_itn_never_loses_words_of_real_references() -> None:
    """Over the real eval references, ITN changes only number words."""
    items = [json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    changed = 0
    for item in items:
        text, lang = item["text"].strip(), item["lang"]
        if lang != "zh":
            continue
        out = finalize(text, lang, TextOptions(itn=True, zh_script="keep"))
        assert _NUMBERISH.sub("", out) == _NUMBERISH.sub("", text), item["id"]
        changed += out != text
    assert changed >= 3  # the corpus has spoken numbers (三十年, 七点半); ITN must touch them


def test_itn_off_keeps_spoken_numbers() -> None:
    assert zh("二零二五年三月十二号", itn=False) == "二零二五年三月十二号"
    assert finalize("twenty five dollars", "en", TextOptions(itn=False)) == "twenty five dollars"


def test_itn_is_safe_from_many_threads() -> None:
    inputs = [s for s, _ in ZH_CASES] * 8
    expected = [zh(s) for s in inputs]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(zh, inputs)) == expected


# ---------------------------------------------------------------- en ITN

EN_CASES = [
    ("twenty five dollars", "$25"),
    ("It costs twenty five dollars and fifty cents.", "It costs $25.50."),
    ("That is fifty cents a page.", "That is 50 cents a page."),
    ("It was a dollar and five cents, one cent more.", "It was a dollar and 5 cents, 1 cent more."),
    ("one hundred percent", "100%"),
    ("It's about five percent.", "It's about 5%."),
    ("March twelfth twenty twenty five", "March 12th 2025"),
    ("Let's meet on the fifth of May.", "Let's meet on the 5th of May."),
    ("three thirty p.m.", "3:30 p.m."),
    ("I was born in nineteen ninety.", "I was born in 1990."),
    ("We sold one thousand two hundred units.", "We sold 1200 units."),
    ("She is twenty years old.", "She is 20 years old."),
    ("call nine one one now", "call 911 now"),
    ('He said "one hundred" twice', 'He said "100" twice'),
]


@pytest.mark.parametrize(("spoken", "written"), EN_CASES)
def test_en_itn(spoken: str, written: str) -> None:
    assert en(spoken) == written


EN_UNCHANGED = [
    "I don't know.",
    "Hello, how are you doing today?",
    "No one knows.",
    "One by one, they left.",
    "Wait a second.",
    "First of all, I have one question.",
    "For the first time.",
    "I'm on cloud nine.",
    "Mr. Smith & Co. (London)",
    "e-mail me at john at gmail dot com",
    "She had your dark suit in greasy wash water all year.",
]


@pytest.mark.parametrize("text", EN_UNCHANGED)
def test_en_itn_leaves_plain_sentences_alone(text: str) -> None:
    assert en(text) == text


# ---------------------------------------------------------------- script


def test_zh_script_conversion() -> None:
    assert zh("謝謝觀看", itn=False) == "谢谢观看"  # hans is the default
    assert zh("谢谢观看", itn=False, zh_script="hant") == "謝謝觀看"
    assert zh("謝謝觀看", itn=False, zh_script="keep") == "謝謝觀看"
    assert finalize("謝謝觀看", "yue", TextOptions(itn=False)) == "谢谢观看"


def test_script_conversion_comes_before_itn() -> None:
    """wetext reads only simplified numerals, so traditional input still gets ITN."""
    assert zh("二零二五年三月十二號下午三點半開會") == "2025年3月12日下午3:30开会"
    assert zh("二零二五年三月十二號下午三點半開會", zh_script="hant") == "2025年3月12日下午3:30開會"
    assert zh("下午三點半見", zh_script="keep") == "下午3:30見"
    assert zh("下午三点半见", zh_script="keep") == "下午3:30见"


def test_finalize_strips_surrounding_space() -> None:
    assert zh("  你好  ") == "你好"  # a bad zh_script is refused by the request schema (test_request)


def test_is_cjk() -> None:
    assert [is_cjk(x) for x in ("zh", "yue", "ja", "zh-CN", "en", "ko", None)] == [
        True, True, True, True, False, False, False
    ]  # fmt: skip


# ---------------------------------------------------------------- repetitions


@pytest.mark.parametrize(
    ("looped", "cut"),
    [
        ("那" * 12, "那那那"),
        ("谢谢观看" * 6, "谢谢观看谢谢观看"),
        ("谢谢观看，" * 5 + "谢谢", "谢谢观看，谢谢观看，"),
        ("我想说" * 5 + "的是", "我想说我想说的是"),
        ("I don't know. " * 6 + "I don't", "I don't know. I don't know."),
        ("He said " + "no, " * 8 + "okay.", "He said no, no, no, okay."),
        ("so " * 9, "so so so"),
    ],
)
def test_collapse_cuts_loops(looped: str, cut: str) -> None:
    assert collapse_repetitions(looped.strip()) == (cut, True)


@pytest.mark.parametrize(
    "text",
    ["哈哈哈", "哈哈哈哈哈哈", "对对对对", "好的好的好的", "very very good", "No, no, no!",
     "我们今天讨论的是，我们今天讨论的是什么", "一二三四五六七八九十", "", "Thank you. Thank you."],
)  # fmt: skip
def test_collapse_leaves_normal_speech(text: str) -> None:
    assert collapse_repetitions(text) == (text, False)


def test_itn_gives_input_back_when_wetext_loses_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """wetext's tagger returns nothing for some inputs (an English double quote did);
    ITN must then leave the text as it was rather than drop it."""
    import tingxie.text as text_mod

    real = text_mod._wetext

    def lossy(lang: str) -> object:
        grammar = real(lang)
        return text_mod._Grammar(lambda s: grammar.tokens(s)[1:], grammar.verbalize)

    monkeypatch.setattr(text_mod, "_wetext", lossy)
    assert en("It costs twenty five dollars.") == "It costs twenty five dollars."
    assert zh("我有一百二十个苹果") == "我有一百二十个苹果"


# ---------------------------------------------------------------- words


def _words(*texts: str) -> list[Word]:
    return [Word(float(i), i + 1.0, t) for i, t in enumerate(texts)]


@pytest.mark.parametrize(
    ("script", "expected"), [("hans", ["还有", "一个", "问题"]), ("hant", ["還有", "一個", "問題"])]
)
def test_words_follow_the_requested_script(script: str, expected: list[str]) -> None:
    words = _words("還有", "一个", "问題")  # Whisper mixes scripts, even inside a word
    got = finalize_words(words, "還有一个问題", "zh", TextOptions(zh_script=script))  # type: ignore[arg-type]
    assert [w.word for w in got] == expected
    assert [(w.start, w.end) for w in got] == [(0, 1), (1, 2), (2, 3)]


def test_words_follow_itn_where_it_rewrites_them() -> None:
    """The words ITN rewrote become one word with the written form; other words keep
    their text and times; ITN off leaves the spoken numbers."""
    words = _words("二零", "二四", "年", "十分", "好")
    got = finalize_words(words, "二零二四年十分好", "zh", TextOptions())
    assert [w.word for w in got] == ["2024", "年", "十分", "好"]
    assert (got[0].start, got[0].end) == (0, 2)
    en_words = _words(" I", " have", " twenty", " five", " dogs")
    got = finalize_words(en_words, "I have twenty five dogs", "en", TextOptions())
    assert "".join(w.word for w in got).strip() == finalize("I have twenty five dogs", "en", TextOptions())
    assert [w.word.strip() for w in got][-1] == "dogs" and got[-1].start == 4.0
    off = finalize_words(words, "二零二四年十分好", "zh", TextOptions(itn=False))
    assert [w.word for w in off] == ["二零", "二四", "年", "十分", "好"]
