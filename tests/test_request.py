"""The one request schema: every surface derives its options from it and refuses bad
values with the same message."""

from __future__ import annotations

import argparse

import pytest

from tingxie.request import TranscriptionOptions, add_cli_arguments, from_cli
from tingxie.types import OptionsError


def _cli(*argv: str) -> TranscriptionOptions:
    p = argparse.ArgumentParser()
    add_cli_arguments(p)
    return from_cli(p.parse_args(list(argv)))


def test_every_option_has_a_cli_flag():
    p = argparse.ArgumentParser()
    add_cli_arguments(p)
    dests = {a.dest for a in p._actions}
    # enrolled voices belong to an API key on a server; the CLI names speakers by clip
    # instead (`tingxie transcribe --diarize --speaker NAME=clip.wav`, tested in test_diarization)
    assert set(TranscriptionOptions.model_fields) - dests == {"known_speaker_names"}


def test_cli_flags_reach_the_pipeline():
    decode, vad, text = _cli(
        "--beam-size",
        "3",
        "--no-itn",
        "--zh-script",
        "hant",
        "--hotwords",
        "七牛,云存储",
        "--initial-prompt",
        "会议",
        "--vad-min-silence-ms",
        "500",
    ).pipeline()
    assert decode.beam_size == 3 and decode.hotwords == ["七牛", "云存储"] and decode.initial_prompt == "会议"
    assert text.itn is False and text.zh_script == "hant"
    assert vad is not None and vad.min_silence_ms == 500
    assert _cli("--vad", "off").pipeline()[1] is None
    assert _cli("--language", "auto").pipeline()[0].language is None


def test_stored_options_read_back_the_same():
    o = TranscriptionOptions.parse(
        {"language": "zh", "hotwords": "七牛", "word_timestamps": True, "vad_threshold": 0.4}
    )
    again = TranscriptionOptions.parse(o.stored())
    assert again == o
    # rows written before the schema kept the prompt as initial_prompt
    assert TranscriptionOptions.parse({"initial_prompt": "你好"}).prompt == "你好"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"beam_size": 11}, "option beam_size must be between 1 and 10, not 11"),
        ({"vad_threshold": 1.0}, "option vad_threshold must be between 0.0 and 1.0"),
        ({"zh_script": "tw"}, "option zh_script must be 'hans', 'hant' or 'keep'"),
        ({"task": "summarise"}, "option task must be"),
        ({"prompt": "长" * 1001}, "option prompt: at most 1000 characters"),
        ({"language": "klingon"}, "unknown language"),
        ({"speed": 2}, "unknown option(s): speed"),
    ],
)
def test_bad_values_name_the_option(data, message):
    with pytest.raises(OptionsError) as e:
        TranscriptionOptions.parse(data, known_only=True)
    assert message in str(e.value)
    if "unknown option" not in message:  # the API's error `param`: the option at fault
        assert e.value.param == next(iter(data))


@pytest.mark.parametrize(
    "given, words",
    [
        ("七牛,云存储", ["七牛", "云存储"]),
        ("七牛，云存储、对象存储", ["七牛", "云存储", "对象存储"]),
        ("七牛 云存储", ["七牛", "云存储"]),
        ("New York, Los Angeles", ["New York", "Los Angeles"]),
    ],
)
def test_hotwords_split_on_commas_or_else_spaces(given, words):
    assert TranscriptionOptions.parse({"hotwords": given}).hotwords == words
