"""The server end to end, against a real `tingxie serve` on loopback."""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from helpers import wait_until
from pg_fixture import pg_db_url, pg_server_url  # noqa: F401
from server_fixture import ROOT, Server

openai = pytest.importorskip("openai")

SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def speech(tmp_path_factory, synth_speech) -> Path:
    return synth_speech(SENTENCE, tmp_path_factory.mktemp("speech") / "fox.wav")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("srv"), env={"TINGXIE_MAX_UPLOAD_MB": "2"}) as s:
        yield s


def client(srv: Server, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=300)


def wait_jobs(url: str, ids: list[str], headers: dict | None = None, timeout: float = 600) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = [httpx.get(f"{url}/api/jobs/{i}", headers=headers or {}, timeout=30).json() for i in ids]
        if all(j["state"] in ("done", "failed", "cancelled") for j in jobs):
            return jobs
        time.sleep(1)
    raise AssertionError(f"jobs not finished: {[j['state'] for j in jobs]}")


# -- OpenAI compatibility -----------------------------------------------------------------
def test_openai_client_every_response_format(server, speech):
    c = client(server)
    with open(speech, "rb") as f:
        r = c.audio.transcriptions.create(model="whisper-base", file=f, language="en")
    assert "lazy dog" in r.text.lower()
    with open(speech, "rb") as f:
        v = c.audio.transcriptions.create(
            model="whisper-base", file=f, response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
    assert v.language == "en" and v.duration > 2 and v.segments and v.words
    assert any("fox" in w.word.lower() for w in v.words)
    for fmt, check in [
        ("text", lambda s: "fox" in s.lower()),
        ("srt", lambda s: s.startswith("1\n00:00:") and "-->" in s),
        ("vtt", lambda s: s.startswith("WEBVTT")),
    ]:
        with open(speech, "rb") as f:
            out = c.audio.transcriptions.create(model="whisper-base", file=f, response_format=fmt)
        assert check(out), (fmt, out)
    models = c.models.list()
    assert "whisper-base" in [m.id for m in models.data]


def test_concurrent_requests_are_batched(server, speech):
    data = speech.read_bytes()

    def one(i: int) -> str:
        r = httpx.post(
            f"{server.url}/v1/audio/transcriptions",
            files={"file": (f"c{i}.wav", data)},
            data={"language": "en"},
            timeout=600,
        )
        r.raise_for_status()
        return r.json()["text"]

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        texts = list(pool.map(one, range(12)))
    assert all("lazy dog" in t.lower() for t in texts), texts
    metrics = httpx.get(server.url + "/metrics").text
    counts = {}
    for line in metrics.splitlines():
        if line.startswith("tingxie_batch_size_bucket"):
            le = line.split('le="')[1].split('"')[0]
            counts[le] = float(line.rsplit(" ", 1)[1])
    assert counts["+Inf"] > counts["1.0"], "no batch larger than one window"


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, content, status, message",
    [
        ("empty.wav", b"", 400, "empty"),
        ("notes.wav", b"hello, this is a text file, not a recording", 400, "not an audio file"),
        ("cut.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 10, 400, "audio"),
    ],
)
def test_bad_audio_gets_a_clear_error(server, name, content, status, message):
    r = httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": (name, content)}, timeout=60)
    assert r.status_code == status
    err = r.json()["error"]
    assert message in err["message"] and name in err["message"] and err["type"] == "invalid_request_error"


@pytest.mark.parametrize("path, field", [("/v1/audio/transcriptions", "file"), ("/api/jobs", "files")])
def test_a_part_without_a_file_name_is_refused_in_plain_words(server, path, field):
    r = httpx.post(server.url + path, files={field: ("", b"RIFF....WAVE")})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "expected an uploaded file" in message and "UploadFile" not in message and "<class" not in message


def test_video_without_sound_is_named_once_by_the_callers_name(server, tmp_path):
    video = tmp_path / "meeting.mp4"
    make = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=d=2:s=64x64:r=5", "-c:v", "mpeg4"]
    if subprocess.run([*make, str(video)], capture_output=True, check=False).returncode:
        pytest.skip("this ffmpeg cannot make an mp4 video")
    r = httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": ("meeting.mp4", video.read_bytes())})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    # the file as the caller named it, once; not the server's "uploaded file" stand-in
    assert "no audio stream" in message and message.count("meeting.mp4") == 1 and "uploaded file" not in message


def test_vad_preview_refuses_a_setting_it_would_ignore(server, speech):
    files = {"file": ("fox.wav", speech.read_bytes())}
    # the names before the VAD fields were declared once: a preview that ignored them
    # would draw spans the transcription with that setting would not cut
    r = httpx.post(f"{server.url}/api/vad", files=files, data={"threshold": "0.9"}, timeout=60)
    assert r.status_code == 400
    assert "'threshold'" in r.json()["error"]["message"] and "vad_threshold" in r.json()["error"]["message"]
    loose, strict = (
        httpx.post(f"{server.url}/api/vad", files=files, data={"vad_threshold": t}, timeout=60).json()
        for t in ("0.3", "0.95")
    )
    assert loose["count"] >= 1 and strict["speech_seconds"] < loose["speech_seconds"]


def test_too_large_upload_is_refused_while_streaming(server):
    big = b"\0" * (3 * 1024 * 1024)
    r = httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": ("big.wav", big)}, timeout=60)
    assert r.status_code == 413 and "too large" in r.json()["error"]["message"]


def test_unknown_model_and_format(server, speech):
    r = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        files={"file": ("a.wav", speech.read_bytes())},
        data={"model": "whisper-huge"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        files={"file": ("a.wav", speech.read_bytes())},
        data={"response_format": "docx"},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    r = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        files={"file": ("a.wav", speech.read_bytes())},
        data={"language": "klingon"},
    )
    assert r.status_code == 400 and "language" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "language"  # what OpenAI's clients show as the field at fault


# -- jobs and history -----------------------------------------------------------------------
def test_jobs_api_on_real_speech(server, corpus_dir):
    items = [json.loads(line) for line in (corpus_dir / "manifest.jsonl").read_text().splitlines()][:6]
    files = [("files", (m["audio"], (corpus_dir / m["audio"]).read_bytes())) for m in items]
    r = httpx.post(f"{server.url}/api/jobs", files=files, timeout=120)
    assert r.status_code == 202
    body = r.json()
    assert body["batch_id"] and len(body["jobs"]) == 6
    jobs = wait_jobs(server.url, [j["id"] for j in body["jobs"]])
    from tingxie.bench.score import error_rate

    for m, j in zip(items, jobs, strict=False):  # in one process: 0.00-0.20 each, 0.10 over the six
        assert j["state"] == "done", j.get("error")
        assert j["progress"] == 1.0 and j["result"]["segments"]
        assert error_rate([m["text"]], [j["text"]], m["lang"]) < 0.35, (m["id"], j["text"])
    assert error_rate([m["text"] for m in items], [j["text"] for j in jobs], "zh") < 0.2
    first = jobs[0]["id"]
    assert httpx.get(f"{server.url}/api/jobs/{first}/result", params={"format": "srt"}).text.startswith("1\n")
    assert httpx.get(f"{server.url}/api/jobs/{first}/result", params={"format": "txt"}).text.strip()
    b = httpx.get(f"{server.url}/api/batches/{body['batch_id']}").json()
    assert b["counts"]["done"] == 6 and b["progress"] == 1.0
    z = zipfile.ZipFile(
        io.BytesIO(httpx.get(f"{server.url}/api/jobs/export", params={"batch_id": body["batch_id"]}).content)
    )
    names = z.namelist()
    assert "summary.csv" in names and sum(n.endswith(".srt") for n in names) == 6


def test_history_search_paging_and_delete(server, speech):
    ids = []
    for i in range(3):
        r = httpx.post(
            f"{server.url}/api/jobs", files={"files": (f"memo-{i}.wav", speech.read_bytes())}, data={"language": "en"}
        )
        ids.append(r.json()["jobs"][0]["id"])
    wait_jobs(server.url, ids)
    found = httpx.get(f"{server.url}/api/jobs", params={"q": "lazy dog", "limit": 100}).json()["jobs"]
    assert set(ids) <= {j["id"] for j in found}
    seen, cursor = [], None
    while True:
        page = httpx.get(f"{server.url}/api/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) and set(ids) <= set(seen)
    bad = httpx.get(f"{server.url}/api/jobs", params={"cursor": "garbage"})
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]["message"]
    # the export takes the history's filters: what a search shows is what it exports
    search = {"q": "memo", "kind": "file", "limit": 100}
    listed = {j["filename"] for j in httpx.get(f"{server.url}/api/jobs", params=search).json()["jobs"]}
    exported = httpx.get(f"{server.url}/api/jobs/export", params=search).content
    summary = zipfile.ZipFile(io.BytesIO(exported)).read("summary.csv").decode("utf-8-sig").splitlines()[1:]
    assert {f"memo-{i}.wav" for i in range(3)} <= listed == {row.split(",")[1] for row in summary}
    other_kind = httpx.get(f"{server.url}/api/jobs/export", params={**search, "kind": "batch_item"}).content
    assert zipfile.ZipFile(io.BytesIO(other_kind)).read("summary.csv").decode("utf-8-sig").splitlines()[1:] == []
    for path in ("/api/jobs", "/api/jobs/export"):
        refused = httpx.get(f"{server.url}{path}", params={"state": "finished"})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "state", refused.text
    stored = lambda: [p for p in (server.home / "audio").rglob(f"{ids[0]}.*")]  # noqa: E731 (storage names are the job id)
    assert stored()
    assert httpx.delete(f"{server.url}/api/jobs/{ids[0]}").json()["deleted"]
    assert httpx.get(f"{server.url}/api/jobs/{ids[0]}").status_code == 404
    assert not stored()


def test_export_of_hostile_and_clashing_file_names(server, speech):
    names = [
        "C:\\Users\\li\\call.wav",
        "call.mp3",
        "call-2.wav",
        "=HYPERLINK(1).wav",
        "../..\\notes.wav",
        ".hidden.wav",
    ]
    files = [("files", (n, speech.read_bytes())) for n in names]
    r = httpx.post(f"{server.url}/api/jobs", files=files, data={"language": "en"})
    body = r.json()
    jobs = wait_jobs(server.url, [j["id"] for j in body["jobs"]])
    assert [j["filename"] for j in jobs] == [
        "call.wav",
        "call.mp3",
        "call-2.wav",
        "=HYPERLINK(1).wav",
        "notes.wav",
        ".hidden.wav",
    ]
    exported = httpx.get(f"{server.url}/api/jobs/export", params={"batch_id": body["batch_id"]}).content
    z = zipfile.ZipFile(io.BytesIO(exported))
    entries = z.namelist()
    # every transcript unpacks to its own file, none outside the folder it is unpacked into
    assert len(entries) == len(set(entries)) == 3 * len(names) + 1
    assert not [e for e in entries if "/" in e or "\\" in e or e.startswith(".")]
    assert all("fox" in z.read(e).decode().lower() for e in entries if e.endswith(".txt"))
    rows = list(csv.reader(io.StringIO(z.read("summary.csv").decode("utf-8-sig"))))[1:]
    # a spreadsheet shows the name as text instead of evaluating it
    assert "'=HYPERLINK(1).wav" in [row[1] for row in rows]


def test_corrupt_job_fails_with_its_reason(server):
    r = httpx.post(
        f"{server.url}/api/jobs", files={"files": ("broken.wav", b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 20)}
    )
    job = wait_jobs(server.url, [r.json()["jobs"][0]["id"]])[0]
    assert job["state"] == "failed" and "broken.wav" in job["error"]
    assert job["attempts"] == 1


# -- keys -----------------------------------------------------------------------------------
def test_api_keys_and_ownership(tmp_path, speech):
    srv = Server(tmp_path / "keys")
    srv.home.mkdir(parents=True)
    env = {"TINGXIE_HOME": str(srv.home), "PATH": "/usr/bin:/bin"}

    def key(name: str, *extra: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "tingxie", "keys", "create", name, *extra],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split("secret (shown once, store it now): ")[1].strip()

    admin, alice, bob = key("ops", "--admin"), key("alice"), key("bob")
    with srv:
        assert (
            httpx.post(f"{srv.url}/v1/audio/transcriptions", files={"file": ("a.wav", speech.read_bytes())}).status_code
            == 401
        )
        bad = client(srv, "tx-wrong")
        with pytest.raises(openai.AuthenticationError):
            bad.audio.transcriptions.create(model="whisper-base", file=open(speech, "rb"))
        with open(speech, "rb") as f:
            assert "fox" in client(srv, alice).audio.transcriptions.create(model="whisper-base", file=f).text.lower()
        h = lambda k: {"Authorization": f"Bearer {k}"}  # noqa: E731
        r = httpx.post(f"{srv.url}/api/jobs", files={"files": ("mine.wav", speech.read_bytes())}, headers=h(alice))
        job_id = r.json()["jobs"][0]["id"]
        assert httpx.get(f"{srv.url}/api/jobs/{job_id}", headers=h(bob)).status_code == 404
        assert job_id not in [j["id"] for j in httpx.get(f"{srv.url}/api/jobs", headers=h(bob)).json()["jobs"]]
        assert httpx.get(f"{srv.url}/api/jobs/{job_id}", headers=h(admin)).status_code == 200
        assert httpx.post(f"{srv.url}/api/system/empty-cache", headers=h(alice)).status_code == 403
        assert "CPU" in httpx.post(f"{srv.url}/api/system/empty-cache", headers=h(admin)).json()["message"]
        wait_jobs(srv.url, [job_id], headers=h(alice))
        # an export names jobs by id: another key's job refuses the whole export
        export = f"{srv.url}/api/jobs/export"
        assert httpx.get(export, params={"ids": job_id}, headers=h(bob)).status_code == 404
        mine = zipfile.ZipFile(io.BytesIO(httpx.get(export, params={"ids": job_id}, headers=h(alice)).content))
        assert {"mine.txt", "mine.srt", "mine.json", "summary.csv"} == set(mine.namelist())
        everyone = zipfile.ZipFile(io.BytesIO(httpx.get(export, headers=h(admin)).content))
        assert "mine.txt" in everyone.namelist()
        assert "mine.txt" not in zipfile.ZipFile(io.BytesIO(httpx.get(export, headers=h(bob)).content)).namelist()


def test_refuses_public_bind_without_keys(tmp_path):
    env = {"TINGXIE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [sys.executable, "-m", "tingxie", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "without API keys" in r.stderr


# -- crash safety -----------------------------------------------------------------------------
def test_kill_9_during_jobs_then_restart_finishes_each_once(tmp_path, speech):
    home = tmp_path / "crash"
    srv = Server(home).start()
    try:
        files = [("files", (f"job{i}.wav", speech.read_bytes())) for i in range(8)]
        ids = [j["id"] for j in httpx.post(f"{srv.url}/api/jobs", files=files, data={"language": "en"}).json()["jobs"]]
        from tingxie.store import Store

        def states() -> list[str]:
            return [j["state"] for j in httpx.get(f"{srv.url}/api/jobs", params={"limit": 100}).json()["jobs"]]

        wait_until(lambda: "running" in states(), what="a job running")
        srv.kill()  # mid-run: the database says which jobs the dead process held
        store = Store(f"sqlite:///{home / 'tingxie.db'}", migrate=False)
        held = [r["id"] for r in store.list_jobs(limit=100)[0] if r["state"] == "running"]
        assert held, "no job was running when the server was killed"
        srv.proc = None
        srv.start()
        jobs = wait_jobs(srv.url, ids)
        assert [j["state"] for j in jobs] == ["done"] * 8
        assert all("fox" in j["text"].lower() for j in jobs)
        rows, _ = store.list_jobs(limit=100)
        assert sorted(r["id"] for r in rows if r["kind"] == "batch_item") == sorted(ids)  # no duplicates, none lost
    finally:
        srv.stop()


# -- PostgreSQL -------------------------------------------------------------------------------
def test_server_on_postgresql(tmp_path, speech, pg_db_url):
    with Server(tmp_path / "pg", env={"TINGXIE_DATABASE_URL": pg_db_url}) as srv:
        r = httpx.post(f"{srv.url}/api/jobs", files={"files": ("pg.wav", speech.read_bytes())}, data={"language": "en"})
        job = wait_jobs(srv.url, [r.json()["jobs"][0]["id"]])[0]
        assert job["state"] == "done" and "fox" in job["text"].lower()
        assert httpx.get(f"{srv.url}/api/jobs", params={"q": "lazy"}).json()["jobs"][0]["id"] == job["id"]


def test_reference_pipeline_serves_through_the_api(tmp_path, speech):
    """`tingxie serve --pipeline reference`, the baseline bench/load.py compares against: same API,
    one request at a time through the reference pipeline, and it says so."""
    with Server(tmp_path / "reference", args=["--pipeline", "reference"]) as srv:
        system = httpx.get(srv.url + "/api/system").json()
        assert system["pipeline"] == "reference" and system["instances"] == 1 and system["max_batch_size"] == 1
        with open(speech, "rb") as f:
            r = client(srv).audio.transcriptions.create(model="whisper-base", file=f, response_format="verbose_json")
        assert "lazy dog" in r.text.lower() and r.language == "en" and r.segments
        assert (
            httpx.get(srv.url + "/api/system").json()["models"][0]["stats"]["batches"] == 0
        )  # the batcher stayed idle
