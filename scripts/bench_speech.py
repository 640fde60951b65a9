"""Rebuild tingxie/bench/speech/ — the real speech `tingxie bench` ships — from Debian's
pocketsphinx-testdata (BSD-2-Clause, Carnegie Mellon University), as FLAC with a manifest.

    apt-get install pocketsphinx-testdata && python scripts/bench_speech.py

Only packages are sources (never ../shared, never a model hub). Every clip that has a
transcript in the package is taken: the card names, the robot command, the TIDIGITS
string and the five LibriVox sentences. cards/005 and the LibriVox sentences are also in
../shared/eval (its calibration half, source cmusphinx/pocketsphinx); the manifest marks
them. No Mandarin recording with a transcript and a permissive licence exists in a
Debian or PyPI package that we found (see NOTICE), so the bundle is English only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tingxie.bench.corpus import POCKETSPHINX_DATA, PackagedSpeech, _clip_id, packaged_english  # noqa: E402

OUT = ROOT / "tingxie" / "bench" / "speech"


def librivox(data: Path = POCKETSPHINX_DATA) -> list[PackagedSpeech]:
    from tingxie.audio import decode

    out = []
    for rel, text in (("cards/005.wav", "eight of spades four of clubs seven of hearts"),):
        out.append(PackagedSpeech(_clip_id(rel), decode(data / rel), text, rel, "BSD-2-Clause"))
    for line in (data / "librivox" / "transcription").read_text(encoding="utf-8").splitlines():
        words = line.replace("<s>", " ").replace("</s>", " ").split()
        rel = f"librivox/{words[-1].strip('()')}.wav"
        out.append(PackagedSpeech(_clip_id(rel), decode(data / rel), " ".join(words[:-1]), rel, "BSD-2-Clause"))
    return out


def write_flac(path: Path, x: np.ndarray) -> None:
    pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="flac") as f:
        s = f.add_stream("flac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.rate = 16000
        for p in s.encode(frame):
            f.mux(p)
        for p in s.encode(None):
            f.mux(p)


def main() -> None:
    clips, why = packaged_english()
    if not clips:
        raise SystemExit(why)
    clips += librivox()
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in clips:
        rel = c.source.split(":", 1)[1].removeprefix(str(POCKETSPHINX_DATA) + "/") if ":" in c.source else c.source
        name = c.id.removeprefix("pocketsphinx_") + ".flac"
        write_flac(OUT / name, c.audio)
        rows.append(
            {
                "id": c.id,
                "audio": name,
                "lang": "en",
                "text": c.text,
                "duration_s": round(len(c.audio) / 16000, 3),
                "source": f"debian:pocketsphinx-testdata:/usr/share/pocketsphinx/test/data/{rel}",
                "licence": "BSD-2-Clause",
                "in_shared_eval": rel == "cards/005.wav" or rel.startswith("librivox/"),
            }
        )
    (OUT / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} clips, {sum(r['duration_s'] for r in rows):.1f} s in {OUT}")


if __name__ == "__main__":
    main()
