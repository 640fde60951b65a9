"""The word prior that chooses among a Chinese window's beam hypotheses
(tingxie/engines/whisper/word_prior.py): it must prefer real words to their homophones,
read both scripts alike, and never choose a hypothesis that says less."""

from __future__ import annotations

import json

import pytest

from tingxie.engines.whisper import word_prior
from tingxie.engines.whisper.word_prior import PRIOR, choose
from tingxie.text import comparison_form

# (what was said, what whisper-base wrote first on the eval set): homophones it heard
HOMOPHONES = [
    ("在发放渠道中也容易出现流失", "在发放曲道中也容易出现流失"),
    ("其手机市场份额锐减", "其手机市场分额锐减"),
    ("新工厂将提供至少十五万个就业机会", "新工厂将提供至少十五万个救验机会"),
    ("新股发行其实不用有什么增量的东西", "辛古发型其实不用有什么增量的东西"),
]


@pytest.mark.parametrize(("said", "heard"), HOMOPHONES)
def test_words_that_exist_are_likelier_than_their_homophones(said, heard):
    assert PRIOR.logprob(said) > PRIOR.logprob(heard)


def test_the_prior_reads_traditional_and_punctuated_text_as_simplified():
    assert PRIOR.logprob("在發放渠道中，也容易出現流失。") == PRIOR.logprob("在发放渠道中也容易出现流失")


def test_a_homophone_a_little_likelier_to_the_model_loses_to_the_word():
    said, heard = HOMOPHONES[0]
    # the beam ranks the homophone first by a hair (scores: log-probability per token)
    assert choose([heard, said], [-0.30, -0.31]) == 1


def test_a_clear_acoustic_preference_is_kept():
    said, heard = HOMOPHONES[0]
    assert choose([heard, said], [-0.30, -0.90]) == 0


def test_a_hypothesis_that_stops_early_is_never_chosen_however_likely_its_words():
    """The beam holds hypotheses that end early. Chosen freely, one that stopped after its
    first sentence replaced one that went on for 20 s (long validation set): the prior may
    choose which words, never how many."""
    whole = "之前刚刚对居民派发了现金返还陕北民谣黑神话的启发"
    early = "之前刚刚对居民派发了现金返还"
    # rarer words follow: per character, the early stop is the likelier text
    assert PRIOR.logprob(early) / word_prior.units(early) > PRIOR.logprob(whole) / word_prior.units(whole)
    assert choose([whole, early], [-0.29, -0.30]) == 0  # the beam ranked the whole first


def test_a_hotword_the_model_heard_is_kept_against_common_words():
    """A hotword is often a name or a term the dictionary rates rare (达摩院, against
    大模型's common words); the request asked for it, so the prior never trades it away."""
    said, common = "欢迎体验达摩院推出的模型", "欢迎体验大模型推出的模型"
    assert PRIOR.logprob(common) > PRIOR.logprob(said)
    assert choose([said, common], [-0.300, -0.301]) == 1  # without the hotword, the prior decides
    assert choose([said, common], [-0.300, -0.301], ["达摩院"]) == 0


def test_numbers_in_digits_or_characters_are_alternatives_of_one_length():
    # 10年 / 十年: a run of digits is one unit, so either may be chosen
    assert word_prior.units("10年后的需求") == word_prior.units("十年后的需求")


def test_without_a_weight_the_likeliest_hypothesis_is_kept(monkeypatch):
    said, heard = HOMOPHONES[0]
    monkeypatch.setattr(word_prior, "PRIOR_WEIGHT", 0.0)
    assert choose([said, heard], [-0.31, -0.30]) == 1


def test_a_chinese_window_is_transcribed_from_the_hypothesis_the_prior_chose(sched, corpus_dir, monkeypatch):
    """Through the real pipeline, on real Mandarin (espeak-ng's Mandarin is too far from
    speech for whisper-base): each file's window hands its beam's hypotheses to the prior,
    and the transcript is the one it chose; an English file's window is not asked."""
    from tingxie.transcribe import transcribe_many
    from tingxie.types import DecodeOptions, TextOptions, VadOptions

    rows = [json.loads(x) for x in (corpus_dir / "manifest.jsonl").read_text().splitlines() if x.strip()]
    zh = [corpus_dir / r["audio"] for r in rows if r["id"].startswith("aishell_")][:2]
    en = [corpus_dir / r["audio"] for r in rows if r["lang"] == "en"][:1]
    seen: list[tuple[list[str], int]] = []

    def spy(texts, scores, hotwords=()):
        k = choose(texts, scores, hotwords)
        seen.append((texts, k))
        return k

    monkeypatch.setattr(word_prior, "choose", spy)
    opts = (VadOptions(), TextOptions(itn=False))
    outs = sorted(transcribe_many(zh, sched, DecodeOptions(language="zh"), *opts), key=lambda o: o.index)
    assert len(seen) == len(zh) and all(len(texts) == 5 for texts, _ in seen)  # the beam's five hypotheses
    chosen = sorted(comparison_form(texts[k], "zh") for texts, k in seen)
    assert sorted(comparison_form(o.transcript.text, "zh") for o in outs) == chosen
    seen.clear()
    [out] = list(transcribe_many(en, sched, DecodeOptions(language="en"), *opts))
    assert out.transcript.text and not seen
