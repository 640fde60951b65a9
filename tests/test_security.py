"""No door left open (issue 12 §2) and callbacks that survive a crash (§4): a real
`tingxie serve`, the official `openai` client, and only loopback traffic (callback
receivers listen on 127.0.0.1; public-bind checks resolve addresses or run in an empty
network namespace)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from helpers import Receiver
from server_fixture import ROOT, Server

openai = pytest.importorskip("openai")

SENTENCE = "The quick brown fox jumps over the lazy dog."
STORAGE_NAME = re.compile(r"[0-9a-f]{32}\.[a-z0-9]+")


@pytest.fixture(scope="module")
def speech(tmp_path_factory, synth_speech) -> Path:
    return synth_speech(SENTENCE, tmp_path_factory.mktemp("speech") / "fox.wav")


def _env(home: Path) -> dict:
    return {**os.environ, "TINGXIE_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def tingxie(home: Path, *args: str, env: dict | None = None, timeout: float = 60, prefix: list[str] | None = None):
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "tingxie", *args],
        env={**_env(home), **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def new_key(home: Path, name: str, *extra: str) -> tuple[str, str]:
    out = tingxie(home, "keys", "create", name, *extra).stdout
    return out.split("created key ")[1].split()[0], out.split("secret (shown once, store it now): ")[1].strip()


def get(url: str, **kw) -> httpx.Response:
    return httpx.get(url, timeout=120, **kw)  # generous: the CI box has 2 shared cores


def post(url: str, **kw) -> httpx.Response:
    return httpx.post(url, timeout=300, **kw)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def wait_for(fn, timeout: float = 300, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(every)
    raise AssertionError("condition not reached")


# -- binding ----------------------------------------------------------------------------------
def test_publicness_comes_from_the_addresses_actually_bound():
    """Every spelling of "all interfaces" is public; loopback spellings are not. Decided on
    getaddrinfo's answer (what gets bound), not on the spelling."""
    from tingxie.cli_server import bind_addresses, public_addresses

    for host in ("", "0.0.0.0", "::", "0"):
        assert public_addresses(bind_addresses(host, 8000)), f"--host {host!r} must count as public"
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2", "2130706433"):
        addrs = bind_addresses(host, 8000)
        assert addrs and not public_addresses(addrs), f"--host {host!r} is loopback only: {addrs}"
    # a name resolving to a routable address (what getaddrinfo answers for such a name)
    assert public_addresses([(socket.AF_INET, ("127.0.0.1", 80)), (socket.AF_INET, ("203.0.113.7", 80))]) == [
        "203.0.113.7"
    ]
    assert public_addresses([(socket.AF_INET6, ("::ffff:10.0.0.1", 80, 0, 0))]) == ["::ffff:10.0.0.1"]
    assert public_addresses([(socket.AF_INET6, ("::ffff:127.0.0.1", 80, 0, 0))]) == []


UNSHARE = shutil.which("unshare")


def _isolated(extra_mount: str = "") -> list[str]:
    """Run in a fresh network namespace (only a loopback device): nothing bound there is
    reachable from anywhere, even if a check regresses."""
    if not UNSHARE or subprocess.run([UNSHARE, "-n", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n -m not permitted here (needs root or user namespaces)")
    return [UNSHARE, "-n", "-m", "sh", "-c", f'{extra_mount}ip link set lo up; exec "$@"', "sh"]


@pytest.mark.parametrize("host", ["", "0.0.0.0", "::", "0", "public-name.test"])
def test_public_bind_without_keys_is_refused_for_every_spelling(tmp_path, host):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n203.0.113.7 public-name.test\n")
    prefix = _isolated(f"mount --bind {hosts} /etc/hosts; ")
    r = tingxie(tmp_path, "serve", "--host", host, "--port", "18431", prefix=prefix)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "refusing to listen on" in r.stderr and "without API keys" in r.stderr
    # and TINGXIE_AUTH=off is no way around it
    r = tingxie(tmp_path, "serve", "--host", host, "--port", "18431", env={"TINGXIE_AUTH": "off"}, prefix=prefix)
    assert r.returncode == 2 and "TINGXIE_AUTH=off" in r.stderr


_PUBLIC_PROBE = r"""
import subprocess, sys, time, httpx
home, key, kid, port = sys.argv[1:5]
srv = subprocess.Popen([sys.executable, "-m", "tingxie", "serve", "--host", "", "--port", port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200: break
        except httpx.HTTPError: time.sleep(0.2)
    out = {"anonymous": httpx.get(url + "/api/jobs", timeout=60).status_code,
           "keyed": httpx.get(url + "/api/jobs", headers={"Authorization": "Bearer " + key}, timeout=60).status_code,
           "v6_anonymous": httpx.get(f"http://[::1]:{port}/api/jobs", timeout=60).status_code}
    subprocess.run([sys.executable, "-m", "tingxie", "keys", "revoke", kid], check=True, capture_output=True)
    time.sleep(2.2)  # the server re-reads the keys table every 2 s
    out["anonymous_after_revoking_all"] = httpx.get(url + "/api/jobs", timeout=60).status_code
    print(out)
finally:
    srv.terminate(); srv.wait(20)
"""


def test_public_bind_never_serves_anonymous_callers(tmp_path):
    """`--host ""` with a key, in an isolated namespace: anonymous 401 on both address
    families, the key works, and revoking every key leaves it closed."""
    prefix = _isolated()
    kid, key = new_key(tmp_path, "ops", "--admin")
    script = tmp_path / "probe.py"
    script.write_text(_PUBLIC_PROBE)
    r = subprocess.run(
        [*prefix, sys.executable, str(script), str(tmp_path), key, kid, "18432"],
        env=_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    got = eval(r.stdout.strip().splitlines()[-1])  # noqa: S307 (our own script's dict)
    assert got == {"anonymous": 401, "keyed": 200, "v6_anonymous": 401, "anonymous_after_revoking_all": 401}


# -- keys -------------------------------------------------------------------------------------
def test_revoking_the_last_key_does_not_open_the_server(tmp_path, speech):
    home = tmp_path / "home"
    home.mkdir()
    kid, key = new_key(home, "only")
    srv = Server(home, wait_ready=False)
    with srv:
        assert get(f"{srv.url}/api/jobs").status_code == 401
        assert get(f"{srv.url}/api/jobs", headers=bearer(key)).status_code == 200
        # a key is no cookie: a browser client on another origin that holds one is served
        cross = {**bearer(key), "Origin": "https://client.example"}
        served = post(f"{srv.url}/api/vad", headers=cross, files={"file": ("fox.wav", speech.read_bytes())})
        assert served.status_code == 200 and served.json()["segments"], served.text
        assert post(f"{srv.url}/api/vad", headers={"Origin": "https://client.example"}).status_code == 401
        assert tingxie(home, "keys", "revoke", kid).returncode == 0
        time.sleep(2.2)  # the server re-reads the keys table every 2 s
        r = get(f"{srv.url}/api/jobs")
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
        assert get(f"{srv.url}/api/jobs", headers=bearer(key)).status_code == 401
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.AuthenticationError), open(speech, "rb") as f:
            c.audio.transcriptions.create(model="whisper-base", file=f)
    # opening it again is an explicit operator act, logged at start
    srv = Server(home, env={"TINGXIE_AUTH": "off"}, wait_ready=False)
    with srv:
        assert get(f"{srv.url}/api/jobs").status_code == 200
        assert "AUTHENTICATION IS OFF (TINGXIE_AUTH=off)" in srv.log.read_text()


# -- other sites' pages ------------------------------------------------------------------------
def test_pages_of_other_sites_cannot_use_a_keyless_server(tmp_path, speech):
    """A loopback install without keys, as shipped. What a browser sends for a page of
    another site is refused, whatever it asks; the server's own UI and API clients (no
    Origin) are served; a reverse proxy's name can be allowed."""
    import asyncio

    import websockets

    with Server(tmp_path / "home", env={"TINGXIE_ALLOWED_HOSTS": "asr.internal"}) as srv:
        port = srv.url.rsplit(":", 1)[1]
        audio = {"file": ("fox.wav", speech.read_bytes())}
        # cross-site writes: a plain form POST needs no preflight, so only the server can stop it
        evil = {"Origin": "http://evil.example"}
        for path, kw in (
            ("/v1/audio/transcriptions", {"files": audio, "data": {"model": "whisper-base"}}),
            ("/api/jobs", {"files": {"files": audio["file"]}}),
            ("/api/models/whisper-base/unload", {}),
        ):
            r = post(srv.url + path, headers=evil, **kw)
            assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin_refused", (path, r.text)
        assert get(f"{srv.url}/api/jobs").json()["jobs"] == []  # nothing refused left a trace
        assert all(m["loaded"] for m in get(f"{srv.url}/api/models").json()["models"] if m["default"])
        # DNS rebinding: a page whose own name now resolves to 127.0.0.1 reads nothing
        rebound = get(f"{srv.url}/api/jobs", headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 403 and "TINGXIE_ALLOWED_HOSTS" in rebound.json()["error"]["message"]
        assert get(f"{srv.url}/ui/", headers={"Host": f"evil.example:{port}"}).status_code == 403

        async def stream(origin: str) -> str:
            try:
                async with websockets.connect(srv.url.replace("http", "ws") + "/v1/stream", origin=origin) as ws:
                    await ws.close()
                    return "open"
            except websockets.InvalidStatus as e:
                return str(e.response.status_code)

        assert asyncio.run(stream("http://evil.example")) == "403"  # no dictation for other sites
        # the server's own pages, API clients and the allowed proxy name are served
        assert asyncio.run(stream(srv.url)) == "open"
        assert asyncio.run(stream("http://127.0.0.1:1337")) == "open"  # a client page served on this machine
        own = post(srv.url + "/api/system/empty-cache", headers={"Origin": srv.url})
        assert own.status_code == 200, own.text
        text = client_transcribe(srv, speech)
        assert "lazy dog" in text.lower()
        proxied = {"Host": "asr.internal", "Origin": "https://asr.internal"}
        assert post(srv.url + "/api/system/empty-cache", headers=proxied).status_code == 200
        assert get(f"{srv.url}/api/jobs", headers={"Host": f"localhost:{port}"}).status_code == 200


def client_transcribe(srv, speech: Path) -> str:
    c = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=300)
    with open(speech, "rb") as f:
        return c.audio.transcriptions.create(model="whisper-base", file=f, language="en").text


# -- callbacks --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """Loopback, no keys; callbacks allowed to 127.0.0.1 only (the test receivers)."""
    with Server(tmp_path_factory.mktemp("open"), env={"TINGXIE_CALLBACK_ALLOW": "127.0.0.1/32"}) as s:
        yield s


def _count_jobs(srv) -> int:
    return len(get(f"{srv.url}/api/jobs", params={"limit": 500}).json()["jobs"])


def _stored_files(srv) -> list[Path]:
    return [p for p in (srv.home / "audio").rglob("*") if p.is_file()]


def test_callback_to_internal_targets_is_refused(open_server, speech):
    srv = open_server
    before_jobs, before_files = _count_jobs(srv), len(_stored_files(srv))
    bad = {
        # the case: the server POSTing to its own admin API (127.0.0.1 is allow-listed here)
        f"http://localhost:{srv.port}/api/models/whisper-base/unload": "this server itself",
        f"http://127.0.0.1:{srv.port}/api/models/whisper-base/unload": "this server itself",
        "http://127.0.0.2:9/x": "loopback",
        "http://[::1]/x": "loopback",
        "http://[::ffff:127.0.0.1]/x": "loopback",
        "http://[2002:7f00:1::]/": "embeds the IPv4 address 127.0.0.1",  # 6to4 (issue 29)
        "http://2130706434/x": "does not resolve to a public address",  # 127.0.0.2 spelled as a number
        "http://0.0.0.0/x": "unspecified",
        "http://10.1.2.3/x": "private",
        "http://192.168.0.10/x": "private",
        "http://169.254.169.254/latest/meta-data/": "link-local",
        "http://224.0.0.1/x": "multicast",
        "http://240.0.0.1/x": "reserved",
        "http://100.64.0.1/x": "non-public",
        "ftp://example.org/x": "http(s) URL",
        "http:///nohost": "http(s) URL",
    }
    for url, why in bad.items():
        r = post(f"{srv.url}/api/jobs", files={"files": ("a.wav", speech.read_bytes())}, data={"callback_url": url})
        assert r.status_code == 400, (url, r.text)
        err = r.json()["error"]
        assert err["param"] == "callback_url" and why in err["message"], (url, err)
    # nothing refused leaves a trace, and the model is still loaded
    assert _count_jobs(srv) == before_jobs and len(_stored_files(srv)) == before_files
    assert get(f"{srv.url}/readyz").status_code == 200


def test_callback_url_check_unit():
    from tingxie.jobs import check_callback_url
    from tingxie.types import OptionsError

    assert check_callback_url("http://127.0.0.1:9/x", "127.0.0.0/8").ips == ("127.0.0.1",)
    assert check_callback_url("http://localhost:9/x", "localhost").ips  # allowed by name
    assert check_callback_url("https://93.184.215.14/hook").ips == ("93.184.215.14",)  # a public literal: no lookup
    for url, allow in (
        ("http://127.0.0.1/x", ""),
        ("http://127.0.0.1/x", "10.0.0.0/8"),
        ("http://localhost/x", "otherhost"),
        ("http://[fe80::1]/x", ""),
        ("http://[fc00::1]/x", ""),
        ("http://[ff02::1]/x", ""),
    ):
        with pytest.raises(OptionsError):
            check_callback_url(url, allow)


def test_callback_goes_to_the_checked_address_without_redirects(tmp_path):
    """Delivery connects to the address that was checked (a rebinding DNS answer cannot
    redirect it), keeps the URL's host name in Host, and follows no redirect."""
    from tingxie.jobs import CallbackTarget, _post_pinned, deliver_callback
    from tingxie.store import Store

    rx = Receiver(302)
    key = b"k" * 32
    try:
        target = CallbackTarget(httpx.URL(f"http://hooks.example.invalid:{rx.port}/hook"), ("127.0.0.1",))
        assert _post_pinned(target, b'{"id":"x"}', 5) == 302
        assert rx.requests[-1]["host"] == f"hooks.example.invalid:{rx.port}"
        store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        job = store.create_job(kind="file", state="done", callback_url=rx.url())
        n = len(rx.requests)
        assert not deliver_callback(store, job["id"], "http://srv", retries=1, allow="127.0.0.1", key=key)
        assert [r["path"] for r in rx.requests[n:]] == ["/hook"]  # /elsewhere never asked
        assert store.get_job(job["id"])["callback_state"] == "failed"
        # checked again at delivery: without the allow-list the same target is refused, unsent
        job = store.create_job(kind="file", state="done", callback_url=rx.url())
        n = len(rx.requests)
        assert not deliver_callback(store, job["id"], "http://srv", retries=3, allow="", key=key)
        assert len(rx.requests) == n and store.get_job(job["id"])["callback_state"] == "failed"
    finally:
        rx.close()


def test_callback_reads_a_bounded_answer():
    """A receiver answering with an endless body does not hold the sender: it reads a
    bounded amount, gives up and closes."""
    from tingxie.jobs import CallbackTarget, _post_pinned

    srv = socket.create_server(("127.0.0.1", 0))
    sent = []

    def serve():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        n = 0
        try:
            while n < 1_000_000_000:
                n += conn.send(b"x" * 65536)
        except OSError:
            pass
        sent.append(n)
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        port = srv.getsockname()[1]
        assert _post_pinned(CallbackTarget(httpx.URL(f"http://127.0.0.1:{port}/"), ("127.0.0.1",)), b"{}", 5) == 200
        t.join(60)
        assert sent and sent[0] < 100_000_000  # the sender hung up long before the end
    finally:
        srv.close()


def test_callback_is_delivered_to_an_allowed_receiver(open_server, speech):
    rx = Receiver(200)
    try:
        r = post(
            f"{open_server.url}/api/jobs",
            files={"files": ("fox.wav", speech.read_bytes())},
            data={"language": "en", "callback_url": rx.url()},
        )
        assert r.status_code == 202, r.text
        jid = r.json()["jobs"][0]["id"]
        wait_for(lambda: rx.requests)
        assert rx.requests[0]["body"]["id"] == jid and rx.requests[0]["body"]["state"] == "done"
        wait_for(lambda: get(f"{open_server.url}/api/jobs/{jid}").json()["callback_state"] == "delivered")
    finally:
        rx.close()


def test_pending_callback_resumes_after_kill_9(tmp_path, speech):
    rx = Receiver(500)  # the receiver is down: the server keeps retrying
    srv = Server(tmp_path / "cb", env={"TINGXIE_CALLBACK_ALLOW": "127.0.0.1", "TINGXIE_CALLBACK_RETRIES": "30"}).start()
    try:
        r = post(
            f"{srv.url}/api/jobs",
            files={"files": ("fox.wav", speech.read_bytes())},
            data={"language": "en", "callback_url": rx.url()},
        )
        jid = r.json()["jobs"][0]["id"]
        wait_for(lambda: len(rx.requests) >= 2)
        job = get(f"{srv.url}/api/jobs/{jid}").json()
        assert job["state"] == "done" and job["callback_state"] == "pending"
        srv.kill()
        srv.proc = None
        rx.status = 200  # the receiver is back
        n = len(rx.requests)
        srv.start()
        wait_for(lambda: any(q["answered"] == 200 for q in rx.requests[n:]), timeout=120)
        job = wait_for(lambda: (j := get(f"{srv.url}/api/jobs/{jid}").json())["callback_state"] == "delivered" and j)
        assert job["callback_attempts"] > 2
        # before the kill and after the restart: one event, one webhook-id (docs/webhooks.md)
        assert len({q["headers"]["webhook-id"] for q in rx.requests}) == 1
    finally:
        srv.stop()
        rx.close()


# -- models -----------------------------------------------------------------------------------
def test_model_is_a_registered_id_never_a_path(open_server, speech):
    srv = open_server
    c = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=300)
    ids = [m.id for m in c.models.list().data]
    assert "whisper-base" in ids
    real_dir = str(srv.home / "models" / "whisper-base")  # a real model directory on the server
    messages = {}
    for name in (
        real_dir,
        "/nonexistent/dir",
        "/tmp",
        "../models/whisper-base",
        "whisper-base/../whisper-base",
        "whisper-huge",
    ):
        with pytest.raises(openai.BadRequestError) as e, open(speech, "rb") as f:
            c.audio.transcriptions.create(model=name, file=f)
        msg = e.value.body["message"]
        assert msg.startswith("unknown model") and "available: whisper-base" in msg, msg
        messages[name] = re.sub(r"'[^']*'", "NAME", msg, count=1)
    assert len(set(messages.values())) == 1, messages  # an existing path answers like a missing one
    before = _count_jobs(srv)
    r = post(f"{srv.url}/api/jobs", files={"files": ("a.wav", speech.read_bytes())}, data={"model": real_dir})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    assert _count_jobs(srv) == before
    with open(speech, "rb") as f:
        assert "fox" in c.audio.transcriptions.create(model="whisper-base", file=f, language="en").text.lower()


def test_operator_configured_model_paths_are_ids(tmp_path):
    """A directory the operator configures is offered by its name; no key sees its path
    in the API, not even an admin (`tingxie models` shows it to the operator)."""
    home = tmp_path / "home"
    home.mkdir()
    extra = tmp_path / "site-models" / "base-copy"
    extra.parent.mkdir()
    from server_fixture import shared_models

    shared_models(home)
    extra.symlink_to((home / "models" / "whisper-base").resolve())
    _, admin = new_key(home, "ops", "--admin")
    _, user = new_key(home, "alice")
    with Server(home, env={"TINGXIE_MODEL_PATHS": str(extra)}, wait_ready=False) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key=user, max_retries=0)
        assert {"whisper-base", "base-copy"} <= {m.id for m in c.models.list().data}
        mine = get(f"{srv.url}/api/models", headers=bearer(user)).json()["models"]
        assert all("path" not in m for m in mine) and str(tmp_path) not in json.dumps(mine)
        ops = get(f"{srv.url}/api/models", headers=bearer(admin)).json()["models"]
        assert "base-copy" in {m["id"] for m in ops}
        shown = json.dumps(ops) + get(f"{srv.url}/api/system", headers=bearer(admin)).text
        assert str(tmp_path) not in shown and str(home) not in shown and '"path"' not in shown


# -- what a user key sees --------------------------------------------------------------------
def test_user_key_sees_only_its_own_counts_and_no_server_paths(tmp_path, speech):
    home = tmp_path / "home"
    home.mkdir()
    _, admin = new_key(home, "ops", "--admin")
    _, alice = new_key(home, "alice")
    _, bob = new_key(home, "bob")
    with Server(home) as srv:
        for _ in range(2):
            with open(speech, "rb") as f:
                openai.OpenAI(
                    base_url=srv.url + "/v1", api_key=alice, max_retries=0, timeout=300
                ).audio.transcriptions.create(model="whisper-base", file=f, language="en")
        r = post(
            f"{srv.url}/api/jobs",
            files={"files": ("memo.wav", speech.read_bytes())},
            data={"language": "en"},
            headers=bearer(bob),
        )
        jid = r.json()["jobs"][0]["id"]
        job = wait_for(
            lambda: (j := get(f"{srv.url}/api/jobs/{jid}", headers=bearer(bob)).json())["state"] == "done" and j
        )
        counts = {
            k: get(f"{srv.url}/api/system", headers=bearer(v)).json()["jobs"]["total"]
            for k, v in (("alice", alice), ("bob", bob), ("admin", admin))
        }
        assert counts == {"alice": 2, "bob": 1, "admin": 3}
        system = get(f"{srv.url}/api/system", headers=bearer(bob)).json()
        listing = get(f"{srv.url}/api/jobs", headers=bearer(bob)).json()
        batch = post(
            f"{srv.url}/api/jobs", files=[("files", ("x.wav", speech.read_bytes()))] * 2, headers=bearer(bob)
        ).json()
        status = get(f"{srv.url}/api/batches/{batch['batch_id']}", headers=bearer(bob)).json()
        for what, body in (("job", job), ("list", listing), ("system", system), ("batch", status)):
            text = json.dumps(body)
            assert "audio_path" not in text and str(srv.home) not in text and str(srv.home.resolve()) not in text, what
        assert job["has_audio"] is True and job["filename"] == "memo.wav"


def test_failed_request_names_the_users_file_not_the_storage_name(open_server):
    srv = open_server
    for name, data in (
        ("my recording.wav", b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 20),
        ("notes.mp3", b"\xff\xfb\x90\x00" + b"\x13" * 3000),
    ):
        r = post(f"{srv.url}/v1/audio/transcriptions", files={"file": (name, data)})
        assert r.status_code == 400, r.text
        msg = r.json()["error"]["message"]
        assert name in msg and not STORAGE_NAME.search(msg) and str(srv.home) not in msg, msg
        row = get(f"{srv.url}/api/jobs/{r.headers['x-tingxie-job']}").json() if "x-tingxie-job" in r.headers else None
        rows = get(f"{srv.url}/api/jobs", params={"state": "failed", "limit": 500}).json()["jobs"]
        for j in ([row] if row else []) + rows:
            assert not STORAGE_NAME.search(j.get("error") or ""), j["error"]
    r = post(f"{srv.url}/api/jobs", files={"files": ("broken take.wav", b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 20)})
    jid = r.json()["jobs"][0]["id"]
    job = wait_for(lambda: (j := get(f"{srv.url}/api/jobs/{jid}").json())["state"] == "failed" and j)
    assert "broken take.wav" in job["error"] and not STORAGE_NAME.search(job["error"])
