"""OpenAI's streamed transcription (server-sent events) and verbose_json's fields, through
the official `openai` client against a real `tingxie serve`, on real speech."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import httpx
import pytest
from helpers import write_wav
from server_fixture import Server
from speech_loss_audio import join

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("srv")) as s:
        yield s


def client(srv: Server):
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=600)


def _items(corpus: Path, lang: str) -> list[dict]:
    items = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines() if x.strip()]
    return [m for m in items if m["lang"] == lang and m["duration_s"] < 30]


@pytest.fixture(scope="module")
def long_files(corpus_dir, tmp_path_factory) -> dict[str, Path]:
    """~40 s or more of real speech per language: two 30 s windows at least, so the text
    streams window by window."""
    out = tmp_path_factory.mktemp("long")
    files = {}
    for lang in ("en", "zh"):
        items, total = [], 0.0
        pool = _items(corpus_dir, lang)
        while total < 40:
            for m in pool:
                items.append(m)
                total += m["duration_s"] + 1.0
                if total >= 40:
                    break
        audio, _ = join(corpus_dir, items, seed=7)
        files[lang] = write_wav(out / f"long_{lang}.wav", audio)
    return files


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_stream_deltas_in_order_join_to_the_final_text(server, long_files, lang):
    c = client(server)
    with open(long_files[lang], "rb") as f:
        events = list(c.audio.transcriptions.create(model="whisper-base", file=f, stream=True))
    kinds = [e.type for e in events]
    assert kinds and kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.done") == 1, kinds
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    # the text comes window by window, not as one piece at the end
    assert len(deltas) >= 2, kinds
    done = events[-1].text
    assert "".join(deltas) == done
    with open(long_files[lang], "rb") as f:
        plain = c.audio.transcriptions.create(model="whisper-base", file=f)
    assert done == plain.text and len(done) > 50


def test_stream_text_format(server, long_files):
    with open(long_files["en"], "rb") as f:
        events = list(
            client(server).audio.transcriptions.create(
                model="whisper-base", file=f, stream=True, response_format="text"
            )
        )
    assert events[-1].type == "transcript.text.done"
    assert "".join(e.delta for e in events[:-1]) == events[-1].text


def test_stream_raw_framing(server, long_files):
    """What a client without the SDK sees: text/event-stream, `data: {json}` blocks."""
    with open(long_files["en"], "rb") as f:
        r = httpx.post(
            f"{server.url}/v1/audio/transcriptions",
            files={"file": ("a.wav", f)},
            data={"model": "whisper-base", "stream": "true", "language": "en"},
            timeout=600,
        )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in r.text.split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks), blocks[:3]
    events = [json.loads(b[len("data: ") :]) for b in blocks]
    assert events[-1]["type"] == "transcript.text.done"
    assert all(set(e) == {"type", "delta"} for e in events[:-1])


def test_stream_refusals_are_json_errors(server, long_files, tmp_path):
    c = client(server)
    for fmt in ("srt", "vtt", "verbose_json"):
        with open(long_files["en"], "rb") as f, pytest.raises(openai.BadRequestError) as e:
            c.audio.transcriptions.create(model="whisper-base", file=f, stream=True, response_format=fmt)
        assert "response_format" in str(e.value) and fmt in str(e.value)
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"this is not audio at all" * 100)
    with open(bad, "rb") as f, pytest.raises(openai.BadRequestError) as e:
        c.audio.transcriptions.create(model="whisper-base", file=f, stream=True)
    assert e.value.body["code"] == "invalid_audio" and "notes.wav" in e.value.body["message"]
    # refused: no history row left behind
    jobs = httpx.get(f"{server.url}/api/jobs", timeout=30).json()
    rows = jobs["jobs"] if isinstance(jobs, dict) else jobs
    assert not any(j.get("filename") == "notes.wav" for j in rows)


def test_include_logprobs_is_refused_by_name(server, long_files):
    with open(long_files["en"], "rb") as f, pytest.raises(openai.BadRequestError) as e:
        client(server).audio.transcriptions.create(model="whisper-base", file=f, include=["logprobs"])
    assert "logprobs" in str(e.value)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_verbose_json_fields_are_true(server, long_files, lang):
    with open(long_files[lang], "rb") as f:
        r = httpx.post(
            f"{server.url}/v1/audio/transcriptions",
            files={"file": ("a.wav", f)},
            data={
                "model": "whisper-base",
                "response_format": "verbose_json",
                "timestamp_granularities[]": ["word", "segment"],
            },
            timeout=600,
        )
    r.raise_for_status()
    v = r.json()
    assert v["words"] and all(w["word"].strip() for w in v["words"]), [w for w in v["words"] if not w["word"].strip()]
    segs = [s for s in v["segments"] if s["text"].strip()]
    assert len(segs) >= 3
    # compression ratio of each segment's own text (Whisper's gzip measure: bytes over zlib
    # bytes), not a window's score passed off as each of its segments'
    for s in segs:
        data = s["text"].encode("utf-8")
        assert s["compression_ratio"] == pytest.approx(len(data) / len(zlib.compress(data)), abs=1e-4), s
    assert all("avg_logprob" not in s for s in segs)


def test_verbose_json_drops_empty_words():
    """An empty word as alignment gave it (`('', 1.14, 1.34)`) is no word to a caller."""
    from tingxie.server.openai_api import verbose_json
    from tingxie.types import Segment, Transcript, Word

    words = [Word(0.5, 0.9, " Hello"), Word(1.14, 1.34, ""), Word(1.34, 1.4, " "), Word(1.4, 1.9, " world")]
    t = Transcript("en", 2.0, [Segment(0, 0.5, 1.9, "Hello world", "Hello world", words)])
    assert [w["word"] for w in verbose_json(t, "transcribe", True)["words"]] == ["Hello", "world"]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_deltas_wait_for_earlier_windows(lang):
    """Windows finishing out of order still stream in order, and the deltas plus the
    remainder are the text stage's final text exactly."""
    import copy

    from tingxie.engines.base import WindowResult
    from tingxie.server.openai_api import Deltas
    from tingxie.transcribe import finish_segments
    from tingxie.types import DecodeOptions, Segment, TextOptions, Transcript

    words = {
        "en": ["hello there", "how are you", "twenty one apples", "fine thanks", "see you"],
        "zh": ["今天天气很好", "我们去公园吧", "一共二十一个苹果", "你觉得怎么样", "好的明天见"],
    }[lang]
    results = []
    for i in range(4):  # window i holds two segments
        segs = [Segment(0, i * 30 + k * 10, i * 30 + k * 10 + 8, "", words[(i + k) % 5]) for k in range(2)]
        results.append(WindowResult(segs, lang, 1.0))
    sent: list[str] = []
    d = Deltas(DecodeOptions(language=lang), TextOptions(), sent.append)
    d.add(2, copy.deepcopy(results[2]))
    d.add(1, copy.deepcopy(results[1]))
    assert sent == []  # window 0 is not done: nothing may be sent yet
    d.add(0, copy.deepcopy(results[0]))
    assert len(sent) == 1
    d.add(3, copy.deepcopy(results[3]))
    final = Transcript(lang, 120, finish_segments(copy.deepcopy(results), lang, TextOptions())).text
    assert "".join(sent) + d.remainder(final) == final
    assert len(sent) == 2 and final.startswith(sent[0] + sent[1])


def test_stream_through_the_reference_pipeline(tmp_path, corpus_dir):
    """`--pipeline reference` transcribes whole requests (no windows to report): the stream still
    carries the whole text, then done."""
    clip = corpus_dir / "pocketsphinx_librivox_0870.wav"
    with Server(tmp_path / "reference", args=["--pipeline", "reference"]) as srv:
        with open(clip, "rb") as f:
            events = list(client(srv).audio.transcriptions.create(model="whisper-base", file=f, stream=True))
        with open(clip, "rb") as f:
            plain = client(srv).audio.transcriptions.create(model="whisper-base", file=f)
    assert [e.type for e in events] == ["transcript.text.delta", "transcript.text.done"]
    assert events[0].delta == events[1].text == plain.text and "dashwood" in plain.text.lower()
