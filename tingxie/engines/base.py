"""What every recognizer declares and does, whatever its family.

The scheduler, pipeline, stream and API see a model only through `Recognizer`: it
decodes a batch of `Window`s into `WindowResult`s with absolute times, says which
windows may share a batch, and declares in a `ModelSpec` what it can do, so a request
for something it cannot do is refused before any work starts (`check_options`).
Streaming families also offer `open_stream()` for the real-time lane.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeGuard, runtime_checkable

import numpy as np

from ..types import DecodeOptions, OptionsError, Segment, TingxieError, VadOptions
from ..windows import Window


@dataclass
class WindowResult:
    """One decoded window. A family with more to say about a window subclasses it
    (Whisper's quality figures: engines/whisper/result.py; SenseVoice's tags:
    TaggedResult) and the shared code passes it through as it is."""

    segments: list[Segment]
    language: str
    language_probability: float
    tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    # how likely the window holds no speech, where the model says (0 otherwise); speech
    # left without text is reported with it (transcribe.recover)
    no_speech_prob: float = 0.0
    # windows decoded to give this result: the first pass plus any second looks
    # (fallbacks, continuations, retries of lost speech); the bench reports the share
    decodes: int = 1


class ModelError(TingxieError):
    """A model directory that cannot be served: unknown family, missing file or
    metadata. The message names what is missing, never the server's paths."""


@dataclass(frozen=True)
class Capabilities:
    segment_timestamps: bool = True
    word_timestamps: bool = False  # per-word (or per-character) times
    language_detection: bool = False
    punctuation: bool = False  # the model writes punctuation itself
    itn: bool = False  # the model writes numbers as digits itself
    hotwords: bool = False
    translation: bool = False  # task="translate" (to English)
    streaming: bool = False  # open_stream(): partials while audio arrives
    tags: bool = False  # emotion / audio-event tags (SenseVoice)
    # languages in which a model that punctuates writes none (Whisper's zh, yue): a site's
    # punctuation model fills them in (punctuated.py)
    unpunctuated_languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """What a model declares. `languages` empty means any language it detects."""

    family: str
    model_id: str
    languages: tuple[str, ...] = ()
    max_input_s: float = 30.0  # the longest window it takes
    capabilities: Capabilities = field(default_factory=Capabilities)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["languages"] = list(self.languages)
        return d


@dataclass(frozen=True)
class Family:
    """What a family folder (engines/<family>/) tells the registry about itself: how to
    recognise a model folder of its kind from file names and metadata (`detect`), what
    its loader would miss there (`check`: problems, each naming what is missing), its
    spec without loading (`describe`) and its loader (`factory`: model_id, path, choice,
    **options). `probe_in_child`: load it once in a child process first (sherpa-onnx
    ends the process on a model it cannot use). `cuda_devices`: how many CUDA devices
    the family's runtime can use, where it has a say in device discovery."""

    name: str
    detect: Callable[[Path], bool]
    check: Callable[[Path], list[str]]
    factory: Callable[..., Any]
    describe: Callable[[str, Path], ModelSpec]
    probe_in_child: bool = False
    cuda_devices: Callable[[], int] | None = None


@dataclass
class TaggedResult(WindowResult):
    """A window result with SenseVoice's tags (empty for families without them)."""

    emotion: str = ""  # e.g. "HAPPY", "NEUTRAL"
    event: str = ""  # e.g. "Speech", "BGM", "Laughter"


@runtime_checkable
class Recognizer(Protocol):
    """One loaded model. Thread-safe: workers call `decode` concurrently."""

    model_id: str

    @property
    def spec(self) -> ModelSpec: ...

    def decode(self, windows: list[Window]) -> list[WindowResult]:
        """One batch of windows (from any files and requests) → one result each, in
        order, with times absolute in each window's source."""
        ...

    def batch_key(self, window: Window) -> tuple:
        """Windows with equal keys may share one `decode` call."""
        ...

    def warm_up(self) -> None:
        """Run once before serving, so the first user does not pay for allocation."""
        ...


@runtime_checkable
class StreamSession(Protocol):
    """One live utterance on a streaming model: feed audio, read partials, finish."""

    def accept(self, samples: np.ndarray) -> None:
        """16 kHz mono float32 in [-1, 1]; decodes every chunk that is ready."""
        ...

    def partial(self) -> str:
        """The text so far (grows while audio arrives)."""
        ...

    def finish(self) -> str:
        """Flush the end of the audio and return the final text. The session is done."""
        ...


@runtime_checkable
class StreamingRecognizer(Recognizer, Protocol):
    def open_stream(self) -> StreamSession: ...


@runtime_checkable
class Punctuating(Protocol):
    """The punctuation family's model: text in, punctuated text out (no audio)."""

    def punctuate(self, text: str) -> str: ...


def check_options(spec: ModelSpec, options: DecodeOptions) -> None:
    """Refuse, naming it, anything the model cannot do (HTTP 400 in the API)."""
    caps = spec.capabilities
    name = f"model {spec.model_id} ({spec.family})"
    if options.task == "translate" and not caps.translation:
        raise OptionsError(f"{name} cannot translate; use task=transcribe")
    if options.word_timestamps and not caps.word_timestamps:
        raise OptionsError(f"{name} does not give word timestamps")
    if options.hotwords and not caps.hotwords:
        raise OptionsError(f"{name} does not support hotwords")
    if options.language and spec.languages and options.language not in spec.languages:
        known = ", ".join(spec.languages)  # every one: the caller needs the one to pick
        raise OptionsError(f"{name} does not recognise language {options.language!r}; it supports auto, {known}")


# -- optional abilities ------------------------------------------------------------------
# Beyond the protocol a recognizer may declare, by having the method, one of these; the
# pipeline asks with isinstance, so mypy sees every call, and a wrapper (punctuated.py)
# says which of them it forwards.
Submit = Callable[[Window], WindowResult]


@runtime_checkable
class Refines(Protocol):
    """A second look at a window's result, its extra decodes submitted through `submit`
    so they batch with everyone's windows (Whisper: temperature fallback, and decoding
    again what it left out at the end of a window)."""

    def refine(self, window: Window, result: WindowResult, submit: Submit) -> WindowResult: ...


@runtime_checkable
class TakesWholeRequests(Protocol):
    """Takes whole requests itself instead of windows (the reference pipeline,
    engines/whisper/reference.py), and decodes each real-time sentence whole after its
    endpoint (no parts while spoken, no early final), as the reference does."""

    model_id: str

    def transcribe_whole(
        self,
        audio: np.ndarray,
        decode: DecodeOptions,
        vad: VadOptions | None,
        on_progress: Callable[[float], None] | None = None,
    ) -> tuple[WindowResult, dict]: ...


@runtime_checkable
class EmptiesCache(Protocol):
    """Returns an accelerator's cached memory (CTranslate2 keeps freed CUDA blocks)."""

    def empty_cache(self) -> None: ...


def refine(engine: object, window: Window, result: WindowResult, submit: Submit) -> WindowResult:
    return engine.refine(window, result, submit) if isinstance(engine, Refines) else result


def takes_whole_requests(engine: object) -> TypeGuard[TakesWholeRequests]:
    return isinstance(engine, TakesWholeRequests)
