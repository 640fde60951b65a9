"""What the model hears is what was said (issue 28 §1): levelling lifts quiet speech for
the VAD frame by frame, but the model gets the recording as recorded, or one constant
gain for a whole window whose speech is quiet. Real speech from ../shared/eval, cut into
windows the way a file is (decode, VAD, pack)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_wav

from tingxie import audio as audio_mod
from tingxie import level
from tingxie.transcribe import prepare
from tingxie.types import DecodeOptions, VadOptions

# an ordinary read recording peaking at −6 dBFS, where the old per-frame gain reached 10–32 dB
NORMAL = "pocketsphinx_librivox_0890"


@pytest.fixture(scope="module")
def normal_wav(corpus_dir):
    path = corpus_dir / f"{NORMAL}.wav"
    if not path.is_file():
        pytest.skip(f"{path.name} not in the eval corpus")
    return path


def _recorded(audio: np.ndarray, w) -> np.ndarray:
    return np.concatenate([audio[p.start : p.start + p.length] for p in w.pieces])


def test_a_normal_recording_reaches_the_model_exactly_as_decoded(normal_wav):
    audio = audio_mod.decode(normal_wav)
    p = prepare(normal_wav, DecodeOptions(language="en"), VadOptions())
    assert p.windows, "the VAD found no speech in an ordinary recording"
    for w in p.windows:
        assert np.array_equal(w.samples(), _recorded(audio, w))  # the encoder's input (engine.decode)
    # the old model input, the per-frame levelled samples, was not the recording
    assert not np.allclose(level.level(audio), audio)


@pytest.mark.parametrize("attenuation_db", [30, 40])
def test_a_quiet_window_gets_one_constant_gain(normal_wav, tmp_path, attenuation_db):
    """The same recording 30–40 dB down (peak −36…−46 dBFS): the VAD still finds it, and
    every window the model hears is the recording times one gain, not a gain per frame."""
    quiet = audio_mod.decode(normal_wav) * np.float32(10 ** (-attenuation_db / 20))
    path = write_wav(tmp_path / "quiet.wav", quiet)
    audio = audio_mod.decode(path)
    p = prepare(path, DecodeOptions(language="en"), VadOptions())
    assert p.speech_seconds > 0.5 * len(audio) / 16000, "the quiet speech was not found"
    for w in p.windows:
        heard, recorded = w.samples(), _recorded(audio, w)
        loud = np.abs(recorded) > 1e-3
        ratio = heard[loud] / recorded[loud]
        assert ratio.min() > 10 ** (attenuation_db / 2 / 20), "a quiet window was not lifted"
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)  # one gain for the whole window
        assert np.max(np.abs(heard)) < 1.0  # and nothing clipped
