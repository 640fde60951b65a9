"""Packing speech spans into ≤ 30 s windows and mapping times back."""

from __future__ import annotations

import numpy as np
import pytest

from tingxie import windows as windows_mod
from tingxie.types import SpeechSpan


def test_packing_keeps_windows_under_30s_and_maps_time_back():
    sr = 16000
    audio = np.zeros(sr * 120, np.float32)
    spans = [SpeechSpan(s * sr, (s + 7) * sr) for s in range(0, 110, 10)]  # 7 s speech, 3 s pause
    wins = windows_mod.pack(audio, spans)
    assert all(w.seconds <= windows_mod.PACK_LIMIT_S for w in wins)
    assert sum(w.num_samples for w in wins) == sum(s.end - s.start for s in spans)
    w = wins[0]
    # 8 s into the packed window is 1 s into the second span (which starts at 10 s)
    assert w.to_absolute(8.0) == pytest.approx(11.0)
    assert w.to_absolute(7.0, is_end=True) == pytest.approx(7.0)
    assert w.to_absolute(7.0) == pytest.approx(10.0)
    rest = windows_mod.remainder(w, 11.0)
    assert rest.start == pytest.approx(11.0) and rest.num_samples == w.num_samples - 8 * sr


def test_packing_cuts_long_spans_at_pauses_to_fill_windows():
    sr = 16000
    audio = np.zeros(sr * 60, np.float32)
    probs = np.full(len(audio) // 512, 0.9, np.float32)
    for pause_s in (12.0, 20.0, 40.0):  # pauses inside the second span
        probs[int(pause_s * sr) // 512 : int((pause_s + 0.6) * sr) // 512] = 0.02
    spans = [SpeechSpan(0, 5 * sr), SpeechSpan(6 * sr, 34 * sr), SpeechSpan(35 * sr, 50 * sr)]
    wins = windows_mod.pack(audio, spans, probs=probs)
    assert wins[0].seconds > 15  # filled up to the pause at 20 s instead of closing at 5 s
    first_cut = wins[0].pieces[-1]
    assert 20.0 <= (first_cut.start + first_cut.length) / sr <= 20.6
    assert sum(w.num_samples for w in wins) == sum(s.end - s.start for s in spans)
    assert all(w.seconds <= windows_mod.PACK_LIMIT_S for w in wins)
