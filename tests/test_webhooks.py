"""Webhooks a receiver can trust (issue 29): every callback is signed and identified the
Standard Webhooks way, so a receiver verifies it with the code in docs/webhooks.md and drops
a redelivery by its id; and no IPv6 spelling of an internal IPv4 address passes the SSRF
guard."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from helpers import ROOT, Receiver
from server_fixture import Server

from tingxie import webhooks
from tingxie.jobs import check_callback_url
from tingxie.types import OptionsError

# -- SSRF: IPv6 forms that embed an IPv4 address ----------------------------------------------
# (form, address embedding 127.0.0.1, embedding 10.0.0.1, embedding public 93.184.215.14,
# whether that last one is accepted: not for forms refused whatever they embed)
EMBEDDING_FORMS = [
    ("6to4", "2002:7f00:1::", "2002:a00:1::", "2002:5db8:d70e::", True),
    # Teredo: server 65.54.227.120, client = last 32 bits XOR 0xffffffff
    (
        "Teredo",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",
        "2001:0:4136:e378:8000:63bf:a247:28f1",
        True,
    ),
    ("IPv4-mapped", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:93.184.215.14", True),
    ("IPv4-compatible", "::127.0.0.1", "::10.0.0.1", "::93.184.215.14", False),  # deprecated: refused anyway
    ("NAT64 well-known", "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::5db8:d70e", True),
    ("NAT64 local-use", "64:ff9b:1::7f00:1", "64:ff9b:1::a00:1", "64:ff9b:1::5db8:d70e", False),  # operator's own
]


@pytest.mark.parametrize(
    ("form", "loopback", "private", "public", "public_ok"), EMBEDDING_FORMS, ids=[f[0] for f in EMBEDDING_FORMS]
)
def test_ipv6_forms_embedding_internal_ipv4_are_refused(form, loopback, private, public, public_ok):
    for addr, why in ((loopback, "loopback"), (private, "private")):
        with pytest.raises(OptionsError) as e:
            check_callback_url(f"http://[{addr}]/hook")
        assert why in str(e.value), (form, addr, str(e.value))
    if public_ok:  # a public host is a public host, however spelled
        assert check_callback_url(f"http://[{public}]/hook").ips == (public,)
    else:
        with pytest.raises(OptionsError):
            check_callback_url(f"http://[{public}]/hook")
    # the operator's allow-list still decides, for the address as written
    assert check_callback_url(f"http://[{private}]/hook", allow=f"{private}/128").ips == (private,)
    with pytest.raises(OptionsError):  # allowing 10.0.0.0/8 allows that network, not IPv6 spellings of it
        check_callback_url(f"http://[{private}]/hook", allow="10.0.0.0/8")


def test_6to4_loopback_is_this_server_itself():
    """The issue's probe: 2002:7f00:1:: on the server's own port is the server itself, even
    where loopback is allow-listed (it would call the admin API as a local admin)."""
    with pytest.raises(OptionsError, match="this server itself"):
        check_callback_url("http://[2002:7f00:1::]:8000/api/models/whisper-base/unload", "127.0.0.1/32", 8000)


# -- signed, identified deliveries ------------------------------------------------------------
def wait_for(fn, timeout: float = 300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if v := fn():
            return v
        time.sleep(0.2)
    raise AssertionError("condition not reached")


DOC = ROOT / "docs" / "webhooks.md"


def documented_receiver() -> dict:
    """The receiver of docs/webhooks.md, run as written there (its `__main__` part aside)."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    [code] = [b for b in blocks if "def verify(" in b]
    ns: dict = {"__name__": "webhook_receiver"}
    exec(compile(code, str(DOC), "exec"), ns)  # noqa: S102 - the documentation's own example
    return ns


def test_settings_refuse_a_malformed_secret_without_echoing_it(tmp_path):
    from pydantic import ValidationError

    from tingxie import webhooks
    from tingxie.settings import Settings

    for bad in ("hunter2-not-a-secret", "whsec_***", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValidationError) as e:
            Settings(home=tmp_path, webhook_secret=bad)
        assert "TINGXIE_WEBHOOK_SECRET" in str(e.value) and bad not in str(e.value)
    given = webhooks.new_secret()
    assert webhooks.secret(Settings(home=tmp_path, webhook_secret=given)) == given
    assert not (tmp_path / webhooks.SECRET_FILE).exists()  # a set secret is used, none generated


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory):
    """Callbacks allowed to 127.0.0.1 (the test receivers); no secret set: generated."""
    env = {"TINGXIE_CALLBACK_ALLOW": "127.0.0.1/32", "TINGXIE_CALLBACK_RETRIES": "6"}
    with Server(tmp_path_factory.mktemp("hooks"), env=env) as s:
        yield s


def cli_secret(home: Path) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "tingxie", "webhooks", "secret"],
        env={**os.environ, "TINGXIE_HOME": str(home), "TINGXIE_WEBHOOK_SECRET": ""},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_a_real_callback_verifies_with_the_documented_receiver(hook_server, synth_speech, tmp_path):
    srv = hook_server
    speech = synth_speech("The quick brown fox jumps over the lazy dog.", tmp_path / "fox.wav")
    doc = documented_receiver()
    rx = Receiver(503)  # down at first: the server retries
    try:
        r = httpx.post(
            f"{srv.url}/api/jobs",
            files={"files": ("fox.wav", speech.read_bytes())},
            data={"language": "en", "callback_url": rx.url()},
            timeout=300,
        )
        assert r.status_code == 202, r.text
        jid = r.json()["jobs"][0]["id"]
        wait_for(lambda: len(rx.requests) >= 2)
        rx.status = 200  # back
        wait_for(lambda: any(q["answered"] == 200 for q in rx.requests))
    finally:
        rx.close()
    secret = cli_secret(srv.home)  # what an operator gives the receiver
    assert secret.startswith("whsec_")
    deliveries = list(rx.requests)
    # every attempt of this one event carries one id; each is signed and verifies
    assert len({q["headers"]["webhook-id"] for q in deliveries}) == 1
    for q in deliveries:
        event = doc["verify"](secret, q["headers"], q["raw"])
        assert event == {
            "id": jid,
            "state": "done",
            "error": None,
            "result_url": f"http://127.0.0.1:{srv.port}/api/jobs/{jid}/result",
        }
        assert q["headers"]["content-type"] == "application/json"
    first = deliveries[0]
    invalid = doc["Invalid"]
    forged = {
        "altered body": (first["headers"], first["raw"].replace(b'"done"', b'"fail"')),
        "another id": ({**first["headers"], "webhook-id": "msg_other"}, first["raw"]),
        "unsigned": ({k: v for k, v in first["headers"].items() if k != "webhook-signature"}, first["raw"]),
    }
    for why, (headers, body) in forged.items():
        with pytest.raises(invalid):
            doc["verify"](secret, headers, body)
            pytest.fail(f"{why}: verified")
    with pytest.raises(invalid):  # another server's secret
        doc["verify"](webhooks.new_secret(), first["headers"], first["raw"])
    with pytest.raises(invalid):  # a recording replayed later
        doc["verify"](secret, first["headers"], first["raw"], now=int(first["headers"]["webhook-timestamp"]) + 3600)

    # the documented receiver, serving: a redelivery is acknowledged and handled once,
    # a forged request refused
    handled: list[dict] = []
    doc["SECRET"], doc["handle"] = secret, handled.append
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), doc["Hook"])
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        for q in deliveries[-2:]:
            assert httpx.post(url, content=q["raw"], headers=_webhook_headers(q["headers"])).status_code == 204
        headers, body = forged["altered body"]
        assert httpx.post(url, content=body, headers=_webhook_headers(headers)).status_code == 401
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert [e["id"] for e in handled] == [jid]
    job = wait_for(lambda: (j := httpx.get(f"{srv.url}/api/jobs/{jid}").json())["callback_state"] == "delivered" and j)
    assert job["callback_attempts"] == len(deliveries)


def _webhook_headers(headers: dict) -> dict:
    return {k: v for k, v in headers.items() if k.startswith("webhook-")}
