"""Accuracy on both halves of the real speech: tingxie vs the serial faster-whisper baseline.

    python bench/accuracy.py                      # tingxie and serial on eval + eval-extra
    python bench/accuracy.py --variants all       # also each decode difference switched, one at a time
    python bench/accuracy.py --lang zh --long 6   # also six three-minute Mandarin recordings per half

The halves come from tingxie.bench.split (by source and speaker; ../shared/eval-extra is
wholly validation): constants are chosen on calibration, claims quote validation. Both
methods run on the same loaded model (whisper-base int8, CPU), with the manifest's
language given and ITN off (references spell numbers):
  serial   WhisperModel.transcribe(audio, beam_size=5, vad_filter=True), one file at a time
  tingxie  transcribe_many over all files at once (the CLI, jobs and workers)
A variant is tingxie with one of its differences from serial switched (VARIANTS); the
table it prints is docs/accuracy.md's. `--long N` adds N three-minute Mandarin recordings
per half (`--long-seconds 25`: recordings of a few sentences instead), joined from that
half's clips with 0.5–3 s pauses (the builder `bench/core.py` and `tingxie bench` use),
scored as their own column: a change that helps one-sentence
clips can still derail a window of many sentences. Writes bench/results/accuracy.md and
accuracy.json with per-clip texts.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # core.py: the joined recordings

from tingxie.bench.score import error_rate  # noqa: E402
from tingxie.bench.split import half_of, shared_sets  # noqa: E402


def load_rows(shared: Path) -> list[dict]:
    """{id, path, lang, text, half, set} for every utterance of eval and eval-extra."""
    rows = []
    for name, folder in shared_sets(shared):
        for line in (folder / "manifest.jsonl").read_text().splitlines():
            if line.strip():
                m = json.loads(line)
                rows.append(
                    {
                        "id": f"{name}/{m['id']}",
                        "path": str(folder / m["audio"]),
                        "lang": m["lang"],
                        "text": m["text"],
                        "half": half_of(m, name),
                        "set": name,
                    }
                )
    return rows


def kind(row: dict) -> str:
    """The column a row is scored in: its language, or "zh long" for a joined recording."""
    return f"{row['lang']} long" if row["set"] == "long" else row["lang"]


KINDS = ("en", "zh", "zh long")


def long_rows(shared: Path, n: int, folder: Path, seconds: float = 180.0) -> list[dict]:
    """N joined Mandarin recordings of `seconds` per half, as rows of their half (set "long")."""
    import core

    out = []
    for half, items in core.halves(shared).items():
        for r in core.build_long(items, n, seconds, folder, half):
            out.append({**r, "half": half, "set": "long"})
    return out


def serial(rows: list[dict], whisper) -> dict[str, str]:
    from tingxie.audio import decode

    out = {}
    for r in rows:
        segs, _ = whisper.transcribe(decode(r["path"]), language=r["lang"], beam_size=5, vad_filter=True)
        out[r["id"]] = "".join(s.text for s in segs).strip()
    return out


def tingxie(rows: list[dict], sched, vad=None, decode: dict | None = None) -> dict[str, str]:
    from tingxie.transcribe import transcribe_many
    from tingxie.types import DecodeOptions, TextOptions, VadOptions

    out: dict[str, str] = {}
    for group in sorted({kind(r) for r in rows}):  # joined recordings apart: batches as without them
        rs = [r for r in rows if kind(r) == group]
        lang = rs[0]["lang"]
        for o in transcribe_many(
            [r["path"] for r in rs],
            sched,
            DecodeOptions(language=lang, **(decode or {})),
            vad or VadOptions(),
            TextOptions(itn=False),
        ):
            if o.error:
                raise SystemExit(f"tingxie failed on {rs[o.index]['id']}: {o.error}")
            out[rs[o.index]["id"]] = o.transcript.text if o.transcript else ""
    return out


# -- the differences from faster-whisper's transcribe, each switched on its own -----------
@contextlib.contextmanager
def _patched(obj, **values) -> Iterator[None]:
    old = {k: getattr(obj, k) for k in values}
    for k, v in values.items():
        setattr(obj, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(obj, k, v)


def _frame_levelled_input():
    from tingxie import level, windows

    return _patched(windows.Window, samples=lambda self: level.level(self.recorded()))


def _no_window_gain():
    from tingxie import level

    return _patched(level, QUIET_DB=-math.inf)


def _window_gain_25():
    from tingxie import level

    return _patched(level, QUIET_DB=-25.0, WINDOW_TARGET_DB=-18.0)


def _unlevelled_vad():
    from tingxie import vad

    return _patched(vad.Leveler, apply=lambda self, frames: frames)


def _vad_open_end():
    from tingxie import vad

    def close(self, length):  # Silero's and faster-whisper's rule: open speech runs to the end
        return None if self.start is None else self._end(length)

    return _patched(vad._Hysteresis, close=close)


def _whisper_logprob():
    from tingxie.engines.whisper import engine

    return _patched(engine, window_logprob=lambda score, n: score * n / (n + 1))


def _full_token_budget():
    from tingxie.engines.whisper import engine

    return _patched(engine, token_budget=lambda seconds: engine.MAX_TOKENS)


def _thirty_second_input():
    from tingxie.engines.whisper import engine

    return _patched(engine, OWN_LENGTH_MIN_S=math.inf, CONTINUATION_MIN_S=math.inf)


def _no_continuation():
    from tingxie.engines.whisper import recognizer as whisper

    return _patched(whisper, MAX_PASSES=0)


def _no_retry():
    from tingxie import transcribe

    return _patched(transcribe, MIN_LOST_S=math.inf)


def _no_junk_guard():
    from tingxie import text, transcribe

    return _patched(transcribe, text_mod=_TextWithout(text))


class _TextWithout:
    """tingxie.text with junk_reason answering None: nothing set aside as junk."""

    def __init__(self, module) -> None:
        self._m = module

    def __getattr__(self, name):
        return (lambda *a, **k: None) if name == "junk_reason" else getattr(self._m, name)


def _prior_weight(weight: float):
    from tingxie.engines.whisper import word_prior

    return lambda: _patched(word_prior, PRIOR_WEIGHT=weight)


# name → (what it switches, a context manager factory, VadOptions overrides, DecodeOptions overrides)
VARIANTS: dict[str, tuple[str, Callable[[], contextlib.AbstractContextManager], dict, dict]] = {
    "frame-levelled": ("model hears level.level (gain per 32 ms frame), as before issue 28", _frame_levelled_input, {}, {}),
    "no-window-gain": ("model hears the recording as recorded even when a window is quiet", _no_window_gain, {}, {}),
    "window-gain-25": ("windows whose speech is below −25 dBFS lifted to −18 with one gain (AISHELL's level lifted)", _window_gain_25, {}, {}),
    "vad-unlevelled": ("the VAD hears the recording unlevelled, as faster-whisper's", _unlevelled_vad, {}, {}),
    "vad-open-end": ("speech still open at the end of the audio runs to its end, as faster-whisper's VAD", _vad_open_end, {}, {}),
    "vad-end-of-audio": ("open speech runs to the end of the audio, kept however short (faster-whisper's end rule and min_speech 0)", _vad_open_end, {"min_speech_ms": 0}, {}),
    "vad-as-faster-whisper": ("faster-whisper's VAD rules: open end, min_speech 0, pad 400 ms", _vad_open_end, {"min_speech_ms": 0, "speech_pad_ms": 400}, {}),
    "vad-pad-400-min-0": ("faster-whisper's speech_pad 400 ms and min_speech 0 ms together", contextlib.nullcontext, {"speech_pad_ms": 400, "min_speech_ms": 0}, {}),
    "vad-pad-400": ("VAD speech_pad 400 ms, faster-whisper's (tingxie 300)", contextlib.nullcontext, {"speech_pad_ms": 400}, {}),
    "vad-min-speech-0": ("VAD min_speech 0 ms, faster-whisper's (tingxie 200)", contextlib.nullcontext, {"min_speech_ms": 0}, {}),
    "whisper-logprob": ("fallback rule on Whisper's sum/(tokens+1) log-probability", _whisper_logprob, {}, {}),
    "token-budget-448": ("max_length 448 whatever the window's length, faster-whisper's", _full_token_budget, {}, {}),
    "30s-input": ("every window encoded at 30 s (no own-length Mandarin windows)", _thirty_second_input, {}, {}),
    "no-continuation": ("no second pass over what a window's decode left out", _no_continuation, {}, {}),
    "no-retry": ("no retry of VAD speech that no segment covers", _no_retry, {}, {}),
    "no-junk-guard": ("no junk guard (text.junk_reason)", _no_junk_guard, {}, {}),
    "beam-6": ("beam width 6 (faster-whisper's and tingxie's default 5)", contextlib.nullcontext, {}, {"beam_size": 6}),
    "beam-8": ("beam width 8", contextlib.nullcontext, {}, {"beam_size": 8}),
    "beam-10": ("beam width 10 (the request schema's largest)", contextlib.nullcontext, {}, {"beam_size": 10}),
    "no-word-prior": ("a Chinese window keeps its beam's likeliest hypothesis, as faster-whisper (no word prior)", _prior_weight(0.0), {}, {}),
    "word-prior-0.1": ("word prior weight 0.1", _prior_weight(0.1), {}, {}),
    "word-prior-0.2": ("word prior weight 0.2", _prior_weight(0.2), {}, {}),
    "word-prior-0.3": ("word prior weight 0.3", _prior_weight(0.3), {}, {}),
    "word-prior-0.5": ("word prior weight 0.5", _prior_weight(0.5), {}, {}),
    "zh-prompt": ("every Mandarin window prompted with a Simplified sentence (以下是普通话的句子。), a common Whisper recipe", contextlib.nullcontext, {}, {"initial_prompt": "以下是普通话的句子。"}),
}  # fmt: skip


def rates(rows: list[dict], hyps: dict[str, str]) -> dict[str, dict[str, float | None]]:
    """{half: {kind: error rate %}} for calibration, validation and the whole set."""
    out: dict[str, dict[str, float | None]] = {}
    for half in ("calibration", "validation", "whole"):
        out[half] = {}
        for k in KINDS:
            rs = [r for r in rows if kind(r) == k and half in ("whole", r["half"]) and r["id"] in hyps]
            out[half][k] = (
                round(100 * error_rate([r["text"] for r in rs], [hyps[r["id"]] for r in rs], rs[0]["lang"]), 2)
                if rs
                else None
            )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--variants", default="", help="comma-separated names from VARIANTS, or 'all'")
    ap.add_argument("--no-serial", action="store_true", help="skip the serial baseline (variants only)")
    ap.add_argument("--lang", default="", help="only this language (en or zh)")
    ap.add_argument("--long", type=int, default=0, help="three-minute Mandarin recordings per half (0: none)")
    ap.add_argument(
        "--long-seconds", type=float, default=180.0, help="length of each --long recording (25: a few sentences)"
    )
    ap.add_argument("--no-tingxie", action="store_true", help="skip tingxie as it is (serial or variants only)")
    ap.add_argument(
        "--load",
        default="",
        help="comma-separated JSON files written by --partial: their methods are scored, not run again "
        "(one language from one run and the other from another are joined)",
    )
    ap.add_argument("--partial", default="", help="write each method's texts to this JSON file as it finishes")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--name", default="", help="write accuracy_NAME.md/.json (default: accuracy, or accuracy_variants)")
    args = ap.parse_args()

    importlib.import_module("tingxie.transcribe")  # the whole pipeline loaded before anything runs
    from tingxie.manager import ModelManager
    from tingxie.settings import Settings
    from tingxie.types import VadOptions

    rows = [r for r in load_rows(Path(args.shared)) if not args.lang or r["lang"] == args.lang]
    if rows and args.long and args.lang in ("", "zh"):
        folder = Path(tempfile.mkdtemp(prefix="tingxie-accuracy-"))
        rows += long_rows(Path(args.shared), args.long, folder, args.long_seconds)
    if not rows:
        print(f"no real speech under {args.shared} (eval/manifest.jsonl)", file=sys.stderr)
        return 2
    names = list(VARIANTS) if args.variants == "all" else [v for v in args.variants.split(",") if v]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        print(f"unknown variants: {', '.join(unknown)} (known: {', '.join(VARIANTS)})", file=sys.stderr)
        return 2
    manager = ModelManager(Settings())
    hyps: dict[str, dict[str, str]] = {}
    wall: dict[str, float] = {}
    try:
        sched = manager.scheduler()
        runs: list[tuple[str, Callable[[], dict[str, str]]]] = []
        for f in [f for f in args.load.split(",") if f]:
            for name, texts in json.loads(Path(f).read_text()).items():
                hyps.setdefault(name, {}).update(texts)
        if not args.no_serial and not args.load:
            runs.append(("serial", lambda: serial(rows, sched.engine.engine.whisper)))
        if not args.no_tingxie and not args.load:
            runs.append(("tingxie", lambda: tingxie(rows, sched)))
        for n in [n for n in names if n not in hyps]:  # a loaded variant is not run again
            _, patch, vad, decode = VARIANTS[n]

            def run(patch=patch, vad=vad, decode=decode) -> dict[str, str]:
                with patch():
                    return tingxie(rows, sched, VadOptions(**vad), decode)

            runs.append((n, run))
        for n, h in hyps.items():  # a loaded method run on one language only is scored on that one
            if len(h) < len(rows):
                print(f"{n}: {len(rows) - len(h)} of {len(rows)} utterances not in the loaded results", file=sys.stderr)
        for name, fn in runs:
            t0 = time.perf_counter()
            hyps[name] = fn()
            wall[name] = round(time.perf_counter() - t0, 1)
            r = rates(rows, hyps[name])
            print(f"{name:18s} {json.dumps(r)} ({wall[name]} s)", flush=True)
            if args.partial:  # each method's texts as soon as it is done
                Path(args.partial).write_text(json.dumps(hyps, ensure_ascii=False))
    finally:
        manager.close()

    table = {name: rates(rows, h) for name, h in hyps.items()}
    halves_ = ("calibration", "validation", "whole")
    kinds = [k for k in KINDS if any(kind(r) == k for r in rows)]
    counts = {
        h: {k: sum(1 for r in rows if kind(r) == k and h in ("whole", r["half"])) for k in kinds} for h in halves_
    }

    def cell(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}"

    def column(h: str, k: str) -> str:
        what = "WER" if k == "en" else "CER"
        return f"{h} {k} {what} ({counts[h][k]})"

    options = (
        (f" --lang {args.lang}" if args.lang else "")
        + (f" --variants {args.variants}" if names else "")
        + (f" --long {args.long}" if args.long else "")
        + (f" --long-seconds {args.long_seconds:g}" if args.long and args.long_seconds != 180 else "")
    )
    lines = [
        f"# Accuracy on both halves: tingxie vs serial faster-whisper ({time.strftime('%Y%m%d-%H%M%S')})",
        "",
        f"`python bench/accuracy.py{options}` — whisper-base int8, "
        "CPU, language given, ITN off; corpus WER (en) / CER (zh) %. Halves from `tingxie/bench/split.py` "
        "(eval-extra is wholly validation); constants are chosen on calibration, claims quote validation. "
        "*serial*: faster-whisper `transcribe(beam_size=5, vad_filter=True)`; *tingxie*: `transcribe_many` "
        "(the CLI, jobs, workers); other rows: tingxie with one difference switched (docs/accuracy.md); "
        f"*zh long*: {args.long_seconds:g} s recordings joined from the half's Mandarin clips (0.5–3 s pauses).",
        "",
        "| method | " + " | ".join(column(h, k) for k in kinds for h in halves_) + " |",
        "|---|" + "---|" * (len(kinds) * len(halves_)),
    ]  # fmt: skip
    for name, r in table.items():
        lines.append(f"| {name} | " + " | ".join(cell(r[h][k]) for k in kinds for h in halves_) + " |")
    lines += ["", "Variants:", ""] + [f"- *{n}*: {VARIANTS[n][0]}" for n in names]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = f"_{args.name}" if args.name else "" if not names else "_variants"
    (out / f"accuracy{suffix}.md").write_text("\n".join(lines) + "\n")
    report = {
        "rates": table,
        "wall_s": wall,
        "items": [{**r, **{m: hyps[m].get(r["id"]) for m in hyps}} for r in rows],
    }
    (out / f"accuracy{suffix}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(f"wrote {out / f'accuracy{suffix}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
