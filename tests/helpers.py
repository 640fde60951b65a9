"""Constants and helpers shared by test modules, so test modules never import each other
(the fixtures live in conftest.py):

    from helpers import MODELS, write_wav
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# One assembled model shared by every test home (assembling takes seconds).
MODELS = Path(os.environ.get("TINGXIE_TEST_MODELS", Path.home() / ".cache" / "tingxie" / "models"))


def write_wav(path: Path, x: np.ndarray, rate: int = 16000) -> Path:
    """16-bit WAV of `x`: (samples,) mono, or (samples, channels)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if x.ndim == 1 else x.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


# A call for channels=split, as (channel, eval clip, start in seconds): one Mandarin speaker
# (AISHELL S0150) on the left, an English speaker (TIMIT) on the right answering in between,
# so the turns go CH1, CH2, CH1 and each channel is in its own language.
CALL_TURNS = [
    (1, "aishell_sample_BAC009S0150W0193", 0.5),
    (2, "deepspeech_LDC93S1", 6.0),
    (1, "aishell_sample_BAC009S0150W0313", 10.0),
]
CALL_SECONDS = 16.5


def write_call(corpus_dir: Path, path: Path) -> dict[int, tuple[str, str]]:
    """Write the stereo call to `path`; returns per channel (language, reference text)."""
    import json

    from tingxie.audio import decode

    lines = (corpus_dir / "manifest.jsonl").read_text().splitlines()
    manifest = {m["id"]: m for m in (json.loads(line) for line in lines if line.strip())}
    tracks = {c: np.zeros(int(CALL_SECONDS * 16000), np.float32) for c in (1, 2)}
    refs: dict[int, tuple[str, str]] = {}
    for channel, clip, start in CALL_TURNS:
        x = decode(corpus_dir / manifest[clip]["audio"])
        at = int(start * 16000)
        tracks[channel][at : at + x.size] = x
        lang, text = refs.get(channel, (manifest[clip]["lang"], ""))
        refs[channel] = (lang, text + ("" if lang == "zh" else " ") + manifest[clip]["text"])
    write_wav(path, np.stack([tracks[1], tracks[2]], axis=1))
    return refs


class Receiver:
    """A callback receiver on 127.0.0.1 recording every request; `status` is what it
    answers (changeable while running)."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[dict] = []
        me = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                me.requests.append(
                    {
                        "path": self.path,
                        "host": self.headers.get("host"),
                        "body": json.loads(body or b"{}"),
                        "raw": body,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "answered": me.status,
                    }
                )
                self.send_response(me.status)
                if me.status in (301, 302, 307, 308):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Order a test by what happened, not by a sleep: poll until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout:.0f} s")
        time.sleep(0.01)
