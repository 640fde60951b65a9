"""The API matches its schema (issue 29): schemathesis fuzzes every operation of a live
`tingxie serve` from its own /openapi.json, with an admin key, and checks that no answer is
a 5xx, and that every status code, content type and response body is one the schema
declares. Deterministic (fixed seed, no example database), bounded to a few minutes.

Real jobs are made first, and their ids handed to the operations that take one, so the
fuzzer reaches finished jobs, their results, audio and batch instead of only 404s.

Also here: the smaller API defects of issue 29 (unknown model on /unload, no server path in
/api/models or /api/system)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers import ROOT
from server_fixture import Server, shared_models

pytest.importorskip("schemathesis", reason="schemathesis is a test dependency: pip install -e '.[test]'")

SENTENCE = "The quick brown fox jumps over the lazy dog."


def _new_key(home: Path, name: str, *extra: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "tingxie", "keys", "create", name, *extra],
        env={**os.environ, "TINGXIE_HOME": str(home)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return r.stdout.split("secret (shown once, store it now): ")[1].strip()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server with keys: (server, admin key, user key)."""
    home = tmp_path_factory.mktemp("schema")
    shared_models(home)
    admin, user = _new_key(home, "fuzz", "--admin"), _new_key(home, "alice")
    with Server(home) as srv:
        yield srv, admin, user


def _bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _wait_done(url: str, key: str, ids: list[str]) -> list[dict]:
    deadline = time.time() + 300
    while time.time() < deadline:
        jobs = [httpx.get(f"{url}/api/jobs/{i}", headers=_bearer(key), timeout=60).json() for i in ids]
        if all(j["state"] in ("done", "failed") for j in jobs):
            return jobs
        time.sleep(0.5)
    raise AssertionError("jobs did not finish")


# -- smaller defects --------------------------------------------------------------------------
def test_unknown_model_unload_is_404_like_load(keyed):
    srv, admin, _ = keyed
    for name in ("WHISPER-BASE", "%00", "%252e%252e", "no-such-model"):
        for action in ("load", "unload"):
            r = httpx.post(f"{srv.url}/api/models/{name}/{action}", headers=_bearer(admin), timeout=60)
            assert r.status_code == 404, (name, action, r.status_code, r.text)
            assert r.json()["error"]["code"] == "model_not_found"


def test_no_model_path_in_the_api_for_anyone(keyed):
    """README: no API field shows a server path — not to admins either (`tingxie models`,
    on the server, shows where models live)."""
    srv, admin, user = keyed
    models_dir = str(srv.home / "models")
    for key in (admin, user):
        for path in ("/api/models", "/api/system", "/v1/models"):
            r = httpx.get(f"{srv.url}{path}", headers=_bearer(key), timeout=60)
            assert r.status_code == 200, r.text
            assert models_dir not in r.text and str(srv.home) not in r.text, (path, r.text[:300])
            assert '"path"' not in r.text, path
    loaded = httpx.get(f"{srv.url}/api/system", headers=_bearer(admin), timeout=60).json()["models"]
    assert loaded and all("path" not in m for m in loaded)  # the loaded model is listed, without its path


# -- the schema -------------------------------------------------------------------------------
def test_validation_errors_are_documented_as_the_server_answers(keyed):
    srv, admin, _ = keyed
    spec = httpx.get(f"{srv.url}/openapi.json", timeout=60).json()
    r = httpx.get(f"{srv.url}/api/jobs", params={"limit": "many"}, headers=_bearer(admin), timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
    op = spec["paths"]["/api/jobs"]["get"]["responses"]
    assert "422" not in op and op["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    created = spec["paths"]["/api/jobs"]["post"]["responses"]["202"]["content"]["application/json"]["schema"]
    assert created["$ref"].endswith("/JobsCreated")  # no longer an empty schema
    hook = spec["paths"]["/api/jobs"]["post"]["callbacks"]["job_ended"]
    [(expr, item)] = hook.items()
    assert expr == "{$request.body#/callback_url}"
    headers = {p["name"] for p in item["post"]["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}


def test_schemathesis_finds_no_deviation(keyed, synth_speech, tmp_path):
    srv, admin, _ = keyed
    speech = synth_speech(SENTENCE, tmp_path / "fox.wav").read_bytes()
    files = [("files", (n, speech)) for n in ("a.wav", "b.wav", "gone.wav")]
    r = httpx.post(f"{srv.url}/api/jobs", files=files, data={"language": "en"}, headers=_bearer(admin), timeout=300)
    assert r.status_code == 202, r.text
    batch, (done, other, gone) = r.json()["batch_id"], [j["id"] for j in r.json()["jobs"]]
    assert all(j["state"] == "done" for j in _wait_done(srv.url, admin, [done, other, gone]))

    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"""
headers = {{ Authorization = "Bearer {admin}" }}
request-timeout = 120
generation.database = "none"

[checks]  # these four, everywhere
enabled = false
not_a_server_error.enabled = true
status_code_conformance.enabled = true
response_schema_conformance.enabled = true
content_type_conformance.enabled = true

[[operations]]
include-path-regex = "^/api/jobs/\\\\{{job_id\\\\}}"
exclude-method = "DELETE"
parameters = {{ job_id = "{done}" }}

[[operations]]
include-path = "/api/jobs/{{job_id}}"
include-method = "DELETE"
parameters = {{ job_id = "{gone}" }}

[[operations]]
include-path = "/api/batches/{{batch_id}}"
parameters = {{ batch_id = "{batch}" }}

# 503 "not ready" is /readyz's documented answer when the fuzzer has unloaded the model
[[operations]]
include-path = "/readyz"
checks.not_a_server_error.enabled = false
""",
        encoding="utf-8",
    )
    report = tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{srv.url}/openapi.json",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "8",
        "--generation-deterministic",  # the same cases on every run: no random failure on a clean clone
        "--workers",
        "1",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # every operation was exercised (none skipped for an error in the schema)
    spec = httpx.get(f"{srv.url}/openapi.json", timeout=60).json()
    n_ops = sum(len(ops) for ops in spec["paths"].values())
    assert f"Tested: {n_ops}" in run.stdout, run.stdout[-3000:]
    assert report.exists() and json.loads(report.read_text())
