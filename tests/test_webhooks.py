"""Webhooks a receiver can trust (issue 29): every callback is signed and identified the
Standard Webhooks way, so a receiver verifies it with the code in docs/webhooks.md and drops
a redelivery by its id; and no IPv6 spelling of an internal IPv4 address passes the SSRF
guard."""

from __future__ import annotations

import pytest

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
