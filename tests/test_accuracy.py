"""Accuracy on real speech (../shared/eval): corpus CER for Mandarin and WER for English
must stay at or below thresholds set from measurement (bench/results/core.md: the serial
faster-whisper baseline scores 17.1 % / 5.6 %, tingxie 17.3 % / 5.6 % on this model)."""

from __future__ import annotations

import json

import pytest
from helpers import MODELS

from tingxie import models as models_mod
from tingxie.bench.score import error_rate
from tingxie.bench.split import half_of, shared_sets
from tingxie.transcribe import transcribe_many
from tingxie.types import DecodeOptions, TextOptions, VadOptions

# measured 16.67 % Mandarin with the word prior that chooses among a Mandarin window's beam
# hypotheses (17.60 % without it, session 22); 17.81 / 5.56 when the model first heard the
# recording as recorded (docs/accuracy.md:
# per-frame levelling read this set's Mandarin 1.2 points better and the validation half
# worse); the margin absorbs run-to-run differences of a word or two. The same code read
# this set's English at 7.54 % on an AVX-512 host (session 19: CTranslate2's kernels there
# hear gentle_lucier_long's "my speech" as "money's speech", and faster-whisper's own
# decode moves alike, 9.89 → 10.99 % on the calibration half), so English has the margin
# of a word or two above that.
THRESHOLDS = {"zh": 0.190, "en": 0.090}


@pytest.mark.eval
def test_error_rates_on_the_eval_set(corpus_dir, sched, record_property):
    """Bounds on ../shared/eval as a whole; shown for each half (tingxie.bench.split:
    constants are chosen on calibration, claims quote validation). ../shared/eval-extra
    (all validation) is `bench/accuracy.py`'s, beside the serial baseline: transcribing
    it here too cost CI a minute and a half on 2 cores and bounds nothing."""
    sets = [(name, folder) for name, folder in shared_sets(corpus_dir.parent) if name == "eval"]
    items = [
        {**m, "path": folder / m["audio"], "half": half_of(m, name), "set": name}
        for name, folder in sets
        for m in (json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines() if x.strip())
    ]
    # ITN off: references spell numbers out (the eval README's advice)
    outs = {
        o.index: o
        for o in transcribe_many(
            [m["path"] for m in items], sched, DecodeOptions(), VadOptions(), TextOptions(itn=False)
        )
    }
    assert all(o.error is None for o in outs.values()), [o.error for o in outs.values() if o.error]

    def rates(keep) -> dict[str, float]:
        out = {}
        for lang in ("zh", "en"):
            idx = [i for i, m in enumerate(items) if m["lang"] == lang and keep(m)]
            if idx:
                out[lang] = error_rate([items[i]["text"] for i in idx], [outs[i].transcript.text for i in idx], lang)
        return out

    groups = {
        "calibration": rates(lambda m: m["half"] == "calibration"),
        "validation": rates(lambda m: m["half"] == "validation"),
        "whole": rates(lambda m: True),
    }
    eval_set = rates(lambda m: m["set"] == "eval")
    shown = "; ".join(
        f"{name}: zh CER {r.get('zh', float('nan')):.2%}, en WER {r.get('en', float('nan')):.2%}"
        for name, r in groups.items()
    )
    # shown after the run (conftest.pytest_terminal_summary), also from an xdist worker
    record_property(
        "summary",
        f"{' + '.join(n for n, _ in sets)}: {shown}; eval set: zh CER {eval_set['zh']:.2%} "
        f"(≤ {THRESHOLDS['zh']:.0%}), en WER {eval_set['en']:.2%} (≤ {THRESHOLDS['en']:.0%})",
    )
    for lang, limit in THRESHOLDS.items():
        assert eval_set[lang] <= limit, f"{lang} error rate {eval_set[lang]:.2%} above {limit:.0%}"


def test_packaged_english_is_no_worse_than_the_serial_baseline(sched, tmp_path):
    """Real English from installed packages (Debian pocketsphinx-testdata: cards, a robot
    command, digits), through the file path and as a synchronous API request (the
    interactive lane), against faster-whisper's serial transcribe on the same model.
    Own-length encoding in the interactive lane lost words here (9.5 points worse)."""
    from faster_whisper import WhisperModel

    from tingxie.bench.corpus import packaged_english, write_wav
    from tingxie.scheduler import INTERACTIVE
    from tingxie.transcribe import transcribe

    clips, why = packaged_english()
    if not clips:
        pytest.skip(why)
    paths = [tmp_path / f"{c.id}.wav" for c in clips]
    for c, path in zip(clips, paths, strict=True):
        write_wav(path, c.audio)
    refs = [c.text for c in clips]
    model = WhisperModel(str(models_mod.assemble_bundled(MODELS)), device="cpu", compute_type="int8")
    serial = ["".join(s.text for s in model.transcribe(str(p), beam_size=5, vad_filter=True)[0]) for p in paths]
    opts = (DecodeOptions(), VadOptions(), TextOptions(itn=False))
    files = {o.index: o.transcript.text for o in transcribe_many(paths, sched, *opts)}
    sync = [transcribe(p, sched, *opts, lane=INTERACTIVE).text for p in paths]
    base = error_rate(refs, serial, "en")
    margin = 0.05  # one word of the 21
    assert error_rate(refs, [files[i] for i in range(len(paths))], "en") <= base + margin, (serial, files)
    assert error_rate(refs, sync, "en") <= base + margin, (serial, sync)
