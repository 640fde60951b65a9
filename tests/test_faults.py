"""When the machine misbehaves: a full disk, a read-only database, a server killed with
kill -9. Nothing is stuck (no job stays queued/running without a live holder), nothing
accepted is lost, and every refusal names the problem (no 500s, no paths).

Real servers, a real tmpfs filled to the last byte (root only), real kill -9."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from helpers import write_wav
from server_fixture import Server
from speech_loss_audio import join

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")

FAST_REAP = {"TINGXIE_WORKER_TIMEOUT_S": "3"}  # holders silent 3 s are dead: the tests wait seconds, not minutes


@contextmanager
def tmpfs(path: Path, size: str = "20m"):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write until the filesystem refuses a byte; returns the filler (delete it to free)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for block in (1 << 16, 1):  # then the last bytes of the last block
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def remount(disk: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)


@pytest.fixture(scope="module")
def speech(corpus_dir, tmp_path_factory) -> Path:
    """~45 s of real Mandarin speech: long enough to be mid-way when the test strikes."""
    items = [json.loads(x) for x in (corpus_dir / "manifest.jsonl").read_text().splitlines() if x.strip()]
    pool = [m for m in items if m["lang"] == "zh" and m["duration_s"] < 30]
    chosen, total = [], 0.0
    while total < 45:
        for m in pool:
            chosen.append(m)
            total += m["duration_s"] + 1.0
            if total >= 45:
                break
    audio, _ = join(corpus_dir, chosen, seed=3)
    return write_wav(tmp_path_factory.mktemp("speech") / "long.wav", audio)


@pytest.fixture(scope="module")
def long_speech(corpus_dir, tmp_path_factory) -> Path:
    """~150 s of real Mandarin speech: a streamed request is still far from done after
    its first delta, whatever the machine."""
    items = [json.loads(x) for x in (corpus_dir / "manifest.jsonl").read_text().splitlines() if x.strip()]
    pool = [m for m in items if m["lang"] == "zh" and m["duration_s"] < 30]
    chosen, total = [], 0.0
    while total < 150:
        for m in pool:
            chosen.append(m)
            total += m["duration_s"] + 1.0
            if total >= 150:
                break
    audio, _ = join(corpus_dir, chosen, seed=5)
    return write_wav(tmp_path_factory.mktemp("speech") / "longer.wav", audio)


@pytest.fixture(scope="module")
def short(corpus_dir) -> Path:
    items = [json.loads(x) for x in (corpus_dir / "manifest.jsonl").read_text().splitlines() if x.strip()]
    return corpus_dir / next(m["audio"] for m in items if m["lang"] == "zh")


def job(srv: Server, job_id: str) -> dict:
    return httpx.get(f"{srv.url}/api/jobs/{job_id}", timeout=10).json()


def wait_state(srv: Server, job_id: str, states: tuple[str, ...], timeout: float) -> dict:
    deadline = time.time() + timeout
    j: dict = {}
    while time.time() < deadline:
        j = job(srv, job_id)
        if j.get("state") in states:
            return j
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {j.get('state')!r} after {timeout:.0f} s (wanted {states})")


def submit(srv: Server, path: Path) -> str:
    with open(path, "rb") as f:
        r = httpx.post(f"{srv.url}/api/jobs", files={"files": (path.name, f, "audio/wav")}, timeout=60)
    assert r.status_code == 202, r.text
    return r.json()["jobs"][0]["id"]


def files_under(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if p.is_file()]


# ---------------------------------------------------------------------------- disk full


def test_upload_on_a_full_disk_is_507_stores_nothing_and_serves_again_when_space_returns(tmp_path, short):
    with tmpfs(tmp_path / "disk") as disk, Server(disk / "home") as srv:
        before = httpx.get(f"{srv.url}/api/jobs", timeout=10).json()["jobs"]
        filler = fill(disk)
        audio_before = files_under(disk / "home" / "audio")
        for url, field in (("/api/jobs", "files"), ("/v1/audio/transcriptions", "file")):
            with open(short, "rb") as f:
                r = httpx.post(srv.url + url, files={field: ("talk.wav", f, "audio/wav")}, timeout=60)
            assert r.status_code == 507, (url, r.status_code, r.text)
            err = r.json()["error"]
            assert err["code"] == "insufficient_storage" and "disk is full" in err["message"], err
            assert "/" not in err["message"], err  # no server path
        assert files_under(disk / "home" / "audio") == audio_before  # no partial file left
        assert httpx.get(f"{srv.url}/api/jobs", timeout=10).json()["jobs"] == before  # no job row
        filler.unlink()
        job_id = submit(srv, short)
        assert wait_state(srv, job_id, ("done", "failed"), 180)["state"] == "done"
        with open(short, "rb") as f:
            r = httpx.post(srv.url + "/v1/audio/transcriptions", files={"file": ("talk.wav", f)}, timeout=180)
        assert r.status_code == 200 and r.json()["text"].strip(), r.text


def test_a_result_the_full_disk_refused_is_saved_once_space_returns(tmp_path, speech):
    """The database's disk fills while a job runs: its result cannot be saved. It must
    not stay `running` for ever: once space returns it is done (run again)."""
    with tmpfs(tmp_path / "disk") as disk:
        env = {**FAST_REAP, "TINGXIE_DATABASE_URL": f"sqlite:///{disk / 'tingxie.db'}"}
        with Server(tmp_path / "home", env=env) as srv:  # the log stays readable: it is not on the full disk
            job_id = submit(srv, speech)
            wait_state(srv, job_id, ("running",), 60)
            # Empty the write-ahead log first: SQLite reuses the space of a log it has
            # checkpointed, so a result written there would need no new space and the
            # full disk would test nothing.
            with sqlite3.connect(disk / "tingxie.db", timeout=30) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            filler = fill(disk)
            log = tmp_path / "home" / "server.log"
            deadline = time.time() + 240
            while time.time() < deadline and "not saved" not in log.read_text(errors="replace"):
                if job(srv, job_id)["state"] == "done":
                    break
                time.sleep(1)
            assert "not saved" in log.read_text(errors="replace"), "the result was saved on a full disk: no test"
            assert job(srv, job_id)["state"] in ("running", "queued")  # held by the live server, not lost
            filler.unlink()
            j = wait_state(srv, job_id, ("done", "failed"), 300)
            assert j["state"] == "done", j
            r = httpx.get(f"{srv.url}/api/jobs/{job_id}/result", timeout=10)
            assert r.json()["text"].strip()


# ---------------------------------------------------------------------------- kill -9


def _stream_until_first_delta(srv: Server, path: Path) -> str:
    """A stream=true request that is cut off (the caller leaves) after its first delta;
    returns the job id."""
    with open(path, "rb") as f, httpx.Client(timeout=300) as c:
        with c.stream(
            "POST",
            srv.url + "/v1/audio/transcriptions",
            files={"file": ("long.wav", f, "audio/wav")},
            data={"stream": "true", "language": "zh"},
        ) as r:
            assert r.status_code == 200, r.read()
            job_id = r.headers["x-tingxie-job"]
            for line in r.iter_lines():
                if line.startswith("data:") and "transcript.text.delta" in line:
                    return job_id
    raise AssertionError("no delta came")


def test_jobs_of_a_killed_server_are_finished_by_a_live_server_on_the_same_database(tmp_path, long_speech, speech):
    """Two servers share one database; A is killed with kill -9 while it holds a streamed
    synchronous request and a queued job. B (not restarted) finishes both."""
    home = tmp_path / "home"
    with Server(home, env=FAST_REAP) as b:
        a = Server(home, env=FAST_REAP).start()
        try:
            sync_id = _stream_until_first_delta(a, long_speech)
            file_id = submit(a, speech)
            a.kill()
        finally:
            a.stop()
        assert job(b, sync_id)["state"] == "running"  # cut off mid-way, held by the dead server
        for job_id in (sync_id, file_id):
            j = wait_state(b, job_id, ("done", "failed", "cancelled"), 300)
            assert j["state"] == "done", j
            assert httpx.get(f"{b.url}/api/jobs/{job_id}/result", timeout=10).json()["text"].strip()


def test_a_server_restarted_after_kill_9_finishes_what_it_held(tmp_path, long_speech):
    home = tmp_path / "home"
    a = Server(home, env=FAST_REAP).start()
    port = a.port
    try:
        sync_id = _stream_until_first_delta(a, long_speech)
        a.kill()
    finally:
        a.stop()
    with Server(home, env=FAST_REAP, port=port) as again:
        j = wait_state(again, sync_id, ("done", "failed", "cancelled"), 300)
        assert j["state"] == "done", j


# ---------------------------------------------------------------------------- read-only database


def test_a_read_only_database_fails_readiness_and_writes_get_503_naming_it(tmp_path, short):
    """The database's filesystem is read-only when the server starts (a disk the kernel
    remounted read-only after errors): the server starts, readiness fails naming the
    database, a request that needs it gets 503 naming it (no 500), nothing is stored;
    once writable again, the server is ready and works."""
    with tmpfs(tmp_path / "db") as disk:
        env = {"TINGXIE_DATABASE_URL": f"sqlite:///{disk / 'tingxie.db'}"}
        with Server(tmp_path / "home", env=env):
            pass  # the database exists, at the current schema
        remount(disk, "ro")
        try:
            with Server(tmp_path / "home", env=env, wait_ready=False) as srv:
                r = httpx.get(srv.url + "/readyz", timeout=10)
                assert r.status_code == 503 and "database" in r.json().get("database", ""), r.text
                audio_before = files_under(tmp_path / "home" / "audio")
                with open(short, "rb") as f:
                    r = httpx.post(srv.url + "/api/jobs", files={"files": ("talk.wav", f)}, timeout=60)
                assert r.status_code == 503, r.text
                err = r.json()["error"]
                assert err["code"] == "database_unavailable" and "database" in err["message"], err
                assert "/" not in err["message"], err
                assert files_under(tmp_path / "home" / "audio") == audio_before  # the refused upload left no file
                remount(disk, "rw")
                deadline = time.time() + 60
                while httpx.get(srv.url + "/readyz", timeout=10).status_code != 200 and time.time() < deadline:
                    time.sleep(0.5)
                assert httpx.get(srv.url + "/readyz", timeout=10).status_code == 200
                job_id = submit(srv, short)
                assert wait_state(srv, job_id, ("done", "failed"), 180)["state"] == "done"
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=False)
