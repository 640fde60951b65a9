"""Written-Chinese quality of transcripts on ../shared/eval (issue 13's measures).

For the Mandarin items, over transcripts of more than 4 characters: the share that ends
with a full-width sentence mark (。？！…), how many hold an ASCII , . ? ! next to a
Chinese character, how many hold a Traditional-only character; and corpus CER (ITN
off, as tests/test_accuracy.py; English WER alongside). Measured on files (the text
stage on in-process decodes, with and without the punctuation step) and on real-time
finals (each clip streamed through /v1/stream of a real server, language zh).

    python bench/text_quality.py                 # files and real time (~6 min on 2 cores)
    python bench/text_quality.py --files-only
    python bench/text_quality.py --corpus ../shared/eval --json bench/results/text_quality.json
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tingxie.bench.score import error_rate, normalize_for_scoring  # noqa: E402
from tingxie.types import TextOptions  # noqa: E402

MODELS = Path.home() / ".cache" / "tingxie" / "models"
IDEO = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
ASCII_NEXT_TO_CJK = re.compile(f"[{IDEO}][,.?!]|[,.?!][{IDEO}]")
SENTENCE_MARKS = ("。", "？", "！", "…")
# 著 is Simplified too where it is read zhù; elsewhere (带著, 看著) it is the Taiwan form of 着
ZHU_WORDS = re.compile("著(?:名|作|称|述|书|者|录|有|文)|(?:显|昭|卓|土|名|巨|原|专|编|论|合|遗|译|新|大|拙)著")


def traditional_only(text: str) -> list[str]:
    """Characters a Simplified reader would not expect: those OpenCC's plain character
    table converts (t2s, one character at a time), 著 outside its zhù words, 甚么."""
    import opencc

    conv = opencc.OpenCC("t2s").convert
    out = [c for c in text if conv(c) != c]
    out += ["著"] * (text.count("著") - len(ZHU_WORDS.findall(text)))
    out += ["甚么"] * text.count("甚么")
    return out


def content_len(text: str) -> int:
    return len(normalize_for_scoring(text, "zh"))


def measure(items: list[dict], texts: list[str]) -> dict:
    """The issue's measures over the Mandarin transcripts, plus CER."""
    zh = [(m, t) for m, t in zip(items, texts, strict=False) if m["lang"] == "zh"]
    long = [t for _, t in zh if content_len(t) > 4]
    ended = sum(t.rstrip("”’」』）》】\"')").endswith(SENTENCE_MARKS) for t in long)
    return {
        "transcripts": len(long),
        "end_with_full_width_mark": f"{ended}/{len(long)} ({ended / max(1, len(long)):.0%})",
        "ascii_mark_next_to_cjk": sum(bool(ASCII_NEXT_TO_CJK.search(t)) for _, t in zh),
        "traditional_only": sum(bool(traditional_only(t)) for _, t in zh),
        "zh_cer": round(error_rate([m["text"] for m, _ in zh], [t for _, t in zh], "zh"), 4),
    }


def restage(transcript, language: str, opts: TextOptions):
    """The text stage again on a transcript's raw model text (decoding is the slow part)."""
    from tingxie.engines.whisper.engine import WindowResult
    from tingxie.transcribe import finish_segments

    t = copy.deepcopy(transcript)
    for s in t.segments:
        s.text = s.raw_text
    t.segments = finish_segments([WindowResult(t.segments, language, 1.0)], language, opts)
    return t


def files(items: list[dict], corpus: Path) -> dict:
    from tingxie import models as models_mod
    from tingxie.manager import ModelManager
    from tingxie.output import cues
    from tingxie.settings import Settings
    from tingxie.transcribe import transcribe_many
    from tingxie.types import DecodeOptions, VadOptions

    models_mod.assemble_bundled(MODELS)
    manager = ModelManager(Settings(home=MODELS.parent))
    try:
        outs = {
            o.index: o
            for o in transcribe_many(
                [corpus / m["audio"] for m in items],
                manager.scheduler(),
                DecodeOptions(),
                VadOptions(),
                TextOptions(itn=False, punctuate=False),
            )
        }
    finally:
        manager.close()
    rows = {}
    for name, opts in [
        ("files, punctuation off", TextOptions(itn=False, punctuate=False)),
        ("files", TextOptions(itn=False)),
        ("files, ITN on", TextOptions()),
    ]:
        ts = [restage(outs[i].transcript, outs[i].transcript.language, opts) for i in range(len(items))]
        row = measure(items, [t.text for t in ts])
        zh_cues = [c.text for m, t in zip(items, ts, strict=False) if m["lang"] == "zh" for c in cues(t)]
        row["cues_with_ascii_mark_next_to_cjk"] = sum(bool(ASCII_NEXT_TO_CJK.search(c)) for c in zh_cues)
        en = [i for i, m in enumerate(items) if m["lang"] == "en"]
        if en:
            row["en_wer"] = round(error_rate([items[i]["text"] for i in en], [ts[i].text for i in en], "en"), 4)
        row["examples"] = [t.text for m, t in zip(items, ts, strict=False) if m["lang"] == "zh"][20:23]
        rows[name] = row
    return rows


def read_pcm16(path: Path) -> np.ndarray:
    from tingxie.audio import decode

    return (np.clip(decode(path), -1, 1) * 32767).astype("<i2")


async def _stream(url: str, pcm: np.ndarray, itn: bool = True) -> list[str]:
    import websockets

    finals = []
    async with websockets.connect(url.replace("http", "ws") + "/v1/stream") as ws:
        await ws.send(json.dumps({"language": "zh", "itn": itn}))
        json.loads(await ws.recv())
        pad = np.zeros(8000, "<i2")
        audio = np.concatenate([pad, pcm, pad])
        for i in range(0, len(audio), 3200):
            await ws.send(audio[i : i + 3200].tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        async for m in ws:
            d = json.loads(m)
            if d.get("type") == "final":
                finals.append(d["text"])
    return finals


def realtime(items: list[dict], corpus: Path, itn: bool = True) -> dict:
    from tingxie.bench import LocalServer

    pcms = [(m, read_pcm16(corpus / m["audio"])) for m in items if m["lang"] == "zh"]
    with LocalServer(models_dir=MODELS) as srv:
        per_clip = [(m, asyncio.run(_stream(srv.url, p, itn))) for m, p in pcms]
    finals = [f for _, fs in per_clip for f in fs]
    row = measure([m for m, _ in per_clip], ["".join(fs) for _, fs in per_clip])
    long = [f for f in finals if content_len(f) > 4]
    ended = sum(f.endswith(SENTENCE_MARKS) for f in long)
    row["finals"] = len(finals)
    row["finals_end_with_full_width_mark"] = f"{ended}/{len(long)}"
    row["note"] = f"{len(pcms)} Mandarin clips, each its own session, streamed flat out, ITN {'on' if itn else 'off'}"
    row["examples"] = ["".join(fs) for _, fs in per_clip][20:23]
    return {f"real time, ITN {'on' if itn else 'off'}": row}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "eval"))
    ap.add_argument("--files-only", action="store_true")
    ap.add_argument("--realtime-only", action="store_true")
    ap.add_argument(
        "--realtime-itn", choices=("on", "off"), default="on", help="ITN for the streams (default on, as a client gets)"
    )
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    corpus = Path(args.corpus)
    if not (corpus / "manifest.jsonl").is_file():
        print(f"no eval corpus at {corpus} (manifest.jsonl missing)", file=sys.stderr)
        return 2
    items = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines() if line.strip()]
    results = {}
    if not args.realtime_only:
        results.update(files(items, corpus))
    if not args.files_only:
        results.update(realtime(items, corpus, args.realtime_itn == "on"))
    for name, row in results.items():
        print(f"\n## {name}")
        for k, v in row.items():
            print(f"  {k}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
