"""The bench's audio: the user's recordings, an eval set's utterances joined into
recordings of a given length, the real English speech shipped in the package
(tingxie/bench/speech/, see its NOTICE), or — only when asked — English from espeak-ng;
and scoring against references."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..text import is_cjk
from ..types import OptionsError

SR = 16000
AUDIO_EXT = {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".aac", ".wma", ".amr"}
ENGLISH = [
    "The quarterly report shows revenue grew by twelve percent compared with last year.",
    "Please call the customer back before five o'clock and confirm the delivery address.",
    "Our branch will be closed on Monday for the public holiday.",
    "The patient was admitted on Tuesday and discharged three days later.",
    "I would like to open a savings account and transfer two hundred dollars.",
    "The meeting has been moved to the second floor conference room.",
    "Remember to back up the database before installing the new version.",
    "The weather forecast says it will rain heavily this afternoon.",
]


@dataclass
class Utterance:
    id: str
    audio: np.ndarray
    lang: str
    text: str | None


@dataclass
class Corpus:
    utterances: list[Utterance]
    source: str
    files: list[dict] = field(default_factory=list)  # user recordings: path, duration, lang, text


def write_wav(path: Path, x: np.ndarray) -> None:
    """16 kHz mono PCM16. int16 samples are written as they are (a round trip through
    float would move some by one step); float samples in [-1, 1] are scaled."""
    pcm = x if x.dtype == np.int16 else (np.clip(x, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())


def read_manifest(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise OptionsError(f"--refs {path}: line {n} is not JSON ({e.msg})") from None
            if not isinstance(r, dict) or "text" not in r or not ({"id", "audio"} & r.keys()):
                raise OptionsError(f"--refs {path}: line {n} needs id or audio, and text")
            rows.append(r)
    return rows


def synth_english(out: Path) -> list[Utterance]:
    """English speech from espeak-ng (used when no eval set is around)."""
    from .. import audio as audio_mod

    if shutil.which("espeak-ng") is None:
        raise OptionsError("--espeak: espeak-ng is not installed (leave --espeak out to use the bundled speech)")
    utts = []
    for i, text in enumerate(ENGLISH):
        raw = out / f"espeak_{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
        utts.append(Utterance(f"espeak_{i}", audio_mod.decode(raw), "en", text))
    return utts


BUNDLED = Path(__file__).with_name("speech")
BUNDLED_SOURCE = "bundled English speech (CMU pocketsphinx test recordings, BSD-2-Clause; no Mandarin bundled: pass --eval-set or --audio-dir for a Mandarin figure)"


def bundled_speech(d: Path = BUNDLED) -> list[Utterance]:
    """The real speech inside the package (installed with the wheel: no system package,
    no download): English only, because no Debian or PyPI package we found ships real
    Mandarin speech under a permissive licence (speech/NOTICE)."""
    from .. import audio as audio_mod

    rows = read_manifest(d / "manifest.jsonl")
    return [Utterance(r["id"], audio_mod.decode(d / r["audio"]), r["lang"], r["text"]) for r in rows]


def load_corpus(
    audio_dir: str | None,
    refs: str | None,
    work: Path,
    eval_set: str | Path | None = None,
    espeak: bool = False,
) -> Corpus:
    """The user's recordings (`audio_dir`), else an eval set's utterances (Mandarin when
    it has any), else espeak-ng English speech when asked (`espeak`), else the speech
    bundled in the package."""
    from .. import audio as audio_mod

    ref_rows = read_manifest(Path(refs)) if refs else []
    if audio_dir:
        d = Path(audio_dir)
        if not d.is_dir():
            raise OptionsError(f"--audio-dir {audio_dir}: no such directory")
        paths = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXT)
        if not paths:
            raise OptionsError(f"--audio-dir {audio_dir}: no audio files in it ({', '.join(sorted(AUDIO_EXT))})")
        if not refs and (d / "manifest.jsonl").is_file():
            ref_rows = read_manifest(d / "manifest.jsonl")
        by_key = {}
        for r in ref_rows:
            for k in (r.get("id"), r.get("audio"), Path(r.get("audio", "")).stem):
                if k:
                    by_key[k] = r
        files = []
        for p in paths:
            r = by_key.get(p.name) or by_key.get(p.stem) or by_key.get(str(p.relative_to(d))) or {}
            try:
                dur = audio_mod.probe(p).duration
            except Exception as e:
                raise OptionsError(f"--audio-dir: {p.name} is not readable audio ({e})") from None
            files.append(
                {"id": p.stem, "path": str(p), "duration": dur, "lang": r.get("lang", ""), "text": r.get("text")}
            )
        utts = [
            Utterance(f["id"], audio_mod.decode(f["path"]), f["lang"], f["text"])
            for f in files[:20]
            if f["duration"] <= 30
        ]
        if not utts:  # long recordings only: short requests use their first 15 s (no reference)
            utts = [Utterance(files[0]["id"], audio_mod.decode(files[0]["path"])[: 15 * SR], files[0]["lang"], None)]
        return Corpus(utts, f"--audio-dir {audio_dir}", files)
    if eval_set is not None:
        d = Path(eval_set)
        if not (d / "manifest.jsonl").is_file():
            raise OptionsError(f"--eval-set {eval_set}: no manifest.jsonl in it")
        rows = ref_rows or read_manifest(d / "manifest.jsonl")
        utts = [
            Utterance(
                r.get("id") or Path(r["audio"]).stem, audio_mod.decode(d / r["audio"]), r.get("lang", ""), r["text"]
            )
            for r in rows
            if r.get("audio") and (d / r["audio"]).is_file()
        ]
        zh = [u for u in utts if u.lang == "zh"]
        return Corpus(zh or utts, f"eval set {d.resolve()} ({'Mandarin' if zh else 'all'} utterances)")
    if espeak:
        return Corpus(synth_english(work), "espeak-ng English speech (synthetic; --espeak)")
    return Corpus(bundled_speech(), BUNDLED_SOURCE)


def concat_speech(
    utts: list[Utterance], seconds: float, rng: random.Random, pause=(0.5, 3.0), once: bool = False
) -> tuple[np.ndarray, str, str]:
    """`seconds` of utterances joined by pauses; returns audio, reference text, language.
    `once`: each utterance used once before any is used again (a short recording drawn
    with replacement can be one clip twice, and stand for nothing else of the corpus)."""
    parts: list[np.ndarray] = []
    texts: list[str] = []
    total, lang = 0, ""
    limit = int(seconds * SR)
    deck: list[Utterance] = []
    while True:
        if once:
            deck = deck or rng.sample(utts, len(utts))
            u = deck.pop()
        else:
            u = rng.choice(utts)
        gap = np.zeros(int(rng.uniform(*pause) * SR), np.float32)
        if total + len(u.audio) > limit and parts:
            break
        parts += [u.audio[: limit - total], gap]
        texts.append(u.text or "")
        lang = lang or u.lang
        total += len(u.audio) + len(gap)
        if total >= limit:
            break
    x = np.concatenate(parts)[:limit]
    x = np.pad(x, (0, limit - len(x)))
    has_refs = all(u.text for u in utts)
    sep = "" if is_cjk(lang) else " "
    return x, (sep.join(texts) if has_refs else ""), lang


def recordings(corpus: Corpus, n: int, seconds: float, out: Path, seed: int = 0) -> list[dict]:
    """N recordings: the user's files (cycled), else built from utterances with 0.5–3 s pauses."""
    if corpus.files:
        return [
            dict(corpus.files[k % len(corpus.files)], id=f"{corpus.files[k % len(corpus.files)]['id']}#{k}")
            for k in range(n)
        ]
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        path = out / f"rec_{int(seconds)}s_{k:03d}.wav"
        x, text, lang = concat_speech(corpus.utterances, seconds, rng)
        if not path.exists():
            write_wav(path, x)
        rows.append({"id": path.stem, "path": str(path), "duration": len(x) / SR, "lang": lang, "text": text or None})
    return rows


def short_files(corpus: Corpus, out: Path) -> list[dict]:
    """Short utterances as files, for request capacity."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in corpus.utterances:
        p = out / f"short_{u.id}.wav"
        if not p.exists():
            write_wav(p, u.audio)
        rows.append({"id": u.id, "path": str(p), "duration": len(u.audio) / SR, "lang": u.lang, "text": u.text})
    return rows


def accuracy(rows: list[dict], hyps: dict[str, str]) -> dict:
    """CER (zh, ja) / WER (others) in % per language, over rows with references."""
    from .score import error_rate

    out = {}
    for lang in sorted({r["lang"] for r in rows if r.get("text") and r.get("lang")}):
        sel = [r for r in rows if r.get("text") and r["lang"] == lang and r["id"] in hyps]
        if sel:
            try:
                out[lang] = round(100 * error_rate([r["text"] for r in sel], [hyps[r["id"]] for r in sel], lang), 2)
            except ValueError:
                pass
    return out


# -- real English speech shipped inside packages --------------------------------------
# Debian's pocketsphinx-testdata (BSD-2-Clause, Carnegie Mellon University): recordings
# of people reading card names, a robot command and digits, with their transcripts. Its
# cards/005 and librivox/ clips are the same recordings as ../shared/eval's pocketsphinx
# items, so they are left out: this set adds speakers and material the eval set lacks.
POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")
POCKETSPHINX_PACKAGE = "pocketsphinx-testdata"
POCKETSPHINX_IN_EVAL = {"cards/005.wav"}
# Clips whose transcript the package gives in its test grammars rather than a
# transcription file: goforward.raw is the utterance of goforward.gram's <move> rule
# (and pocketsphinx's documented result for it); TIDIGITS names each file by its digits
# (z = zero), as tidigits.lsn transcribes man.ah.2934za "two nine three four zero".
POCKETSPHINX_RAW = {"goforward.raw": "go forward ten meters", "tidigits/dhd.2934z.raw": "two nine three four zero"}


def _clip_id(rel: str) -> str:
    return "pocketsphinx_" + str(Path(rel).with_suffix("")).replace("/", "_").replace(".", "_")


@dataclass
class PackagedSpeech:
    """One recording from an installed package, with its transcript and provenance."""

    id: str
    audio: np.ndarray  # float32, 16 kHz mono
    text: str
    source: str  # package:path
    licence: str


def packaged_english(data: Path = POCKETSPHINX_DATA) -> tuple[list[PackagedSpeech], str]:
    """Real English recordings with transcripts found in installed packages, and a
    reason when there are none (the package is not installed: `apt-get install
    pocketsphinx-testdata`)."""
    from ..audio import decode

    if not (data / "cards" / "cards.transcription").is_file():
        return [], f"no English speech packages installed ({POCKETSPHINX_PACKAGE}: {data} missing)"
    out: list[PackagedSpeech] = []
    for line in (data / "cards" / "cards.transcription").read_text(encoding="utf-8").splitlines():
        # "<s> ten of clubs  </s> (001)"
        words = line.replace("<s>", " ").replace("</s>", " ").split()
        if len(words) < 2 or not words[-1].startswith("("):
            continue
        rel = f"cards/{words[-1].strip('()')}.wav"
        if rel in POCKETSPHINX_IN_EVAL or not (data / rel).is_file():
            continue
        out.append(PackagedSpeech(_clip_id(rel), decode(data / rel), " ".join(words[:-1]), rel, "BSD-2-Clause"))
    for rel, text in POCKETSPHINX_RAW.items():
        if (data / rel).is_file():  # headerless 16 kHz 16-bit little-endian mono
            pcm = np.fromfile(data / rel, dtype="<i2").astype(np.float32) / 32768.0
            out.append(PackagedSpeech(_clip_id(rel), pcm, text, rel, "BSD-2-Clause"))
    for s in out:
        s.source = f"{POCKETSPHINX_PACKAGE}:{data / s.source}"
    return out, "" if out else f"{POCKETSPHINX_PACKAGE} holds none of the expected recordings under {data}"
