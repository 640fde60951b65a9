"""Writers that turn a Transcript into the files users download: txt, json, srt, vtt.

Subtitle players show a cue as one or two lines for a few seconds, so long segments are
split into several cues (at punctuation where possible) and each cue gets its share of
the segment's time, following word timestamps when the segment has them.

A result split by channel (channels=split) labels each cue with its channel, "CH1: …",
and VTT also names it as the cue's voice (`<v CH1>`), which players do not show but
tools read; TXT is the transcript's dialogue text, one labelled line per turn. A
diarized result does the same with its speakers ("SPEAKER_1: …", `<v SPEAKER_1>`, or the
names they were given), and both together read "CH1 SPEAKER_1".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from tingxie.text import is_cjk
from tingxie.types import OptionsError, Segment, Transcript, channel_label

FORMATS = ("txt", "json", "srt", "vtt")
EXTENSIONS = {"txt": "txt", "json": "json", "srt": "srt", "vtt": "vtt"}  # file name ending, no dot

MAX_CUE_CHARS_CJK = 42  # two lines of 21, the usual Chinese subtitle width
MAX_CUE_CHARS = 84  # two lines of 42
MAX_CUE_SECONDS = 7.0


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str
    channel: int | None = None  # channels=split
    label: str = ""  # who says it: "CH1", "SPEAKER_1", a speaker's name (Transcript.label)

    @property
    def who(self) -> str:
        return self.label or (channel_label(self.channel) if self.channel else "")

    @property
    def labelled(self) -> str:
        return f"{self.who}: {self.text}" if self.who else self.text


def to_txt(t: Transcript) -> str:
    """The plain transcript, one newline at the end (nothing for an empty transcript)."""
    return t.text + "\n" if t.text else ""


def to_json(t: Transcript) -> str:
    """The canonical result, readable Chinese (no \\u escapes): the summary fields
    indented, then one segment per line. Indenting every word made an hour's transcript
    a file of 160 000 lines (1 200 this way), and 1.6× slower to write."""
    d = t.to_dict()
    segments = d.pop("segments")
    head = json.dumps(d, ensure_ascii=False, indent=2)
    lines = ",\n".join("    " + json.dumps(s, ensure_ascii=False) for s in segments)
    body = f'"segments": [\n{lines}\n  ]' if segments else '"segments": []'
    return f"{head[:-2]},\n  {body}\n}}"  # head ends "\n}": the segments go before it


def to_srt(t: Transcript) -> str:
    """SubRip: numbered cues from 1, times as 00:01:02,345."""
    blocks = [
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.labelled}\n"
        for i, c in enumerate(cues(t), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(t: Transcript) -> str:
    """WebVTT: header, times as 00:01:02.345, text escaped (&, <, > are markup there)."""
    blocks = [
        f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{_voice(c)}{_vtt_escape(c.labelled)}\n"
        for c in cues(t)
    ]
    return "\n".join(["WEBVTT\n", *blocks])


_WRITERS: dict[str, Callable[[Transcript], str]] = {
    "txt": to_txt,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
}


def render(t: Transcript, fmt: str) -> str:
    """The transcript in one of FORMATS; an unknown format is refused by name."""
    writer = _WRITERS.get(str(fmt).lower())
    if writer is None:
        raise OptionsError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return writer(t)


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _voice(c: Cue) -> str:
    return f"<v {_vtt_escape(c.who)}>" if c.who else ""


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------- cues


def cues(t: Transcript) -> list[Cue]:
    """Subtitle cues of the whole transcript, in time order, none empty."""
    out: list[Cue] = []
    for seg in t.segments:
        text = " ".join(seg.text.split())
        if text:
            found = _segment_cues(seg, text, is_cjk(t.language_of(seg.channel)))
            if t.speakers:
                label = t.label(seg.channel, seg.speaker)
                found = [replace(c, label=label) for c in found]
            out += found
    return out


def _segment_cues(seg: Segment, text: str, cjk: bool) -> list[Cue]:
    start, end = seg.start, max(seg.end, seg.start)
    limit = MAX_CUE_CHARS_CJK if cjk else MAX_CUE_CHARS
    pieces_needed = max(math.ceil(len(text) / limit), math.ceil((end - start) / MAX_CUE_SECONDS), 1)
    if pieces_needed == 1:
        return [Cue(start, end, text, seg.channel)]
    target = min(limit, max(1, math.ceil(len(text) / pieces_needed)))
    pieces = _pack(_clauses(text, cjk), target, cjk)
    time_at = _clock(seg, start, end)
    out, done = [], 0
    for piece in pieces:
        a = time_at(done / len(text))
        done += len(piece)
        out.append(Cue(a, time_at(done / len(text)), piece.strip(), seg.channel))
    return [c for c in out if c.text]


_CLAUSE_CJK = re.compile(r"[^，。！？；：、,.!?;:]+[，。！？；：、,.!?;:”」』）)]*\s*|[^\S\n]*\S")
_CLAUSE = re.compile(r".+?(?:[,.!?;:]+[\"')\]]*(?:\s+|$)|$)")


def _clauses(text: str, cjk: bool) -> list[str]:
    """The text cut after punctuation; pieces keep their punctuation and trailing space
    so that joining them gives the text back."""
    pattern = _CLAUSE_CJK if cjk else _CLAUSE
    return [m.group() for m in pattern.finditer(text) if m.group()]


def _pack(clauses: list[str], target: int, cjk: bool) -> list[str]:
    """Clauses joined greedily into pieces of at most `target` characters; a longer
    clause is cut between words (or between characters for CJK)."""
    pieces: list[str] = []
    current = ""
    for clause in clauses:
        for part in _hard_split(clause, target, cjk):
            if current and len(current.rstrip()) + len(part.rstrip()) > target:
                pieces.append(current)
                current = ""
            current += part
    if current:
        pieces.append(current)
    return pieces


def _hard_split(clause: str, size: int, cjk: bool) -> list[str]:
    if len(clause) <= size:
        return [clause]
    if cjk:
        return [clause[i : i + size] for i in range(0, len(clause), size)]
    parts, current = [], ""
    for word in re.findall(r"\S+\s*", clause):
        if current and len(current) + len(word.rstrip()) > size:
            parts.append(current)
            current = ""
        current += word
    return parts + [current] if current else parts


def _clock(seg: Segment, start: float, end: float) -> Callable[[float], float]:
    """Time at a fraction of the segment's text. With word timestamps, the fraction is
    mapped onto the words' characters, so pauses fall between cues, not inside them;
    the words read as the text does (script, ITN) but carry no punctuation, so
    fractions rather than character positions are matched."""
    words = [w for w in seg.words or [] if w.word.strip()]
    if not words:
        return lambda f: start + f * (end - start)
    lengths = [len(w.word.strip()) for w in words]
    total = sum(lengths)

    def at(fraction: float) -> float:
        goal, seen = fraction * total, 0
        for w, n in zip(words, lengths, strict=False):
            if seen + n >= goal:
                inside = (goal - seen) / n
                t = w.start + inside * (w.end - w.start) if inside < 1 else w.end
                return min(max(t, start), end)
            seen += n
        return end

    return at
