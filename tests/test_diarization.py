"""Speaker diarization (issue 30): options, the speaker assignment, the tiny models in
sherpa-onnx's exact interface, the server's answers (400 without models, diarized_json
through the official client, renamed speakers in every export), and — when prepared on
this machine — the real models on two eval speakers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import tiny_models
from helpers import MODELS, write_wav
from server_fixture import Server

from tingxie import diarize
from tingxie.cli import build_parser
from tingxie.engines import ModelError
from tingxie.engines.diarization import Diarizer, Turn, available
from tingxie.engines.diarization import find as diarization_models
from tingxie.request import TranscriptionOptions, from_cli
from tingxie.types import DiarizeOptions, OptionsError, Segment, Transcript, VoicePrint, Word

sherpa_onnx = pytest.importorskip("sherpa_onnx", reason="diarization runs on sherpa-onnx (the sherpa extra)")


# -- options ------------------------------------------------------------------------------
def test_options_declared_once_reach_cli_and_stored_jobs():
    args = build_parser().parse_args(["transcribe", "x.wav", "--diarize", "--min-speakers", "2", "--max-speakers", "4"])
    opts = from_cli(args)
    assert opts.diarization() == DiarizeOptions(min_speakers=2, max_speakers=4, threshold=opts.speaker_threshold)
    again = TranscriptionOptions.parse(opts.stored())  # a stored job's options read back
    assert again.diarization() == opts.diarization()
    assert TranscriptionOptions.parse({}).diarization() is None


def test_known_speaker_names_declared_once_imply_diarize_and_are_stored():
    opts = TranscriptionOptions.parse({"known_speaker_names[]": [" 张三 ", "Bob"]})  # the form's name
    assert opts.diarize and opts.known_speaker_names == ["张三", "Bob"]
    assert TranscriptionOptions.parse(opts.stored()).known_speaker_names == ["张三", "Bob"]  # a job keeps them
    for bad in (["a", "a"], ["a", "b", "c", "d", "e"], [""], ["x" * 65]):
        with pytest.raises(OptionsError, match="known_speaker_names"):
            TranscriptionOptions.parse({"known_speaker_names": bad})


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"num_speakers": 2}, "needs diarize=true"),
        ({"diarize": True, "channels": "split"}, "channels=mix"),
        ({"diarize": True, "min_speakers": 3, "max_speakers": 2}, "must not exceed"),
        ({"diarize": True, "num_speakers": 2, "max_speakers": 3}, "excludes"),
        ({"diarize": True, "num_speakers": 0}, "num_speakers must be between 1 and 32"),
    ],
)
def test_bad_speaker_options_are_refused_by_name(data, names):
    with pytest.raises(OptionsError, match=names):
        TranscriptionOptions.parse(data)


# -- assigning speakers -------------------------------------------------------------------
def _seg(i, start, end, text, words=None):
    return Segment(i, start, end, text, text, words=words)


def _t(segments, language="en"):
    return Transcript(language=language, duration=20.0, segments=segments)


def test_speakers_numbered_by_first_appearance_without_gaps():
    # the clusterer's indexes 7 and 3; 5 speaks only where no text was recognised
    turns = [Turn(0, 4, 7), Turn(4, 6, 5), Turn(6, 10, 3), Turn(10, 14, 7)]
    t = _t([_seg(0, 0.2, 3.8, "Hello there."), _seg(1, 6.2, 9.5, "Hi."), _seg(2, 10.5, 13, "Bye.")])
    out = diarize.assign(t, turns)
    assert [s.speaker for s in out.segments] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]
    assert [sp.id for sp in out.speakers] == ["SPEAKER_1", "SPEAKER_2"]
    assert out.text == "SPEAKER_1: Hello there.\nSPEAKER_2: Hi.\nSPEAKER_1: Bye."


def test_segment_split_at_the_word_where_the_turn_changes_keeping_the_finished_text():
    # the words as the model said them; the text after ITN (digits)
    words = [
        Word(0.0, 0.4, "我"),
        Word(0.4, 0.8, "们"),
        Word(0.8, 1.2, "二"),
        Word(1.2, 1.6, "十"),
        Word(1.9, 2.4, "好"),
    ]
    seg = _seg(0, 0.0, 2.4, "我们20，好", words)
    out = diarize.assign(_t([seg], "zh"), [Turn(0.0, 1.7, 0), Turn(1.8, 3.0, 1)])
    assert [(s.speaker, s.text) for s in out.segments] == [("SPEAKER_1", "我们20，"), ("SPEAKER_2", "好")]


def test_segment_split_at_the_word_where_the_turn_changes():
    words = [Word(0.0, 0.5, " Are"), Word(0.5, 1.0, " you"), Word(1.0, 1.6, " ready?"), Word(1.9, 2.4, " Yes.")]
    turns = [Turn(0.0, 1.7, 0), Turn(1.8, 3.0, 1)]
    out = diarize.assign(_t([_seg(0, 0.0, 2.4, "Are you ready? Yes.", words)]), turns, keep_words=False)
    assert [(s.speaker, s.text, s.start, s.end) for s in out.segments] == [
        ("SPEAKER_1", "Are you ready?", 0.0, 1.6),
        ("SPEAKER_2", "Yes.", 1.9, 2.4),
    ]
    assert [s.id for s in out.segments] == [0, 1] and all(s.words is None for s in out.segments)


def test_overlapping_speech_goes_to_the_speaker_with_most_overlap():
    turns = [Turn(0.0, 3.0, 0), Turn(2.0, 6.0, 1)]  # both speak 2–3 s
    out = diarize.assign(_t([_seg(0, 1.8, 5.5, "mostly the second")]), turns)
    assert [s.speaker for s in out.segments] == ["SPEAKER_1"]  # 1.2 s of 0 vs 3.5 s of 1: numbered first seen
    assert out.speakers[0].id == "SPEAKER_1" and len(out.speakers) == 1


def test_segment_without_word_times_split_at_a_clause_near_the_turn():
    turns = [Turn(0.0, 4.0, 0), Turn(4.2, 8.0, 1)]
    out = diarize.assign(_t([_seg(0, 0.0, 8.0, "今天我们开会讨论预算，好的我同意")], "zh"), turns)
    assert [(s.speaker, s.text) for s in out.segments] == [
        ("SPEAKER_1", "今天我们开会讨论预算，"),
        ("SPEAKER_2", "好的我同意"),
    ]
    assert out.text == "SPEAKER_1: 今天我们开会讨论预算，\nSPEAKER_2: 好的我同意"


def test_renamed_speakers_label_every_output():
    from tingxie import output

    t = diarize.assign(_t([_seg(0, 0, 2, "Hello."), _seg(1, 2.5, 4, "Hi.")]), [Turn(0, 2.2, 0), Turn(2.3, 4, 1)])
    diarize.rename(t, {"SPEAKER_2": "张三"})
    assert output.render(t, "txt") == "SPEAKER_1: Hello.\n张三: Hi.\n"
    assert "张三: Hi." in output.render(t, "srt")
    assert "<v 张三>" in output.render(t, "vtt")
    back = Transcript.from_dict(json.loads(output.render(t, "json")))
    assert back.speakers[1].name == "张三" and back.segments[1].speaker == "SPEAKER_2"


# -- the models ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("diarization-models")
    tiny_models.diarization(d)
    return d


def _voices() -> np.ndarray:
    """A (6 s) | B (6 s) | A (5 s), a second of silence between."""
    gap = np.zeros(16000, np.float32)
    v = tiny_models.voice
    return np.concatenate([v(6, True), gap, v(6, False), gap, v(5, True)])


def test_tiny_models_load_in_sherpa_onnx_and_tell_voices_apart(tiny):
    found = diarization_models.find_diarization(tiny)
    assert found is not None
    diarization_models.probe_diarization(found)  # in a child process
    turns = Diarizer(found.segmentation, found.embedding).process(_voices(), DiarizeOptions(num_speakers=2))
    assert len({t.speaker for t in turns}) == 2
    first, second = turns[0], next(t for t in turns if t.speaker != turns[0].speaker)
    assert abs(first.end - 6.0) < 0.5 and abs(second.start - 7.0) < 0.5
    assert turns[-1].speaker == first.speaker  # A comes back as A


def test_known_speakers_matched_by_voice(tiny):
    found = diarization_models.find_diarization(tiny)
    assert found is not None
    d = Diarizer(found.segmentation, found.embedding)
    x = _voices()
    turns = d.process(x, DiarizeOptions(num_speakers=2))
    v = tiny_models.voice
    known = (("高", v(3, False)[5000:]), ("低", v(3, True)[7000:]), ("nobody", np.zeros(48000, np.float32) + 0.01))
    names = diarize.match_known(d.embed, x, turns, known, threshold=0.3)  # the tiny prints are coarse
    assert names == {turns[0].speaker: "低", next(t.speaker for t in turns if t.speaker != turns[0].speaker): "高"}
    t = diarize.assign(
        _t([_seg(0, 1, 5, "first"), _seg(1, 8, 12, "second"), _seg(2, 15, 18, "again")]), turns, names=names
    )
    assert [(sp.id, sp.name) for sp in t.speakers] == [("SPEAKER_1", "低"), ("SPEAKER_2", "高")]
    assert t.text == "低: first\n高: second\n低: again"
    # an enrolled voice's stored print is compared as it is
    prints = tuple((name, VoicePrint(d.embed(audio))) for name, audio in known)
    assert diarize.match_known(d.embed, x, turns, prints, threshold=0.3) == names


def test_long_recording_diarized_in_pieces_keeps_one_label_per_voice(tiny):
    found = diarization_models.find_diarization(tiny)
    assert found is not None
    d = Diarizer(found.segmentation, found.embedding)
    x = np.concatenate([_voices()] * 3)  # A|B|A three times, 57 s: pieces of ~11 s cut through turns
    seen: list[float] = []
    turns = diarize.turns_of(d, x, DiarizeOptions(num_speakers=2), seen.append, chunk_s=11.0)

    def who(at: float) -> int:
        return next(t.speaker for t in turns if t.start <= at <= t.end)

    a = {who(r * 19 + at) for r in range(3) for at in (3.0, 16.5)}
    b = {who(r * 19 + 10.0) for r in range(3)}
    assert len(a) == 1 and len(b) == 1 and a != b  # one label per voice across all pieces
    assert seen == sorted(seen) and seen[-1] == 1.0  # progress moves through the pieces


def test_pieces_speakers_joined_by_voice_print_within_the_asked_count():
    rng = np.random.default_rng(0)
    e1, e2 = rng.normal(size=192), rng.normal(size=192)
    prints = [e1, e2, e1 + 0.1 * rng.normal(size=192), None, e2 + 0.1 * rng.normal(size=192)]
    assert diarize.join_speakers(prints, DiarizeOptions()) == [0, 1, 0, 2, 1]  # None: on its own
    assert diarize.join_speakers(prints, DiarizeOptions(num_speakers=1))[:3] == [0, 0, 0]
    assert len(set(diarize.join_speakers(prints, DiarizeOptions(min_speakers=4)))) == 4


def test_missing_or_broken_models_are_named(tmp_path, tiny):
    with pytest.raises(OptionsError, match="tingxie models --prepare diarization"):
        available(tmp_path)
    broken = tmp_path / "seg" / "model.onnx"
    tiny_models.diarization_segmentation(broken)
    import onnx

    m = onnx.load(str(broken))
    keep = [p for p in m.metadata_props if p.key != "receptive_field_shift"]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    onnx.save(m, str(broken))
    assert diarization_models.check_segmentation(broken) == ["model.onnx lacks ONNX metadata receptive_field_shift"]
    assert diarization_models.find_diarization(tmp_path) is None  # and it is not picked up
    # loaded all the same, sherpa-onnx ends the process: the child's, not this one
    bad = diarization_models.DiarizationModels(
        broken, tiny / "3dspeaker_speech_campplus_sv_zh_en_16k-common_advanced.onnx"
    )
    with pytest.raises(ModelError, match="failed to load"):
        diarization_models.probe_diarization(bad)


REAL = diarization_models.find_diarization(MODELS)


@pytest.mark.skipif(
    REAL is None, reason=f"real diarization models not prepared in {MODELS} (tingxie models --prepare diarization)"
)
def test_real_models_find_two_eval_speakers_and_the_turn(corpus_dir):
    from tingxie.audio import decode

    assert REAL is not None
    a = decode(corpus_dir / "soulx_female_mandarin.wav")
    b = decode(corpus_dir / "pocketsphinx_librivox_0870.wav")
    x = np.concatenate([a, np.zeros(8000, np.float32), b])
    turns = Diarizer(REAL.segmentation, REAL.embedding).process(x)
    assert len({t.speaker for t in turns}) == 2
    change = next(t.start for t in turns if t.speaker != turns[0].speaker)
    assert abs(change - (len(a) + 8000) / 16000) < 1.0


@pytest.mark.skipif(
    REAL is None, reason=f"real diarization models not prepared in {MODELS} (tingxie models --prepare diarization)"
)
def test_real_known_speaker_named_and_a_stranger_not(corpus_dir):
    from tingxie.audio import decode

    assert REAL is not None
    s0150 = [decode(corpus_dir / f"aishell_sample_BAC009S0150W{n}.wav") for n in ("0133", "0205")]
    other = decode(corpus_dir / "pocketsphinx_librivox_0870.wav")
    x = np.concatenate([s0150[0], np.zeros(8000, np.float32), other, np.zeros(8000, np.float32), s0150[1]])
    d = Diarizer(REAL.segmentation, REAL.embedding)
    turns = d.process(x)
    known = (
        ("S0150", decode(corpus_dir / "aishell_sample_BAC009S0150W0241.wav")),  # another utterance of hers
        ("TIMIT", decode(corpus_dir / "deepspeech_LDC93S1.wav")),  # nobody in the recording
    )
    names = diarize.match_known(d.embed, x, turns, known)
    assert names == {turns[0].speaker: "S0150"}


# -- the server -----------------------------------------------------------------------------
def wait_job(url: str, job_id: str, timeout: float = 300, headers: dict | None = None) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = httpx.get(f"{url}/api/jobs/{job_id}", headers=headers, timeout=30).json()
        if j["state"] in ("done", "failed", "cancelled"):
            return j
        time.sleep(0.5)
    raise AssertionError("job did not finish")


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory, synth_speech) -> Path:
    d = tmp_path_factory.mktemp("dialogue")
    a = synth_speech("Good morning, shall we start the meeting now?", d / "a.wav")
    b = synth_speech("Yes, the budget is ready and I can present it.", d / "b.wav", voice="en+f3")
    from tingxie.audio import decode

    x = np.concatenate([decode(a), np.zeros(8000, np.float32), decode(b), tiny_models.voice(3, False)])
    return write_wav(d / "dialogue.wav", x)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny):
    home = tmp_path_factory.mktemp("home-diarize")
    (home / "models").mkdir()
    for f in tiny.rglob("*.onnx"):
        target = home / "models" / f.relative_to(tiny)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
    with Server(home) as srv:
        yield srv


def test_cli_diarize_gives_speaker_turns(tmp_path, tiny, dialogue):
    import subprocess
    import sys

    from helpers import ROOT

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "whisper-base").symlink_to(MODELS / "whisper-base")
    env = {"TINGXIE_HOME": str(home), "PATH": "/usr/bin:/bin"}

    def cli(*args):
        cmd = [sys.executable, "-m", "tingxie", "transcribe", str(dialogue), "-o", str(tmp_path / "out"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)

    r = cli("--diarize")
    assert r.returncode == 2 and "tingxie models --prepare diarization" in r.stderr  # before any work
    for f in tiny.rglob("*.onnx"):
        (home / "models" / f.name).write_bytes(f.read_bytes())  # loose files: found all the same
    r = cli("--speaker", "Alice")
    assert r.returncode == 2 and "--speaker takes NAME=clip.wav" in r.stderr
    from tingxie.audio import decode

    clip = write_wav(tmp_path / "alice.wav", decode(dialogue)[: 16000 * 3])
    r = cli("--diarize", "--language", "en", "--format", "json,txt", "--speaker", f"Alice={clip}")
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "out" / "dialogue.json").read_text())
    assert d["speakers"][0]["id"] == "SPEAKER_1" and d["segments"][0]["speaker"] == "SPEAKER_1"
    assert d["options"]["diarize"]["known_speaker_names"] == ["Alice"]  # looked for (the tiny prints rarely match)
    assert "words" not in d["segments"][0] or d["segments"][0]["words"] is None  # not asked for
    assert d["options"]["diarize"]["threshold"] == 0.5 and "diarize" in d["options"]["stage_seconds"]
    assert (tmp_path / "out" / "dialogue.txt").read_text().split(":")[0] in ("SPEAKER_1", "Alice")


def test_no_models_answers_400_naming_the_command(tmp_path, dialogue):
    with Server(tmp_path) as srv, open(dialogue, "rb") as f:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=300)
        with pytest.raises(openai.BadRequestError) as e:
            c.audio.transcriptions.create(model="whisper-base", file=f, response_format="diarized_json")
        assert "tingxie models --prepare diarization" in str(e.value)
        f.seek(0)
        r = httpx.post(srv.url + "/api/jobs", files={"files": ("d.wav", f)}, data={"diarize": "true"}, timeout=60)
        assert r.status_code == 400 and "tingxie models --prepare diarization" in r.text
        assert httpx.get(srv.url + "/api/jobs", timeout=30).json()["jobs"] == []  # nothing stored


def test_diarized_json_through_the_official_client(server, dialogue):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=300)
    with open(dialogue, "rb") as f:
        r = c.audio.transcriptions.create(
            model="whisper-base", file=f, response_format="diarized_json", extra_body={"language": "en"}
        )
    assert r.task == "transcribe" and r.duration > 8 and "meeting" in r.text.lower()
    assert r.segments and all(s.type == "transcript.text.segment" for s in r.segments)
    seen = list(dict.fromkeys(s.speaker for s in r.segments))
    assert seen == [f"SPEAKER_{n}" for n in range(1, len(seen) + 1)]  # first appearance, no gaps
    with open(dialogue, "rb") as f:
        v = c.audio.transcriptions.create(
            model="whisper-base",
            file=f,
            response_format="verbose_json",
            extra_body={"language": "en", "diarize": "true", "num_speakers": "2"},
        )
    d = v.model_dump()
    assert {s["speaker"] for s in d["segments"]} <= {sp["id"] for sp in d["speakers"]}
    import base64

    wav = base64.b64encode(dialogue.read_bytes()[: 44 + 16000 * 2 * 3]).decode()
    with open(dialogue, "rb") as f:
        k = c.audio.transcriptions.create(
            model="whisper-base",
            file=f,
            response_format="diarized_json",
            extra_body={
                "language": "en",
                "known_speaker_names": ["Alice"],
                "known_speaker_references": [f"data:audio/wav;base64,{wav}"],
            },
        )
    # the tiny voice prints cannot tell espeak voices apart at the real threshold: here the
    # request is taken and every label is a speaker id or the known name (matching itself:
    # test_known_speakers_matched_by_voice and, with the real models, test_real_known_speaker)
    assert k.segments and {s.speaker for s in k.segments} <= {"Alice", "SPEAKER_1", "SPEAKER_2", "SPEAKER_3"}
    with open(dialogue, "rb") as f, pytest.raises(openai.BadRequestError, match="2 names but"):
        c.audio.transcriptions.create(
            model="whisper-base",
            file=f,
            extra_body={
                "known_speaker_names": ["Alice", "Bob"],
                "known_speaker_references": [f"data:audio/wav;base64,{wav}"],
            },
        )
    with open(dialogue, "rb") as f, pytest.raises(openai.BadRequestError, match="data: URL"):
        c.audio.transcriptions.create(
            model="whisper-base",
            file=f,
            extra_body={"known_speaker_names": ["Alice"], "known_speaker_references": ["alice.wav"]},
        )
    with open(dialogue, "rb") as f, pytest.raises(openai.BadRequestError, match="stream"):
        c.audio.transcriptions.create(model="whisper-base", file=f, stream=True, extra_body={"diarize": "true"})


def test_job_speakers_renamed_in_every_export(server, dialogue):
    with open(dialogue, "rb") as f:
        r = httpx.post(
            server.url + "/api/jobs",
            files={"files": ("meeting.wav", f)},
            data={"diarize": "true", "language": "en"},
            timeout=60,
        )
    job_id = r.json()["jobs"][0]["id"]
    job = wait_job(server.url, job_id)
    assert job["state"] == "done", job.get("error")
    assert job["options"]["diarize"] is True  # stored with the job
    first = job["result"]["segments"][0]["speaker"]
    assert first == "SPEAKER_1"
    bad = httpx.put(f"{server.url}/api/jobs/{job_id}/speakers", json={"SPEAKER_9": "x"}, timeout=30)
    assert bad.status_code == 400 and "SPEAKER_9" in bad.text
    ok = httpx.put(f"{server.url}/api/jobs/{job_id}/speakers", json={"SPEAKER_1": "张三"}, timeout=30)
    assert ok.status_code == 200 and ok.json()["speakers"][0] == {"id": "SPEAKER_1", "name": "张三"}
    txt = httpx.get(f"{server.url}/api/jobs/{job_id}/result?format=txt", timeout=30).text
    assert txt.startswith("张三: ")
    assert "张三: " in httpx.get(f"{server.url}/api/jobs/{job_id}/result?format=srt", timeout=30).text
    assert "<v 张三>" in httpx.get(f"{server.url}/api/jobs/{job_id}/result?format=vtt", timeout=30).text
    got = httpx.get(f"{server.url}/api/jobs/{job_id}", timeout=30).json()
    assert got["result"]["speakers"][0]["name"] == "张三" and got["text"].startswith("张三: ")


# -- enrolled voices ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keyed(tmp_path_factory, tiny):
    """A server with the tiny models and two API keys (a, b)."""
    from tingxie.store import Store

    home = tmp_path_factory.mktemp("home-voices")
    for f in tiny.rglob("*.onnx"):
        (home / "models").mkdir(exist_ok=True)
        (home / "models" / f.name).write_bytes(f.read_bytes())
    with Store(f"sqlite:///{home / 'tingxie.db'}") as st:
        keys = [st.create_key(name)[1] for name in ("a", "b")]
    with Server(home) as srv:
        srv.keys = [{"Authorization": f"Bearer {k}"} for k in keys]
        yield srv


def _enrol(url, key, name, path, **data):
    with open(path, "rb") as f:
        return httpx.post(
            url + "/api/speakers",
            headers=key,
            data={"name": name, **data},
            files={"audio": (path.name, f)},
            timeout=120,
        )


def _stored_voices(srv) -> list[Path]:
    d = srv.home / "audio" / "speakers"
    return [p for p in d.rglob("*") if p.is_file()] if d.exists() else []


def test_enrolled_voices_belong_to_one_key_and_refusals_leave_nothing(keyed, dialogue, synth_speech, tmp_path):
    url, (a, b) = keyed.url, keyed.keys
    clip = synth_speech("Good morning, shall we start the meeting now?", tmp_path / "alice.wav")
    r = _enrol(url, a, "Alice", clip)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "Alice" and r.json()["has_audio"] is False and r.json()["seconds"] >= 2
    assert "embedding" not in r.text
    # refused: nothing stored (no row, no file)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 50)
    refusals = [
        (_enrol(url, a, "Alice", clip), "already enrolled"),
        (_enrol(url, a, " ", clip), "name must be"),
        (_enrol(url, a, "Quiet", write_wav(tmp_path / "quiet.wav", np.zeros(48000, np.float32))), "no speech"),
        (_enrol(url, a, "Brief", synth_speech("Hi.", tmp_path / "hi.wav")), "of speech in the audio"),
        (_enrol(url, a, "Junk", junk, keep_audio="true"), "junk.wav"),
    ]
    for resp, why in refusals:
        assert resp.status_code == 400 and why in resp.json()["error"]["message"], resp.text
    assert [v["name"] for v in httpx.get(url + "/api/speakers", headers=a, timeout=30).json()["speakers"]] == ["Alice"]
    assert _stored_voices(keyed) == []

    def post_dialogue(to: str, headers: dict, data: dict) -> httpx.Response:
        """The dialogue as one transcription request or one job, with these fields."""
        path, field = ("/v1/audio/transcriptions", "file") if to == "transcription" else ("/api/jobs", "files")
        with open(dialogue, "rb") as f:
            return httpx.post(url + path, headers=headers, files={field: ("d.wav", f)}, data=data, timeout=300)

    # another key neither sees, uses nor deletes it
    assert httpx.get(url + "/api/speakers", headers=b, timeout=30).json() == {"speakers": []}
    r = post_dialogue("transcription", b, {"known_speaker_names[]": "Alice", "response_format": "diarized_json"})
    assert r.status_code == 400 and "'Alice'" in r.json()["error"]["message"]
    r = post_dialogue("job", b, {"known_speaker_names[]": "Alice"})
    assert r.status_code == 400 and "'Alice'" in r.text
    assert httpx.get(url + "/api/jobs", headers=b, timeout=30).json()["jobs"] == []  # nothing stored
    assert httpx.delete(url + "/api/speakers/Alice", headers=b, timeout=30).status_code == 404
    # its owner names it: in a request and in a job (looked up when the job runs)
    r = post_dialogue(
        "transcription", a, {"known_speaker_names[]": "Alice", "response_format": "diarized_json", "language": "en"}
    )
    assert r.status_code == 200, r.text
    # the tiny voice prints cannot tell espeak voices apart at the real threshold (the real
    # models name the speaker: test_real_enrolled_voice_named_in_every_output)
    assert {s["speaker"] for s in r.json()["segments"]} <= {"Alice", "SPEAKER_1", "SPEAKER_2", "SPEAKER_3"}
    r = post_dialogue("job", a, {"known_speaker_names[]": "Alice", "language": "en"})
    assert r.status_code == 202, r.text
    job = wait_job(url, r.json()["jobs"][0]["id"], headers=a)
    assert job["state"] == "done", job.get("error")
    assert job["options"]["known_speaker_names"] == ["Alice"] and job["options"]["diarize"] is True
    assert job["result"]["options"]["diarize"]["known_speaker_names"] == ["Alice"]
    # kept audio is deleted with its voice
    r = _enrol(url, a, "Bob", clip, keep_audio="true")
    assert r.status_code == 201 and r.json()["has_audio"] is True and len(_stored_voices(keyed)) == 1
    assert httpx.delete(url + "/api/speakers/Bob", headers=a, timeout=30).json() == {"name": "Bob", "deleted": True}
    assert _stored_voices(keyed) == []
    assert httpx.delete(url + "/api/speakers/Alice", headers=a, timeout=30).status_code == 200
    assert httpx.get(url + "/api/speakers", headers=a, timeout=30).json() == {"speakers": []}
    r = post_dialogue("transcription", a, {"known_speaker_names[]": "Alice"})
    assert r.status_code == 400 and "no enrolled voice named 'Alice'" in r.text


@pytest.mark.skipif(
    REAL is None, reason=f"real diarization models not prepared in {MODELS} (tingxie models --prepare diarization)"
)
def test_real_enrolled_voice_named_in_every_output(tmp_path, corpus_dir):
    from tingxie.audio import decode

    assert REAL is not None
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    for f in (REAL.segmentation, REAL.embedding):
        (home / "models" / f.parent.name).symlink_to(f.parent)
    her = [decode(corpus_dir / f"aishell_sample_BAC009S0150W{n}.wav") for n in ("0133", "0205")]
    other = decode(corpus_dir / "pocketsphinx_librivox_0870.wav")
    gap = np.zeros(8000, np.float32)
    meeting = write_wav(tmp_path / "meeting.wav", np.concatenate([her[0], gap, other, gap, her[1]]))
    with Server(home) as srv:
        r = _enrol(srv.url, {}, "王芳", corpus_dir / "aishell_sample_BAC009S0150W0241.wav")  # another utterance
        assert r.status_code == 201, r.text
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=300)
        with open(meeting, "rb") as f:
            d = c.audio.transcriptions.create(
                model="whisper-base",
                file=f,
                response_format="diarized_json",
                extra_body={"known_speaker_names": ["王芳"]},
            )
        said = [s.speaker for s in d.segments]
        assert said[0] == "王芳" and said[-1] == "王芳" and any(s != "王芳" for s in said)  # the stranger is not named
        with open(meeting, "rb") as f:
            r = httpx.post(
                srv.url + "/api/jobs",
                files={"files": ("m.wav", f)},
                data={"known_speaker_names[]": "王芳"},
                timeout=60,
            )
        job_id = r.json()["jobs"][0]["id"]
        assert wait_job(srv.url, job_id)["state"] == "done"
        assert httpx.get(f"{srv.url}/api/jobs/{job_id}/result?format=txt", timeout=30).text.startswith("王芳: ")
        assert "<v 王芳>" in httpx.get(f"{srv.url}/api/jobs/{job_id}/result?format=vtt", timeout=30).text


# -- scoring --------------------------------------------------------------------------------
def test_der_on_a_hand_made_case():
    from tingxie.bench.der import score

    ref = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]
    # hypothesis labels differ (paired by agreement): x is A; B's turn is found 1 s late
    # and split in two, of which z (5 s) is paired with B and y (4 s) is confusion; 1 s of
    # false alarm after the end
    hyp = [(0.0, 11.0, "x"), (11.0, 15.0, "y"), (15.0, 20.0, "z"), (20.0, 21.0, "z")]
    s = score(ref, hyp, collar=0.0)
    assert s.reference == pytest.approx(20.0)
    assert s.missed == pytest.approx(0.0)
    assert s.false_alarm == pytest.approx(1.0)
    assert s.confusion == pytest.approx(1.0 + 4.0)  # 10–11 s went to x, 11–15 s to y
    assert s.der == pytest.approx(6.0 / 20.0)
    assert (s.ref_speakers, s.hyp_speakers) == (2, 3)
    # a 0.25 s collar forgives half a second around each reference boundary (0, 10, 20 s)
    c = score(ref, hyp, collar=0.25)
    assert c.reference == pytest.approx(20.0 - 0.25 - 0.5 - 0.25)
    assert c.confusion == pytest.approx(0.75 + 4.0) and c.false_alarm == pytest.approx(0.75)
    # overlapped speech counts per speaker: both talk 4–6 s, the hypothesis hears one
    o = score([(0.0, 6.0, "A"), (4.0, 8.0, "B")], [(0.0, 6.0, "p"), (6.0, 8.0, "q")], collar=0.0)
    assert o.reference == pytest.approx(10.0) and o.missed == pytest.approx(2.0) and o.der == pytest.approx(0.2)
