"""The calibration and validation halves of the speech we have.

Every tuned constant (levelling, VAD, retry and no-text rules, own-length thresholds, junk
guards, batch sizes, diarization thresholds) is chosen on the calibration half; docs and
notes quote the validation half, which stands in for recordings nobody here tuned on.

The halves are split by source (repository) and so by speaker: an utterance's half follows
from where it came from, never from how it scored. `../shared/eval-extra` was used for
nothing before the split and belongs wholly to validation, as does any new real speech that
appears in `../shared/` (an unknown source is validation). One overlap is known and kept:
the AISHELL sample repository's speaker S0150 has 20 calibration utterances in
`../shared/eval` and 15 validation utterances in `../shared/eval-extra`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

Half = Literal["calibration", "validation"]

# Repositories of ../shared/eval whose utterances the constants may be chosen on. Mandarin:
# the AISHELL sample (speaker S0150), FireRedASR's four test clips (AISHELL S0764, an
# in-car phrase, a meeting and a web video), CosyVoice's two prompts and FunASR's example;
# English: pocketsphinx's six clips and DeepSpeech's TIMIT sentence. Everything else —
# FireRedASR2S, FireRedTTS2, Fun-ASR, MOSS-TTSD, SoulX-Podcast, charsiu, gentle — and all of
# eval-extra is validation.
CALIBRATION_SOURCES = frozenset(
    {
        "QianZ423/kaldi-asr-aishell-sample",
        "FireRedTeam/FireRedASR",
        "FunAudioLLM/CosyVoice",
        "modelscope/FunASR",
        "cmusphinx/pocketsphinx",
        "mozilla/DeepSpeech",
    }
)
# sets whose every utterance is validation, whatever its source
VALIDATION_SETS = frozenset({"eval-extra"})


def source_repo(row: dict) -> str:
    """`owner/repo` of a manifest row's `source` (`owner/repo:path@commit`)."""
    return str(row.get("source", "")).split(":", 1)[0]


def half_of(row: dict, set_name: str = "eval") -> Half:
    """Which half a manifest row belongs to; `set_name` is the folder it came from."""
    if set_name in VALIDATION_SETS:
        return "validation"
    return "calibration" if source_repo(row) in CALIBRATION_SOURCES else "validation"


def split_rows(rows: Iterable[dict], set_name: str = "eval") -> dict[Half, list[dict]]:
    halves: dict[Half, list[dict]] = {"calibration": [], "validation": []}
    for r in rows:
        halves[half_of(r, set_name)].append(r)
    return halves


def shared_sets(shared: Path) -> list[tuple[str, Path]]:
    """The real-speech folders under `shared/` with a manifest, eval first."""
    return [(name, shared / name) for name in ("eval", "eval-extra") if (shared / name / "manifest.jsonl").is_file()]
