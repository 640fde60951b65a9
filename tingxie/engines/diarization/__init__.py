"""Speaker diarization through sherpa-onnx: a pyannote segmentation model finds who
speaks when within 10 s windows, a speaker-embedding model (3D-Speaker CAM++) turns each
local speaker into a voice print, and agglomerative clustering joins the prints into the
file's speakers. The models are found and checked by `find.find_diarization` and
probed in a child process before they are loaded here.

Memory: sherpa-onnx takes a whole array and clusters every window's voice prints at
once (measured ~100 MB fixed plus ~15 MB per minute of audio in one pass), so
diarize.turns_of gives it pieces of ~10 minutes and joins their speakers by voice print
(docs/diarization.md). `tingxie models --prepare diarization` makes the models (prepare.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...types import SAMPLE_RATE, DiarizeOptions, OptionsError
from ..base import ModelError

# Clustering threshold (types.DiarizeOptions, the request's speaker_threshold), chosen on
# the calibration half of bench/diarization.py's joined-speaker recordings.
DEFAULT_THRESHOLD = DiarizeOptions().threshold
HOW_TO_ADD = "add them with `tingxie models --prepare diarization` (see docs/diarization.md)"


@dataclass(frozen=True)
class Turn:
    """A stretch of one speaker's speech; `speaker` is the clusterer's 0-based index
    (numbered for users by first appearance in diarize.py)."""

    start: float
    end: float
    speaker: int


class Diarizer:
    """One loaded pair of models. `process` may be called from several threads: calls
    are serialised (sherpa-onnx's diarizer holds one clustering config)."""

    def __init__(self, segmentation: Path, embedding: Path, threads: int = 1):
        try:
            import sherpa_onnx
        except ImportError as e:
            raise ModelError("diarization needs sherpa-onnx: EXTRAS='[sherpa]' bash scripts/install.sh") from e
        self._sherpa = sherpa_onnx
        self.segmentation, self.embedding, self.threads = segmentation, embedding, threads
        self._lock = threading.Lock()
        self._extractor: Any = None
        self._sd = sherpa_onnx.OfflineSpeakerDiarization(self._config(-1, DEFAULT_THRESHOLD))

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The voice print of 16 kHz mono audio of one speaker (the embedding model)."""
        with self._lock:
            if self._extractor is None:
                s = self._sherpa
                self._extractor = s.SpeakerEmbeddingExtractor(
                    s.SpeakerEmbeddingExtractorConfig(model=str(self.embedding), num_threads=self.threads)
                )
            stream = self._extractor.create_stream()
            stream.accept_waveform(SAMPLE_RATE, np.ascontiguousarray(audio, dtype=np.float32))
            stream.input_finished()
            return np.asarray(self._extractor.compute(stream), dtype=np.float32)

    def _config(self, num_clusters: int, threshold: float):
        s = self._sherpa
        return s.OfflineSpeakerDiarizationConfig(
            segmentation=s.OfflineSpeakerSegmentationModelConfig(
                pyannote=s.OfflineSpeakerSegmentationPyannoteModelConfig(model=str(self.segmentation)),
                num_threads=self.threads,
            ),
            embedding=s.SpeakerEmbeddingExtractorConfig(model=str(self.embedding), num_threads=self.threads),
            clustering=s.FastClusteringConfig(num_clusters=num_clusters, threshold=threshold),
            min_duration_on=0.3,
            min_duration_off=0.5,
        )

    def _run(self, audio: np.ndarray, num_clusters: int, threshold: float, progress) -> list[Turn]:
        self._sd.set_config(self._config(num_clusters, threshold))

        def callback(done: int, total: int) -> int:
            if progress is not None and total:
                progress(done / total)
            return 0

        result = self._sd.process(audio, callback=callback).sort_by_start_time()
        return [Turn(float(r.start), float(r.end), int(r.speaker)) for r in result]

    def process(
        self,
        audio: np.ndarray,
        opts: DiarizeOptions | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> list[Turn]:
        """Turns of a 16 kHz mono float32 recording, in time order. With min/max
        speakers the threshold's answer is kept when it lies within them, else the
        clustering is redone with the nearest bound as the speaker count."""
        opts = opts or DiarizeOptions()
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if len(audio) < SAMPLE_RATE // 2:
            return []
        with self._lock:
            if opts.num_speakers:
                return self._run(audio, opts.num_speakers, opts.threshold, progress)
            turns = self._run(audio, -1, opts.threshold, progress)
            found = len({t.speaker for t in turns})
            if opts.min_speakers and found < opts.min_speakers:
                return self._run(audio, opts.min_speakers, opts.threshold, progress)
            if opts.max_speakers and found > opts.max_speakers:
                return self._run(audio, opts.max_speakers, opts.threshold, progress)
            return turns


def available(models_dir: Path | None = None) -> None:
    """OptionsError (400) naming how to add the models when this server has none."""
    from . import find

    if models_dir is None:
        from ...settings import get_settings

        models_dir = get_settings().models_dir
    if find.find_diarization(models_dir) is None:
        raise OptionsError(f"this server has no speaker diarization models; {HOW_TO_ADD}", "diarize")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


_LOADED: dict[tuple[str, str], Diarizer] = {}
_LOAD_LOCK = threading.Lock()


def diarizer(models_dir: Path, threads: int = 1) -> Diarizer:
    """The diarizer of the models under `models_dir`, loaded once per process after a
    probe in a child process; OptionsError (400) naming how to add them when absent."""
    from . import find

    found = find.find_diarization(models_dir)
    if found is None:
        raise OptionsError(f"this server has no speaker diarization models; {HOW_TO_ADD}", "diarize")
    key = (str(found.segmentation), str(found.embedding))
    with _LOAD_LOCK:
        if key not in _LOADED:
            find.probe_diarization(found)
            _LOADED[key] = Diarizer(found.segmentation, found.embedding, threads)
        return _LOADED[key]
