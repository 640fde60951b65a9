"""Scoring against references (tingxie/bench/score.py): the normal form and corpus CER/WER."""

from __future__ import annotations

import pytest

from tingxie.bench.score import error_rate, normalize_for_scoring


def test_normalize_for_scoring_zh() -> None:
    assert normalize_for_scoring("甚至  出现  交易", "zh") == "甚至出现交易"
    assert normalize_for_scoring("後來，他說：「好！」", "zh") == "后来他说好"
    assert normalize_for_scoring("ＡＢＣ１２３。", "zh") == "ABC123"


def test_normalize_for_scoring_en() -> None:
    assert normalize_for_scoring("Mister SMITH's dog—it's 'fine', isn't it?", "en") == (
        "mister smith's dog it's fine isn't it"
    )
    assert normalize_for_scoring("  Hello,\n  WORLD! ", "en") == "hello world"
    assert normalize_for_scoring("Don’t", "en") == "don't"


def test_error_rate() -> None:
    assert error_rate(["今天天气很好"], ["今天天气不好"], "zh") == pytest.approx(1 / 6)
    assert error_rate(["今天天气很好"], ["今天天氣很好。"], "zh") == 0.0
    assert error_rate(["HELLO WORLD"], ["hello, world!"], "en") == 0.0
    assert error_rate(["a b c d"], ["a x c"], "en") == pytest.approx(0.5)
    # corpus rate: total edits over total reference units, not a mean of rates
    assert error_rate(["a b c d", "e f"], ["a b c d", "x f"], "en") == pytest.approx(1 / 6)
    with pytest.raises(ValueError):
        error_rate(["a"], ["a", "b"], "en")
