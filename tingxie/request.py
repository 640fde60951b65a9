"""The one declaration of a transcription request's options.

Every way in — the OpenAI and jobs form fields, the CLI flags, the real-time stream's
first message, the FunASR adapter and the options stored with a job — is derived from
`TranscriptionOptions`, so an option is named, bounded and described in one place and
every caller gets the same error for the same bad value.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any, Literal, Self, get_args, get_origin

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .types import DecodeOptions, DiarizeOptions, OptionsError, TextOptions, VadOptions, ZhScript

_VAD = VadOptions()
_DIARIZE = DiarizeOptions()
MAX_KNOWN_SPEAKERS = 4  # names one request may look for (OpenAI's bound)
MAX_SPEAKER_NAME = 64  # characters of an enrolled or known speaker's name


def _in_validator(parse: Callable[[Any], Any], value: Any) -> Any:
    """An options parser run inside a field validator: its OptionsError becomes a
    ValueError, which pydantic reports against the field (the API error's `param`)."""
    try:
        return parse(value)
    except OptionsError as e:
        raise ValueError(str(e)) from None


class _Common(BaseModel):
    """Options every way of transcribing takes (files, jobs, requests, streams)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    language: str | None = Field(None, description="language code (zh, en, …); empty or auto: detect per file")
    hotwords: list[str] = Field(
        default_factory=list, description='words to favour, separated by commas or spaces: "七牛,云存储"'
    )
    itn: bool = Field(True, description="write numbers, dates and times as digits (inverse text normalisation)")
    zh_script: ZhScript = Field("hans", description="Chinese script: Simplified, Traditional, or as decoded")
    # A stream's finals are decoded like a file's windows; its partials stay greedy.
    beam_size: int = Field(5, ge=1, le=10, description="beam width of the final decode")
    prompt: str | None = Field(
        None,
        max_length=1000,
        validation_alias=AliasChoices("prompt", "initial_prompt"),
        description="text that precedes the audio",
    )
    vad_threshold: float = Field(
        _VAD.threshold, gt=0.0, lt=1.0, description="speech probability above which a frame is speech"
    )
    vad_speech_pad_ms: int = Field(
        _VAD.speech_pad_ms, ge=0, le=2000, description="audio kept around each speech span (ms)"
    )

    @field_validator("language", mode="before")
    @classmethod
    def _language(cls, v: Any) -> str | None:
        from .options import parse_language

        if v is not None and not isinstance(v, str):
            raise ValueError("must be a language code such as zh or en")
        return _in_validator(parse_language, v)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, v: Any) -> str | None:
        return v or None

    @field_validator("hotwords", mode="before")
    @classmethod
    def _hotwords(cls, v: Any) -> list[str]:
        from .options import parse_hotwords

        if v is not None and not isinstance(v, (str, list)):
            raise ValueError("must be a string or a list of strings")
        return _in_validator(parse_hotwords, v)

    @classmethod
    def parse(cls, data: dict[str, Any], known_only: bool = False) -> Self:
        """Validate `data`; any problem is an OptionsError naming the option."""
        if not isinstance(data, dict):
            raise OptionsError("options must be a JSON object")
        if known_only:
            unknown = sorted(set(data) - option_names(cls) - {"initial_prompt", "type"})
            if unknown:
                raise OptionsError(
                    f"unknown option(s): {', '.join(unknown)}; known: {', '.join(sorted(option_names(cls)))}"
                )
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            loc = e.errors()[0].get("loc", ())
            raise OptionsError(describe(e, cls), str(loc[0]) if loc else None) from None


class TranscriptionOptions(_Common):
    """Options of one transcription of a file (CLI, OpenAI API, jobs)."""

    task: Literal["transcribe", "translate"] = Field(
        "transcribe", description="translate: English text from any language"
    )
    word_timestamps: bool = Field(False, description="a start and end time for every word")
    channels: Literal["mix", "split"] = Field(
        "mix",
        description="split: each channel on its own (call recordings: agent and customer),"
        " segments labelled CH1, CH2… in time order; mix: mixed down to one",
    )
    temperature: float = Field(
        0.0, ge=0.0, le=1.0, description="sampling temperature of the first decode (0: beam search)"
    )
    vad: bool = Field(True, description="decode only the speech that voice activity detection finds")
    vad_min_silence_ms: int = Field(
        _VAD.min_silence_ms, ge=0, le=10000, description="silence that ends a speech span (ms)"
    )
    vad_max_segment_s: float = Field(
        _VAD.max_speech_s, ge=1.0, le=30.0, description="longest speech span; longer ones are cut"
    )

    diarize: bool = Field(
        False,
        description="who spoke when: segments labelled SPEAKER_1, SPEAKER_2… in order of first appearance"
        " (needs the diarization models: tingxie models --prepare diarization)",
    )
    num_speakers: int | None = Field(None, ge=1, le=32, description="diarize: exactly this many speakers, when known")
    min_speakers: int | None = Field(None, ge=1, le=32, description="diarize: at least this many speakers")
    max_speakers: int | None = Field(None, ge=1, le=32, description="diarize: at most this many speakers")
    speaker_threshold: float = Field(
        _DIARIZE.threshold,
        gt=0.0,
        lt=2.0,
        description="diarize: clustering threshold (cosine distance); higher finds fewer speakers",
    )

    known_speaker_names: list[str] = Field(
        default_factory=list,
        validation_alias=AliasChoices("known_speaker_names", "known_speaker_names[]"),
        description="diarize: names of enrolled voices (POST /api/speakers) to look for; on /v1/audio/transcriptions"
        " with known_speaker_references[] the people those clips are of. A matching speaker is given the name;"
        f" implies diarize (at most {MAX_KNOWN_SPEAKERS})",
    )

    @field_validator("known_speaker_names", mode="before")
    @classmethod
    def _names(cls, v: Any) -> list[str]:
        if v is None or v == "":
            return []
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(n, str) for n in v):
            raise ValueError("must be a list of names")
        names = [n.strip() for n in v]
        if not all(names) or any(len(n) > MAX_SPEAKER_NAME for n in names):
            raise ValueError(f"option known_speaker_names: each name 1–{MAX_SPEAKER_NAME} characters")
        if len(names) > MAX_KNOWN_SPEAKERS or len(set(names)) != len(names):
            raise ValueError(f"option known_speaker_names: at most {MAX_KNOWN_SPEAKERS} distinct names")
        return names

    @field_validator("num_speakers", "min_speakers", "max_speakers", mode="before")
    @classmethod
    def _count(cls, v: Any) -> Any:
        return None if v == "" else v

    @model_validator(mode="after")
    def _speakers(self) -> Self:
        if self.known_speaker_names:  # looking for named people is diarizing
            self.diarize = True
        counted = [n for n in ("num_speakers", "min_speakers", "max_speakers") if getattr(self, n) is not None]
        if counted and not self.diarize:
            raise ValueError(f"option {counted[0]} needs diarize=true")
        if self.num_speakers is not None and (self.min_speakers is not None or self.max_speakers is not None):
            raise ValueError("option num_speakers excludes min_speakers and max_speakers: give one or the bounds")
        if self.min_speakers is not None and self.max_speakers is not None and self.min_speakers > self.max_speakers:
            raise ValueError(
                f"option min_speakers ({self.min_speakers}) must not exceed max_speakers ({self.max_speakers})"
            )
        if self.diarize and self.channels == "split":
            # each channel of a call is one party already; diarizing every channel as well
            # is not built (docs/diarization.md)
            raise ValueError("option diarize takes channels=mix: a split channel is already one party")
        return self

    def diarization(self) -> DiarizeOptions | None:
        """What diarize.py takes; None when not asked for."""
        if not self.diarize:
            return None
        return DiarizeOptions(
            num_speakers=self.num_speakers,
            min_speakers=self.min_speakers,
            max_speakers=self.max_speakers,
            threshold=self.speaker_threshold,
        )

    def pipeline(self) -> tuple[DecodeOptions, VadOptions | None, TextOptions]:
        """The stage options the pipeline takes."""
        decode = DecodeOptions(
            language=self.language,
            task=self.task,
            beam_size=self.beam_size,
            hotwords=list(self.hotwords),
            initial_prompt=self.prompt,
            word_timestamps=self.word_timestamps,
            temperature=self.temperature,
        )
        vad = None
        if self.vad:
            vad = VadOptions(
                threshold=self.vad_threshold,
                min_silence_ms=self.vad_min_silence_ms,
                speech_pad_ms=self.vad_speech_pad_ms,
                max_speech_s=min(self.vad_max_segment_s, 29.0),
            )
        return decode, vad, TextOptions(itn=self.itn, zh_script=self.zh_script)

    def stored(self) -> dict[str, Any]:
        """What a job row keeps (parse() reads it back)."""
        return self.model_dump()


class StreamOptions(_Common):
    """The first message of a real-time stream (/v1/stream). JSON types are strict here:
    `"itn": "yes"` is refused, not guessed."""

    model_config = ConfigDict(extra="ignore", strict=True)

    sample_rate: Literal[8000, 16000, 24000, 44100, 48000] = Field(
        16000, description="rate of the PCM16 mono audio sent"
    )
    partials: bool = Field(True, description="send partial results while a sentence is spoken")
    # 600 ms measured on the eval corpus with Silero v6 (docs/streaming.md): no utterance is
    # split by its own pauses at 600 ms and above, 300 ms splits some; each extra 100 ms
    # adds 100 ms to every final. The reference system waits ~1500 ms.
    endpoint_silence_ms: int = Field(600, ge=100, le=10000, description="silence that ends a sentence (ms)")
    max_sentence_s: float = Field(30.0, ge=2, le=30, description="longest sentence before it is cut")
    partial_interval_ms: int = Field(600, ge=100, le=10000, description="how often partials are decoded (ms)")
    save_audio: bool = Field(False, description="keep the session's audio in the history")
    model: str | None = Field(None, description="a model id; none: the server's default")

    @field_validator("max_sentence_s", mode="before")
    @classmethod
    def _seconds(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        return v or None

    def record(self) -> dict[str, Any]:
        return self.model_dump()


def option_names(model: type[BaseModel] = TranscriptionOptions) -> set[str]:
    return set(model.model_fields)


def describe(e: ValidationError, model: type[BaseModel] = TranscriptionOptions) -> str:
    """One line naming the first bad option and what it takes."""
    err = e.errors()[0]
    name = ".".join(str(x) for x in err.get("loc", ())) or "options"
    ctx = err.get("ctx") or {}
    value = err.get("input")
    kind = err.get("type", "")
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        field = model.model_fields.get(name)
        lo, hi = _bounds(field) if field else (None, None)
        if lo is not None and hi is not None:
            return f"option {name} must be between {lo} and {hi}, not {value!r}"
    if kind == "literal_error":
        return f"option {name} must be {ctx.get('expected', 'one of the allowed values')}, not {value!r}"
    if kind == "value_error":
        msg = str(ctx.get("error", err.get("msg", "")))
        return msg if msg.startswith(("unknown", "hotwords", "option")) else f"option {name} {msg}"
    if kind == "string_too_long":
        return f"option {name}: at most {ctx.get('max_length')} characters"
    return f"option {name}: {err.get('msg', 'invalid')} (got {value!r})"


def _bounds(field: Any) -> tuple[Any, Any]:
    lo = hi = None
    for m in field.metadata:
        lo = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else getattr(m, "gt", lo)
        hi = getattr(m, "le", None) if getattr(m, "le", None) is not None else getattr(m, "lt", hi)
        if lo is not None and hi is not None:
            break
    return lo, hi


# -- HTTP forms ----------------------------------------------------------------------------
# The VAD's settings, the fields /api/vad (the VAD page's preview) takes.
VAD_FIELDS = ("vad_threshold", "vad_min_silence_ms", "vad_speech_pad_ms", "vad_max_segment_s")


def as_form(
    model: type[TranscriptionOptions] = TranscriptionOptions,
    exclude: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
) -> Callable[..., TranscriptionOptions]:
    """A FastAPI dependency taking each option (or `only` these) as a form field (typed
    and described in /docs) and returning the validated options; a bad value is the same
    OptionsError (400) as everywhere else."""
    from fastapi import Form

    params = []
    for name, f in model.model_fields.items():
        if name in exclude or (only is not None and name not in only):
            continue
        default = f.get_default(call_default_factory=True)
        kind = f.annotation if f.annotation in (int, float, bool) else str | None
        form = Form(default, description=f.description)
        if name == "hotwords":
            form = Form(None, description=f.description)
        if name == "known_speaker_names":  # a repeated field, named as OpenAI names it
            kind, form = list[str] | None, Form(None, alias="known_speaker_names[]", description=f.description)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=form))

    def dependency(**fields: Any) -> TranscriptionOptions:
        return model.parse(fields)

    dependency.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return dependency


# -- the command line -------------------------------------------------------------------------
_CLI_GROUPS = {"vad": "voice activity detection"}
_CLI_ALIASES = {"prompt": ["--initial-prompt"]}


def add_cli_arguments(p: argparse.ArgumentParser, model: type[BaseModel] = TranscriptionOptions) -> None:
    """One flag per option: `--beam-size 5`, `--word-timestamps`, `--no-itn`, `--vad off`."""
    groups = {"": p.add_argument_group("recognition")}
    for title in _CLI_GROUPS.values():
        groups[title] = p.add_argument_group(title)
    for name, f in model.model_fields.items():
        if name == "known_speaker_names":
            continue  # the CLI has no enrolled voices: `--speaker NAME=clip.wav` (cli.py) gives clips
        group = groups[_CLI_GROUPS.get(name.split("_")[0], "")]
        flag = "--" + name.replace("_", "-")
        help_ = f.description
        if name == "vad":
            group.add_argument(flag, default="on", choices=["on", "off"], help="off: decode fixed 30 s windows")
        elif f.annotation is bool or f.annotation == "bool":
            if f.default:
                group.add_argument(
                    "--no-" + name.replace("_", "-"),
                    dest=name,
                    action="store_false",
                    default=True,
                    help=f"do not {help_}",
                )
            else:
                group.add_argument(flag, dest=name, action="store_true", default=False, help=help_)
        elif name == "hotwords":
            group.add_argument(flag, default="", help=help_)
        else:
            choices = get_args(f.annotation) if get_origin(f.annotation) is Literal else None
            default = None if f.default is None else f.default
            # str: the text as given, which is what argparse does without a type
            kind: Callable[[str], Any] = int if f.annotation is int else float if f.annotation is float else str
            group.add_argument(
                flag,
                *_CLI_ALIASES.get(name, []),
                dest=name,
                default=default,
                choices=choices or None,
                type=kind,
                help=f"{help_} (default {default})" if default is not None else help_,
            )


def from_cli(
    args: argparse.Namespace, model: type[TranscriptionOptions] = TranscriptionOptions
) -> TranscriptionOptions:
    data = {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}
    if "vad" in data:
        data["vad"] = data["vad"] not in ("off", False)
    if isinstance(data.get("language"), str) and data["language"].lower() == "auto":
        data["language"] = None
    return model.parse(data)
