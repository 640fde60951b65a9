"""Data that flows between the pipeline stages.

audio (np.float32, 16 kHz mono) → vad (SpeechSpan) → windows (Window, ≤ 30 s of packed
speech) → engine (WindowResult, batched across requests) → text (Segment with raw and
final text) → Transcript (the canonical json result that the store keeps).

Every later part (scheduler, real-time lane, queue workers) passes these objects, so
they are plain dataclasses with no behaviour beyond (de)serialisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0


class TingxieError(Exception):
    """An error the user can act on; its message names the problem."""


class AudioError(TingxieError):
    """The input is missing, empty, corrupt, not audio, or has no audio stream."""


class OptionsError(TingxieError):
    """A bad option value, refused before any work starts; `param` names the option when
    one is at fault (the API's error `param`, as OpenAI's clients read it)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


ZhScript = Literal["hans", "hant", "keep"]  # Simplified, Traditional, or as decoded


@dataclass(frozen=True)
class SpeechSpan:
    """A stretch of speech, in samples at 16 kHz, absolute within its file."""

    start: int
    end: int

    @property
    def duration(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@dataclass
class VadOptions:
    """Silero VAD parameters. `max_speech_s` caps a segment; longer speech is cut at
    the quietest frame near the limit so no word is split."""

    threshold: float = 0.5
    # Measured on the eval set (bench/results/core.md): shorter silences or pads cut
    # words at span edges and cost accuracy; packing keeps windows full regardless.
    min_silence_ms: int = 2000
    speech_pad_ms: int = 300
    min_speech_ms: int = 200
    max_speech_s: float = 29.0


@dataclass
class DecodeOptions:
    """How a window is decoded. `language=None` means detect per file."""

    language: str | None = None
    task: str = "transcribe"
    beam_size: int = 5
    hotwords: list[str] = field(default_factory=list)
    initial_prompt: str | None = None
    word_timestamps: bool = False
    temperature: float = 0.0


@dataclass
class TextOptions:
    """Post-processing of model text: inverse text normalisation and Chinese script."""

    itn: bool = True
    zh_script: ZhScript = "hans"
    punctuate: bool = True  # Chinese punctuation (text.punctuate); raw_text keeps the model's


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float = 0.0


@dataclass
class Segment:
    """One recognised sentence-ish piece with absolute times in seconds.

    `raw_text` is what the model said; `text` is after ITN and script conversion, so
    ITN can be re-run from stored results without decoding again.
    """

    id: int
    start: float
    end: float
    text: str
    raw_text: str
    words: list[Word] | None = None
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    # "truncated", "repetition_cut"; "no_text": VAD speech here gave no text even when
    # retried (text is empty); "retried": recovered by that retry; "brackets",
    # "script", "loop": why the model's first text here was taken for junk; "skipped":
    # its times claimed speech its text never said (transcribe.skipped_speech)
    flags: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # SenseVoice: {"emotion": ..., "event": ...}
    channel: int | None = None  # channels=split: the file's channel (1-based) this was said on
    speaker: str | None = None  # diarize: the speaker's id, SPEAKER_1, SPEAKER_2… (Transcript.speakers)


def channel_label(channel: int) -> str:
    """How a channel is named in text, subtitles and the UI: CH1, CH2… Language-neutral
    on purpose: the same in a Chinese and an English transcript or UI."""
    return f"CH{channel}"


@dataclass
class Channel:
    """One channel of a channels=split result, transcribed on its own (so in its own
    language when none was given)."""

    channel: int  # 1-based
    language: str
    language_probability: float = 0.0


@dataclass
class Speaker:
    """A speaker diarization found: `id` is SPEAKER_1, SPEAKER_2… in order of first
    appearance; `name` is what text and subtitles call them (the id until renamed)."""

    id: str
    name: str


@dataclass(frozen=True)
class DiarizeOptions:
    """Who spoke when (diarize.py): a known speaker count, or bounds, and the clustering
    threshold (cosine distance under which two voices are one speaker)."""

    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    threshold: float = 0.5
    # known speakers to look for: (name, 16 kHz mono audio of their voice, or the
    # VoicePrint of an enrolled voice); a speaker whose voice matches one is given that
    # name (OpenAI's known_speaker_names[])
    known: tuple[tuple[str, Any], ...] = field(default=(), compare=False, repr=False)
    # enrolled names a job asked for that were deleted before it ran (a warning, not a failure)
    missing: tuple[str, ...] = field(default=(), compare=False)

    def record(self) -> dict[str, Any]:
        """What a transcript's options keep (names, not voices)."""
        d = {k: getattr(self, k) for k in ("num_speakers", "min_speakers", "max_speakers", "threshold")}
        if self.known or self.missing:
            d["known_speaker_names"] = [name for name, _ in self.known] + list(self.missing)
        return d


@dataclass(frozen=True)
class VoicePrint:
    """An enrolled voice's stored embedding (diarize.enrolled): compared as it is, where
    a reference clip is embedded first."""

    vector: Any


@dataclass
class Transcript:
    """The canonical result of one file (or one real-time session)."""

    language: str
    duration: float
    segments: list[Segment]
    language_probability: float = 0.0
    processing_time: float = 0.0
    model: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # Things the user must know about this result, e.g. detected speech that gave no
    # text (its segment is flagged "no_text"), or a damaged file only partly decoded;
    # counted as `warning_count` in json.
    warnings: list[str] = field(default_factory=list)
    # channels=split: one entry per channel, and every segment names its channel;
    # empty when the channels were mixed down
    channels: list[Channel] = field(default_factory=list)
    # diarize: every speaker found, in order of first appearance; segments name theirs
    speakers: list[Speaker] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The whole text; for split channels or diarized speakers a dialogue: one line
        per turn, each starting with its label ("CH1: …", "SPEAKER_1: …", "张三: …")."""
        said = [s for s in self.segments if s.text.strip()]
        if not self.channels and not self.speakers:
            return _sep(self.language).join(s.text.strip() for s in said)
        turns: list[tuple[tuple[int | None, str | None], list[str]]] = []
        for s in said:
            key = (s.channel, s.speaker)
            if not turns or turns[-1][0] != key:
                turns.append((key, []))
            turns[-1][1].append(s.text.strip())
        return "\n".join(f"{self.label(*key)}: {_sep(self.language_of(key[0])).join(texts)}" for key, texts in turns)

    def speaker_name(self, speaker: str | None) -> str:
        """What a speaker id is called in text and subtitles (its name once renamed)."""
        return next((sp.name for sp in self.speakers if sp.id == speaker), speaker or "")

    def label(self, channel: int | None, speaker: str | None) -> str:
        """A turn's label: "CH1", "SPEAKER_1", or "CH1 SPEAKER_1" when both apply."""
        parts = [channel_label(channel) if self.channels and channel else "", self.speaker_name(speaker)]
        return " ".join(p for p in parts if p)

    def language_of(self, channel: int | None) -> str:
        """The language of one channel's text (the file's when mixed)."""
        return next((c.language for c in self.channels if c.channel == channel), self.language)

    @property
    def rtf(self) -> float:
        return self.processing_time / self.duration if self.duration > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.channels:  # a mixed result reads as it did before channels existed
            del d["channels"]
            for s in d["segments"]:
                s.pop("channel", None)
        if not self.speakers:  # an undiarized result reads as it did before speakers existed
            del d["speakers"]
            for s in d["segments"]:
                s.pop("speaker", None)
        d["text"] = self.text
        d["rtf"] = round(self.rtf, 4)
        d["warning_count"] = len(self.warnings)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transcript:
        segments = []
        for s in d.get("segments", []):
            s = dict(s)
            words = s.pop("words", None)
            segments.append(Segment(**s, words=[Word(**w) for w in words] if words is not None else None))
        return cls(
            language=d["language"],
            duration=d["duration"],
            segments=segments,
            language_probability=d.get("language_probability", 0.0),
            processing_time=d.get("processing_time", 0.0),
            model=d.get("model", ""),
            options=d.get("options", {}),
            warnings=list(d.get("warnings", [])),
            channels=[Channel(**c) for c in d.get("channels", [])],
            speakers=[Speaker(**sp) for sp in d.get("speakers", [])],
        )


def _sep(language: str) -> str:
    return "" if language in ("zh", "ja", "yue") else " "


@dataclass(frozen=True)
class DeviceChoice:
    """Where and how a model runs; device.choose makes one (the one place that decides)."""

    device: str  # "cpu" | "cuda"
    index: int
    compute_type: str
    instances: int
    threads: int  # intra-op threads per instance (CPU only; 0 lets CTranslate2 decide)
    batch_size: int
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.device}:{self.index}" if self.device == "cuda" else "cpu"
