"""Transcripts that read as written Chinese: punctuation, Simplified/Traditional script,
one clock style, the languages a model has, hotwords. Rules are tested on text; the
behaviour users see is tested on real speech (../shared/eval) through the real pipeline
and a real server (files, OpenAI API, jobs, /v1/stream, /funasr)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from openai import BadRequestError, OpenAI
from server_fixture import Server

from tingxie import text as text_mod
from tingxie.output import render
from tingxie.text import Clause, finalize, punctuate, s2t, written_marks
from tingxie.types import Segment, TextOptions

IDEO = "\u4e00-\u9fff"
ASCII_NEXT_TO_CJK = re.compile(f"[{IDEO}][,.?!]|[,.?!][{IDEO}]")
SENTENCE_END = ("。", "？", "！", "…")


# ---------------------------------------------------------------- marks inside a clause


@pytest.mark.parametrize(
    "model, written",
    [
        ("你好,世界", "你好，世界"),
        ("对落实房地产市场调控政策措施,有偏差不到位的.", "对落实房地产市场调控政策措施，有偏差不到位的。"),
        ("还能继续支撑房价吗?", "还能继续支撑房价吗？"),
        ("太好了!", "太好了！"),
        ("他说:明天再来;好", "他说：明天再来；好"),
        ("这个也能理解 因为七牛毕竟", "这个也能理解，因为七牛毕竟"),  # Whisper's space between clauses
        ("周一到周五 每天早晨7:30", "周一到周五，每天早晨7:30"),
        ("然后...就没有了", "然后……就没有了"),
        ("涨了30.", "涨了30。"),
        # numbers and English keep their ASCII marks; a space stays next to a Latin word
        ("增长了3.5%,下午3:30开会", "增长了3.5%，下午3:30开会"),
        ("共1,000人", "共1,000人"),
        ("苹果表配 Apple Pay", "苹果表配 Apple Pay"),
        ("我说 I think so, yes. 然后", "我说 I think so, yes。然后"),
        ("Apple Pay, 还有", "Apple Pay，还有"),
        ("Hello, world.", "Hello, world."),  # no Chinese: untouched
    ],
)
def test_marks_inside_chinese_are_full_width(model: str, written: str) -> None:
    assert written_marks(model) == written


# ---------------------------------------------------------------- between clauses


def test_clauses_get_commas_and_the_sentence_a_final_mark() -> None:
    clauses = [
        Clause("周一到周五 每天早晨7:30"),
        Clause("到9:30的直播片段"),
        Clause("大家也别嫌弃,", 2.5),
        Clause("你知道吗"),
    ]
    assert "".join(punctuate(clauses, "zh")) == "周一到周五，每天早晨7:30，到9:30的直播片段，大家也别嫌弃。你知道吗？"


def test_the_models_own_marks_are_kept() -> None:
    out = punctuate([Clause("真的吗?"), Clause("好的。"), Clause("我们走吧,")], "zh")
    assert out == ["真的吗？", "好的。", "我们走吧。"]


def test_a_partial_gets_no_final_mark_while_spoken() -> None:
    assert punctuate([Clause("我们今天"), Clause("讨论一下")], "zh", open_end=True) == ["我们今天，", "讨论一下"]


def test_english_is_left_as_whisper_wrote_it() -> None:
    clauses = [Clause("Well, we know this much about her"), Clause("you met her")]
    assert punctuate(clauses, "en") == ["Well, we know this much about her", "you met her"]
    # an English clause inside a Chinese transcript keeps English punctuation
    assert punctuate([Clause("我们用 Python"), Clause("OK let's go")], "zh") == ["我们用 Python，", "OK let's go"]


def test_a_model_punctuator_can_follow_the_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The step is a list of punctuators: a model (CT-Transformer) can run after the
    rules, or replace them, and sees the clauses with what earlier ones wrote."""
    seen = []

    def model(clauses: list[Clause], language: str, open_end: bool) -> list[str]:
        seen.append([c.text for c in clauses])
        return [c.text.replace("，", "、") for c in clauses]

    monkeypatch.setattr(text_mod, "PUNCTUATORS", [text_mod.punctuate_rules, model])
    assert punctuate([Clause("苹果"), Clause("香蕉")], "zh") == ["苹果、", "香蕉。"]
    assert seen == [["苹果，", "香蕉。"]]


def test_segments_are_punctuated_and_keep_the_raw_text() -> None:
    segs = [
        Segment(0, 0.0, 2.0, "这个也能理解 因为", "這個也能理解 因為"),
        Segment(1, 2.0, 4.0, "他是最早的", "他是最早的"),
        Segment(2, 6.0, 7.0, "你好吗", "你好嗎"),
    ]
    text_mod.punctuate_segments(segs, "zh", TextOptions())
    assert [s.text for s in segs] == ["这个也能理解，因为，", "他是最早的。", "你好吗？"]  # 2 s pause: a sentence end
    assert segs[0].raw_text == "這個也能理解 因為"
    off = [Segment(0, 0.0, 2.0, "你好", "你好")]
    text_mod.punctuate_segments(off, "zh", TextOptions(punctuate=False))
    assert off[0].text == "你好"


# ---------------------------------------------------------------- script


@pytest.mark.parametrize(
    "traditional, simplified",
    [
        ("以及過兩天要帶著全部家當", "以及过两天要带着全部家当"),  # Whisper's own output on soulx_female_mandarin
        ("他看著我說", "他看着我说"),
        ("接著說", "接着说"),
        ("著急", "着急"),
        ("著名的作家", "著名的作家"),  # zhù stays 著
        ("效果很顯著", "效果很显著"),
        ("你說甚麼", "你说什么"),
        ("你在幹甚麼呢", "你在干什么呢"),
        ("這裡很好", "这里很好"),
        ("裡面", "里面"),
        ("以後再說", "以后再说"),
        ("皇后", "皇后"),
        ("關於這件事", "关于这件事"),
        ("位於北京", "位于北京"),
        ("衞生", "卫生"),  # a Hong Kong form
    ],
)
def test_simplified_output_has_no_taiwan_forms(traditional: str, simplified: str) -> None:
    assert finalize(traditional, "zh", TextOptions(itn=False)) == simplified


def test_hant_is_consistently_traditional() -> None:
    """Whisper mixes scripts; hant writes one Traditional standard whatever came in."""
    for mixed, want in [
        ("他带着我，看著你", "他帶著我，看著你"),
        ("这里和這裡", "這裡和這裡"),
        ("以后和以後", "以後和以後"),
        ("关于和關於", "關於和關於"),
    ]:
        out = finalize(mixed, "zh", TextOptions(itn=False, zh_script="hant"))
        assert out == want and out == s2t(out)  # nothing Simplified left to convert
    assert finalize("他带着我", "zh", TextOptions(zh_script="hant")) == "他帶著我"
    assert finalize("这里", "zh", TextOptions(zh_script="hant")) == "這裡"


# ---------------------------------------------------------------- one clock style


def test_one_clock_style_whoever_wrote_the_digits() -> None:
    """Whisper sometimes writes 7点半 itself; ITN writes 七点半 as 7:30: one style."""
    spoken = finalize("每天早晨七点半到九点半", "zh", TextOptions())
    digits = finalize("每天早晨7点半到9点半", "zh", TextOptions())
    assert spoken == digits == "每天早晨7:30到9:30"
    assert finalize("8点一刻出发", "zh", TextOptions()) == "8:15出发"
    assert finalize("下午3点", "zh", TextOptions()) == "下午3点"  # a whole hour stays N点
    assert finalize("等了10分钟", "zh", TextOptions()) == "等了10分钟"
    assert finalize("7点半", "zh", TextOptions(itn=False)) == "7点半"  # ITN off: as written


# ---------------------------------------------------------------- real speech, files


def _items(corpus_dir: Path, lang: str = "zh") -> list[dict]:
    rows = [json.loads(x) for x in (corpus_dir / "manifest.jsonl").read_text().splitlines() if x.strip()]
    return [r for r in rows if r["lang"] == lang]


@pytest.fixture(scope="module")
def zh_files(corpus_dir):
    """A few Mandarin eval recordings through the real pipeline (whisper-base, CPU)."""
    from helpers import MODELS

    from tingxie import models as models_mod
    from tingxie.manager import ModelManager
    from tingxie.settings import Settings
    from tingxie.transcribe import transcribe_many
    from tingxie.types import DecodeOptions, VadOptions

    wanted = [
        "soulx_female_mandarin",
        "mossttsd_zh_spk1_moon",
        "cosyvoice_pr1212_laoxu",
        "fireredasr2s_hello_zh",
        "aishell_sample_BAC009S0150W0241",
    ]
    items = [r for r in _items(corpus_dir) if r["id"] in wanted]
    models_mod.assemble_bundled(MODELS)
    manager = ModelManager(Settings(home=MODELS.parent))
    try:
        outs = list(
            transcribe_many(
                [corpus_dir / r["audio"] for r in items],
                manager.scheduler(),
                DecodeOptions(language="zh"),
                VadOptions(),
                TextOptions(),
            )
        )
    finally:
        manager.close()
    assert all(o.error is None for o in outs)
    return {items[o.index]["id"]: o.transcript for o in sorted(outs, key=lambda o: o.index)}


@pytest.mark.eval
def test_file_transcripts_read_as_written_chinese(zh_files) -> None:
    for name, t in zh_files.items():
        assert t.text.endswith(SENTENCE_END), (name, t.text)
        assert not ASCII_NEXT_TO_CJK.search(t.text), (name, t.text)
        assert not re.search(f"[{IDEO}] +[{IDEO}]", t.text), (name, t.text)
        assert "著" not in t.text and "帶" not in t.text, (name, t.text)
        for fmt in ("srt", "vtt", "txt"):
            assert not ASCII_NEXT_TO_CJK.search(render(t, fmt)), (name, fmt)
    long = zh_files["mossttsd_zh_spk1_moon"]
    assert long.text.count("，") >= 2, long.text  # clauses, not one run-on line
    assert any(s.raw_text != s.text for s in long.segments)  # the model's text is kept beside


# ---------------------------------------------------------------- a real server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("punct-home")) as srv:
        yield srv


def _pcm(path: Path) -> np.ndarray:
    """16 kHz PCM16 of any eval file (some are 24 kHz or FLAC)."""
    from tingxie.audio import decode

    return (np.clip(decode(path), -1, 1) * 32767).astype("<i2")


async def _stream(url: str, pcm: np.ndarray, options: dict) -> list[dict]:
    msgs = []
    async with websockets.connect(url.replace("http", "ws") + "/v1/stream") as ws:
        await ws.send(json.dumps(options))
        first = json.loads(await ws.recv())
        if first["type"] != "ready":
            return [first]
        gap = np.zeros(16000, "<i2")
        audio = np.concatenate([gap, pcm, gap])
        for i in range(0, len(audio), 3200):
            await ws.send(audio[i : i + 3200].tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        async for m in ws:
            msgs.append(json.loads(m))
    return msgs


@pytest.mark.eval
def test_realtime_finals_read_as_written_chinese(server, corpus_dir) -> None:
    items = [r for r in _items(corpus_dir) if r["id"] in ("soulx_female_mandarin", "mossttsd_zh_spk2_moon")]
    pcm = np.concatenate([x for r in items for x in (_pcm(corpus_dir / r["audio"]), np.zeros(24000, "<i2"))])
    finals = [m for m in asyncio.run(_stream(server.url, pcm, {"language": "zh"})) if m["type"] == "final"]
    assert len(finals) >= 2
    for f in finals:
        assert f["text"].endswith(SENTENCE_END), f["text"]
        assert not ASCII_NEXT_TO_CJK.search(f["text"]) and "著" not in f["text"], f["text"]


def test_a_language_the_model_lacks_is_refused_naming_the_ones_it_has(server) -> None:
    """whisper-base has no <|yue|> token: asking for Cantonese used to give "Welcome to to to"."""
    client = OpenAI(base_url=server.url + "/v1", api_key="unused")
    with pytest.raises(BadRequestError) as e:
        client.audio.transcriptions.create(model="whisper-base", file=("a.wav", b"RIFF", "audio/wav"), language="yue")
    message = e.value.body["message"] if isinstance(e.value.body, dict) else str(e.value)
    assert "yue" in message and "zh" in message and "en" in message
    r = httpx.post(server.url + "/api/jobs", files={"files": ("a.wav", b"RIFF", "audio/wav")}, data={"language": "yue"})
    assert r.status_code == 400 and "yue" in r.json()["error"]["message"]
    jobs = httpx.get(server.url + "/api/jobs").json()["jobs"]
    assert not [j for j in jobs if j["filename"] == "a.wav"]  # nothing refused leaves a trace
    msgs = asyncio.run(_stream(server.url, np.zeros(1600, "<i2"), {"language": "yue"}))
    assert msgs[0]["type"] == "error" and "yue" in msgs[0]["message"]
    models = httpx.get(server.url + "/api/models").json()["models"]
    base = next(m for m in models if m["id"] == "whisper-base")
    assert "zh" in base["languages"] and "en" in base["languages"] and "yue" not in base["languages"]


# ---------------------------------------------------------------- hotwords


HOT = ["七牛", "云存储"]


async def _funasr_offline(url: str, pcm: np.ndarray, hotwords: dict) -> str:
    async with websockets.connect(url.replace("http", "ws") + "/funasr") as ws:
        await ws.send(
            json.dumps(
                {
                    "mode": "offline",
                    "wav_name": "laoxu",
                    "wav_format": "pcm",
                    "is_speaking": True,
                    "audio_fs": 16000,
                    "hotwords": json.dumps(hotwords),
                    "itn": True,
                }
            )
        )
        for i in range(0, len(pcm), 9600):
            await ws.send(pcm[i : i + 9600].tobytes())
        await ws.send(json.dumps({"is_speaking": False}))
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 300))
            if m.get("is_final") or m.get("error"):
                return m.get("text", "") + m.get("error", "")


@pytest.mark.eval
def test_hotwords_fix_words_the_model_gets_wrong_on_every_path(server, corpus_dir) -> None:
    """cosyvoice_pr1212_laoxu: whisper-base writes 七牛 as 气流 and 云存储 as 原称处;
    with the hotwords it writes both, whichever way the request comes in."""
    clip = corpus_dir / "cosyvoice_pr1212_laoxu.wav"
    client = OpenAI(base_url=server.url + "/v1", api_key="unused")

    def openai(extra: dict) -> str:
        with clip.open("rb") as f:
            return client.audio.transcriptions.create(
                model="whisper-base", file=f, language="zh", extra_body=extra
            ).text

    without = openai({})
    assert not any(w in without for w in HOT), without  # the model alone gets both wrong
    texts = {"openai": openai({"hotwords": ",".join(HOT)})}
    with clip.open("rb") as f:
        r = httpx.post(
            server.url + "/api/jobs",
            files={"files": ("laoxu.wav", f, "audio/wav")},
            data={"language": "zh", "hotwords": "七牛，云存储"},
            timeout=60,
        )
    job_id = r.json()["jobs"][0]["id"]
    deadline = time.time() + 600
    while (job := httpx.get(f"{server.url}/api/jobs/{job_id}", timeout=30).json())["state"] not in ("done", "failed"):
        assert time.time() < deadline
        time.sleep(1)
    texts["jobs"] = job.get("text") or job.get("error")
    pcm = _pcm(clip)
    msgs = asyncio.run(_stream(server.url, pcm, {"language": "zh", "hotwords": HOT}))
    texts["realtime"] = "".join(m["text"] for m in msgs if m["type"] == "final")
    texts["funasr"] = asyncio.run(_funasr_offline(server.url, pcm, {w: 20 for w in HOT}))
    for path, text in texts.items():
        assert all(w in text for w in HOT), (path, text)


# ---------------------------------------------------------------- detection candidates


@pytest.mark.eval
def test_auto_detection_chooses_only_among_configured_languages(corpus_dir) -> None:
    """TINGXIE_DETECT_LANGUAGES: detection picks the likeliest of the candidates, so a
    deployment that expects zh and en never gets a Polish transcript."""
    from helpers import MODELS

    from tingxie.manager import ModelManager
    from tingxie.options import parse_detect_languages
    from tingxie.settings import Settings
    from tingxie.transcribe import transcribe
    from tingxie.types import DecodeOptions, OptionsError, VadOptions

    clip = corpus_dir / "aishell_sample_BAC009S0150W0193.wav"  # Mandarin, detected zh when unrestricted
    found = {}
    for candidates in ("", "zh,en", "ja,ko"):
        manager = ModelManager(Settings(home=MODELS.parent, detect_languages=candidates))
        try:
            t = transcribe(clip, manager.scheduler(), DecodeOptions(beam_size=1), VadOptions(), TextOptions())
        finally:
            manager.close()
        found[candidates] = t.language
    assert found[""] == "zh" and found["zh,en"] == "zh"
    assert found["ja,ko"] in ("ja", "ko")  # the candidates bind even against the evidence
    with pytest.raises(OptionsError, match="xx"):  # a code no language has the shape of
        parse_detect_languages("zh,xx1")
    manager = ModelManager(Settings(home=MODELS.parent, detect_languages="zh,xx"))
    try:
        with pytest.raises(OptionsError, match="has no language xx"):  # one the model lacks
            manager.load()
    finally:
        manager.close()


def test_punctuation_never_changes_the_words(corpus_dir) -> None:
    """Only marks and spaces change: over every eval reference cut into clauses at its
    own marks and spaces, and over random mixes of Chinese, Latin, digits and marks."""
    import random
    import unicodedata

    def words(s: str) -> str:
        return "".join(
            c
            for c in unicodedata.normalize("NFKC", s)
            if not c.isspace() and not unicodedata.category(c).startswith("P")
        )

    texts = [r["text"] for r in _items(corpus_dir)]
    rng = random.Random(0)
    alphabet = list("我们的是不了在有人这中大为上个国,.?!:;… 　，。？！、abcXYZ0123456789%")
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(2000)]
    for text in texts:
        clauses = [Clause(p, rng.choice([0.0, 2.0])) for p in re.split(r"[，。？！ ]+", text) if p]
        for open_end in (False, True):
            out = punctuate(clauses, "zh", open_end)
            assert len(out) == len(clauses)
            assert words("".join(out)) == words("".join(c.text for c in clauses)), (text, out)
