"""Transcript writers: txt, json, srt, vtt."""

from __future__ import annotations

import html
import json
import re

import pytest

from tingxie.output import EXTENSIONS, FORMATS, render, to_json, to_srt, to_txt, to_vtt
from tingxie.types import OptionsError, Segment, Transcript, Word

LONG_ZH = (
    "今天我们来讨论一下公司的年度预算问题，首先请财务部门介绍一下今年的收入情况，"
    "然后我们再讨论明年的支出计划，最后大家一起投票决定。"
)


def seg(i: int, start: float, end: float, text: str, words: list[Word] | None = None) -> Segment:
    return Segment(id=i, start=start, end=end, text=text, raw_text=text, words=words)


def zh_transcript() -> Transcript:
    return Transcript(
        language="zh",
        duration=20.0,
        segments=[
            seg(0, 0.0, 3.2, "你好，世界。"),
            seg(1, 3.5, 18.0, LONG_ZH),
            seg(2, 18.0, 18.5, "   "),
            seg(3, 18.5, 19.9, "再见"),
        ],
    )


SRT_BLOCK = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+)")


def seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def parse_srt(srt: str) -> list[tuple[int, float, float, str]]:
    blocks = srt.strip("\n").split("\n\n")
    parsed = []
    for block in blocks:
        m = SRT_BLOCK.fullmatch(block)
        assert m, f"not an SRT block: {block!r}"
        parsed.append((int(m[1]), seconds(m[2]), seconds(m[3]), m[4]))
    return parsed


def test_srt_parses_back_numbered_and_monotonic() -> None:
    cues = parse_srt(to_srt(zh_transcript()))
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1))
    for (_, a, b, _), (_, c, _, _) in zip(cues, cues[1:], strict=False):
        assert a <= b <= c
    assert "".join(c[3] for c in cues) == zh_transcript().text  # nothing lost or repeated
    assert cues[0][1:3] == (0.0, 3.2)
    assert cues[-1][1:] == (18.5, 19.9, "再见")


def test_long_segment_splits_at_punctuation_within_limits() -> None:
    cues = parse_srt(to_srt(zh_transcript()))
    long_cues = [c for c in cues if 3.5 <= c[1] < 18.0]
    assert len(long_cues) >= 3
    assert long_cues[0][1] == 3.5 and long_cues[-1][2] == 18.0
    for _, start, end, text in long_cues:
        assert len(text) <= 42 and end - start <= 7.0
    assert all(text[-1] in "，。" for _, _, _, text in long_cues)
    assert [c[3] for c in long_cues][0] == "今天我们来讨论一下公司的年度预算问题，"


def test_long_english_segment_splits_between_words() -> None:
    words = "one two three four five six seven eight nine ten " * 12
    t = Transcript("en", 30.0, [seg(0, 0.0, 30.0, words.strip())])
    cues = parse_srt(to_srt(t))
    assert len(cues) >= 5  # 30 s needs at least five cues of ≤ 7 s
    assert " ".join(c[3] for c in cues) == words.strip()
    for _, start, end, text in cues:
        assert len(text) <= 84 and end - start <= 7.0
        assert not text.startswith(" ") and "  " not in text


def test_split_times_follow_word_timestamps() -> None:
    """A long pause between two clauses lands between the cues, not inside one."""
    words = [
        Word(0.0, 0.8, "第一句话"),
        Word(0.8, 1.6, "说完了，"),
        Word(12.0, 13.0, "第二句话"),
        Word(13.0, 14.0, "很久以后。"),
    ]
    t = Transcript("zh", 14.0, [seg(0, 0.0, 14.0, "第一句话说完了，第二句话很久以后。", words)])
    cues = parse_srt(to_srt(t))
    assert [c[3] for c in cues] == ["第一句话说完了，", "第二句话很久以后。"]
    assert cues[0][2] == pytest.approx(1.6, abs=0.05)
    assert cues[1][1] == pytest.approx(1.6, abs=0.05) and cues[1][2] == 14.0


def test_srt_timestamp_format_and_empty_segments_skipped() -> None:
    t = Transcript(
        "en", 4000.0, [seg(0, 3723.456, 3725.0, "Hello."), seg(1, 3725.0, 3726.0, ""), seg(2, 3726.0, 3727.5, "Bye.")]
    )
    assert to_srt(t) == ("1\n01:02:03,456 --> 01:02:05,000\nHello.\n\n2\n01:02:06,000 --> 01:02:07,500\nBye.\n")


def test_vtt() -> None:
    t = Transcript("en", 5.0, [seg(0, 1.5, 2.25, "a <b> & c"), seg(1, 62.0, 63.0, "next")])
    assert to_vtt(t) == (
        "WEBVTT\n\n00:00:01.500 --> 00:00:02.250\na &lt;b&gt; &amp; c\n\n00:01:02.000 --> 00:01:03.000\nnext\n"
    )
    assert to_vtt(zh_transcript()).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:03.200\n你好，世界。\n")


def test_txt() -> None:
    assert to_txt(zh_transcript()) == "你好，世界。" + LONG_ZH + "再见\n"
    t = Transcript("en", 3.0, [seg(0, 0, 1, " Hello there. "), seg(1, 1, 2, "General Kenobi.")])
    assert to_txt(t) == "Hello there. General Kenobi.\n"
    assert to_txt(Transcript("en", 1.0, [])) == ""


def test_json_round_trips_and_keeps_chinese_readable() -> None:
    t = zh_transcript()
    out = to_json(t)
    assert "你好" in out
    data = json.loads(out)
    assert data["text"] == t.text and data["language"] == "zh"
    assert Transcript.from_dict(data) == t
    # one line per segment, not one per field of every word: an hour stays a readable file
    assert sum(line.lstrip().startswith('{"id": ') for line in out.splitlines()) == len(t.segments) > 1


VTT_CUE = re.compile(r"(\d\d:\d\d:\d\d\.\d\d\d) --> (\d\d:\d\d:\d\d\.\d\d\d)\n(.+)")


def parse_vtt(vtt: str) -> list[tuple[float, float, str]]:
    header, _, body = vtt.partition("\n\n")
    assert header == "WEBVTT", header
    parsed = []
    for block in body.strip("\n").split("\n\n"):
        m = VTT_CUE.fullmatch(block)
        assert m, f"not a WebVTT cue: {block!r}"
        parsed.append((seconds(m[1]), seconds(m[2]), html.unescape(m[3])))
    return parsed


def test_every_format_renders_a_file_that_reads_back() -> None:
    """Each format the CLI and API offer gives output a reader of that format accepts,
    holding the whole text, whatever the case of the format's name; an unknown format is
    refused, naming the choices."""
    t = zh_transcript()
    readers = {
        "txt": lambda out: out.rstrip("\n"),
        "json": lambda out: Transcript.from_dict(json.loads(out)).text,
        "srt": lambda out: "".join(c[3] for c in parse_srt(out)),
        "vtt": lambda out: "".join(c[2] for c in parse_vtt(out)),
    }
    for fmt in FORMATS:
        assert readers[fmt](render(t, fmt.upper())) == t.text, fmt  # a format without a reader here fails too
        assert re.fullmatch(r"[a-z0-9]+", EXTENSIONS[fmt]), fmt  # the CLI writes stem + "." + extension
    with pytest.raises(OptionsError, match="docx") as e:
        render(t, "docx")
    assert all(f in str(e.value) for f in FORMATS)
