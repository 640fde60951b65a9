"""Real-time recognition in FunASR runtime's WebSocket protocol (`/funasr`,
runtime/docs/websocket_protocol.md), so existing FunASR clients work unchanged; see
docs/streaming.md. Admission, timeouts and the history are those of `/v1/stream`
(`stream_api.py`); what differs is the messages and FunASR's offline mode, which
decodes one utterance from disk like an upload."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from ..audio import MIN_SAMPLE_RATE
from ..options import parse_hotwords, parse_language
from ..request import TranscriptionOptions
from ..scheduler import INTERACTIVE
from ..stream import StreamOptions, StreamSession, TooFast, open_session
from ..transcribe import transcribe
from ..types import AudioError, OptionsError
from .auth import Principal
from .stream_api import (
    CLOSE_TIMEOUT,
    CLOSE_TOO_BIG,
    CLOSE_TOO_FAST,
    admit,
    close,
    keep_abandoned,
    observer,
    receive,
    record,
    release,
    save_session,
    scheduler_and_model,
    send_json,
    take_slot,
    timeouts,
)
from .uploads import PART

router = APIRouter(tags=["real-time"])


def _funasr_hotwords(v: Any) -> list[str]:
    """FunASR sends a JSON string of {"word": weight}; plain strings and lists work too.
    Whisper has no weights: the words go into the decoder prompt."""
    if not v:
        return []
    if isinstance(v, str):
        try:
            parsed = json.loads(v)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return parse_hotwords([str(k) for k in parsed])
        return parse_hotwords(v.replace(" ", ","))
    if isinstance(v, dict):
        return parse_hotwords([str(k) for k in v])
    if isinstance(v, list):
        return parse_hotwords([str(k) for k in v])
    raise OptionsError(f"hotwords must be a JSON string of {{word: weight}}, not {v!r}")


Opts = TypeVar("Opts", StreamOptions, TranscriptionOptions)


class _FunasrConfig:
    def __init__(self) -> None:
        self.mode = "2pass"
        self.wav_name = "demo"
        self.wav_format = "pcm"
        self.audio_fs = 16000
        self.hotwords: list[str] = []
        self.itn = True
        self.language: str | None = None
        self.languages: tuple[str, ...] | None = None  # the model's, to refuse others

    def update(self, m: dict) -> None:
        if "mode" in m:
            if m["mode"] not in ("offline", "online", "2pass"):
                raise OptionsError(f"mode must be offline, online or 2pass, not {m['mode']!r}")
            self.mode = m["mode"]
        if "wav_name" in m:
            self.wav_name = str(m["wav_name"])
        if "wav_format" in m:
            self.wav_format = str(m["wav_format"] or "pcm").lower()
        if "audio_fs" in m:
            self.audio_fs = sample_rate(m["audio_fs"], "audio_fs")
        if "hotwords" in m:
            self.hotwords = _funasr_hotwords(m["hotwords"])
        if "itn" in m:
            self.itn = bool(m["itn"])
        if "svs_lang" in m and isinstance(m["svs_lang"], str) and m["svs_lang"] not in ("", "auto"):
            self.language = parse_language(m["svs_lang"], self.languages)
        self.file_options()  # refused now, as any API refuses it, not when audio comes

    def _options(self, model: type[Opts], **more: Any) -> Opts:
        """The recognition options as request.py declares and validates them (the same
        OptionsError as every API); FunASR's wire names map onto them here."""
        return model.parse({"language": self.language, "hotwords": self.hotwords, "itn": self.itn, **more})

    def stream_options(self) -> StreamOptions:
        """A live session's options. FunASR allows any input rate (StreamResampler
        handles it), so the rate is the one field outside the schema's list: it was
        checked against MIN_FS–MAX_FS when the config arrived."""
        opts = self._options(StreamOptions, partials=self.mode != "offline")
        return opts.model_copy(update={"sample_rate": self.audio_fs})

    def file_options(self) -> TranscriptionOptions:
        """Offline mode's options: the received audio transcribed as a file."""
        return self._options(TranscriptionOptions)


# Input rates taken (FunASR's clients send 8–48 kHz): resampling from far outside this
# range would make a few bytes cost seconds of audio (1 Hz → 16000 samples each). The
# floor is the one uploaded files have.
MIN_FS, MAX_FS = MIN_SAMPLE_RATE, 192000


def sample_rate(fs: object, what: str) -> int:
    if isinstance(fs, bool) or not isinstance(fs, int) or not MIN_FS <= fs <= MAX_FS:
        raise OptionsError(f"{what} must be a sample rate in Hz ({MIN_FS} to {MAX_FS}), not {fs!r}")
    return fs


def _strip_wav_header(data: bytes) -> tuple[bytes, int | None]:
    """A RIFF/WAVE header in front of PCM: skip to the data chunk, return its rate."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data, None
    pos, rate = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"fmt ":
            rate = int.from_bytes(data[pos + 12 : pos + 16], "little")
        if cid == b"data":
            return data[pos + 8 :], rate
        pos += 8 + size + (size & 1)
    return b"", rate


class _FunasrSink:
    """Turns StreamSession messages into FunASR replies. FunASR clients append
    `online` texts to what they show, so partials are sent as increments of the text
    two consecutive partials agree on (it only ever grows); a final resets the shown
    online text in 2pass mode (the reference client's rule)."""

    def __init__(self, ws: WebSocket, cfg: _FunasrConfig) -> None:
        self.ws, self.cfg = ws, cfg
        self.sent = ""  # online text already sent for the open sentence
        self.prev = ""  # previous partial of the open sentence
        self.last_final: dict | None = None

    async def __call__(self, m: dict) -> None:
        mode = self.cfg.mode
        if m["type"] == "partial":
            agreed = _common_prefix(self.prev, m["text"])
            self.prev = m["text"]
            if agreed.startswith(self.sent) and len(agreed) > len(self.sent):
                delta, self.sent = agreed[len(self.sent) :], agreed
                await self._reply("2pass-online" if mode == "2pass" else "online", delta, False)
        elif m["type"] == "final":
            text = m["text"]
            ts = json.dumps([[int(m["start"] * 1000), int(m["end"] * 1000)]])
            if mode == "online":
                rest = (
                    text[len(self.sent) :]
                    if text.startswith(self.sent)
                    else text[len(_common_prefix(self.sent, text)) :]
                )
                await self._reply("online", rest, False, ts)
            else:
                await self._reply("2pass-offline", text, False, ts)
            self.sent = self.prev = ""
        elif m["type"] == "error":
            await send_json(
                self.ws,
                {"mode": mode, "wav_name": self.cfg.wav_name, "text": "", "is_final": False, "error": m["message"]},
            )

    async def _reply(self, mode: str, text: str, final: bool, ts: str | None = None) -> None:
        msg = {"mode": mode, "wav_name": self.cfg.wav_name, "text": text, "is_final": final}
        if ts is not None:
            msg["timestamp"] = ts
        await send_json(self.ws, msg)


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def _model_languages(state, model: str | None = None) -> tuple[str, ...]:
    return tuple(state.manager.spec(model).languages)


@router.websocket("/funasr")
async def funasr(ws: WebSocket) -> None:
    """FunASR runtime WebSocket protocol (runtime/docs/websocket_protocol.md)."""
    who = await admit(ws)
    if who is None:
        return
    state = ws.app.state.tx
    cfg = _FunasrConfig()
    cfg.languages = _model_languages(state)
    session: StreamSession | None = None
    offline: _OfflineSpool | None = None
    header_checked = False
    sched, model = scheduler_and_model(state)
    first_timeout, idle_timeout = timeouts(state)
    max_bytes = state.settings.max_upload_mb * 1024 * 1024
    received_any = False

    async def error(message: str) -> None:
        await send_json(
            ws, {"mode": cfg.mode, "wav_name": cfg.wav_name, "text": "", "is_final": False, "error": message}
        )

    async def start_session() -> StreamSession:
        opts = cfg.stream_options()
        return await open_session(
            sched,
            opts,
            _FunasrSink(ws, cfg),
            uuid.uuid4().hex,
            on_update=observer(state),
            max_backlog_s=state.settings.stream_max_backlog_s,
        )

    async def end_utterance() -> None:
        nonlocal session, offline, header_checked
        if cfg.mode == "offline":
            spool, offline = offline, None
            try:
                await _offline(ws, state, who, cfg, spool, sched, model)
            finally:
                if spool is not None:
                    spool.discard()
        else:
            s = session or await start_session()
            await s.finish(connected=True)
            await send_json(
                ws,
                {
                    "mode": "2pass-offline" if cfg.mode == "2pass" else "online",
                    "wav_name": cfg.wav_name,
                    "text": "",
                    "is_final": True,
                },
            )
            await save_session(state, who, s, model)
            session = None
        header_checked = False

    try:
        while True:
            msg = await receive(ws, idle_timeout if received_any else first_timeout)
            if msg is None:
                reason = (
                    f"no audio or message for {idle_timeout:g} s"
                    if received_any
                    else f"no message within {first_timeout:g} s"
                )
                if offline is not None or session is not None:  # decode and keep what was sent before closing
                    await end_utterance()
                await error(reason + "; closing")
                await close(ws, CLOSE_TIMEOUT, reason)
                break
            received_any = True
            if msg["type"] == "websocket.disconnect":
                break
            if not await take_slot(ws):  # a message came: the connection becomes a session
                break
            data = msg.get("bytes")
            if data is not None:
                if cfg.mode == "offline":
                    # Offline audio waits for is_speaking false: kept on disk, bounded like an upload.
                    if offline is None:
                        offline = _OfflineSpool(Path(state.settings.audio_dir), cfg)
                    if offline.size + len(data) > max_bytes:
                        reason = f"audio too large: offline mode takes at most {state.settings.max_upload_mb} MB per utterance"
                        offline.discard()
                        offline = None
                        await send_json(
                            ws,
                            {
                                "mode": "offline",
                                "wav_name": cfg.wav_name,
                                "text": "",
                                "is_final": True,
                                "error": reason,
                            },
                        )
                        await close(ws, CLOSE_TOO_BIG, reason[:120])
                        break
                    await asyncio.to_thread(offline.write, data)
                    continue
                if not header_checked:
                    data, rate = _strip_wav_header(data)
                    header_checked = True
                    if rate is not None:
                        try:
                            cfg.audio_fs = sample_rate(rate, "the WAV header's rate")
                        except OptionsError as e:
                            await error(f"{e}; frame dropped")
                            continue
                if session is None:
                    try:
                        session = await start_session()
                    except OptionsError as e:  # an option the model cannot honour
                        await error(str(e))
                        continue
                if len(data) % 2:
                    await error(
                        f"binary frame has an odd number of bytes ({len(data)}); PCM16 frames must hold whole samples — frame dropped"
                    )
                    continue
                if data:
                    try:
                        await session.feed(data)
                    except TooFast as e:  # its slot is freed, its queued windows dropped, its finals kept (finally)
                        release(ws)  # first: the close handshake waits behind the client's audio
                        await session.abandon()
                        await error(str(e))
                        await close(ws, CLOSE_TOO_FAST, "audio arrives faster than it can be decoded")
                        break
                continue
            try:
                m = json.loads(msg.get("text") or "")
                if not isinstance(m, dict):
                    raise OptionsError("messages must be JSON objects")
                if session is None or set(m) - {"is_speaking"}:
                    cfg.update(m)
            except json.JSONDecodeError as e:
                await error(f"text message is not valid JSON ({e.msg})")
                continue
            except OptionsError as e:
                await error(str(e))
                continue
            if m.get("is_speaking") is False:
                await end_utterance()
    except WebSocketDisconnect:
        pass
    finally:
        if offline is not None:
            offline.discard()
        if session is not None:
            await keep_abandoned(state, who, session, model, ws)
        release(ws)


class _OfflineSpool:
    """FunASR offline audio until is_speaking false, written to a locked `.part` file in
    the storage dir like an upload (memory does not grow with what a client sends; a
    crash leaves a file the start-up cleanup removes). Raw PCM gets a WAV header so the
    file decodes like any uploaded one."""

    def __init__(self, audio_dir: Path, cfg: _FunasrConfig) -> None:
        import fcntl
        import tempfile

        audio_dir.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.file = tempfile.NamedTemporaryFile(dir=audio_dir, prefix="funasr-", suffix=PART, delete=False)  # noqa: SIM115 - lives across messages
        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)
        self.path = Path(self.file.name)
        self.size = 0
        self.wav_header = False

    def write(self, data: bytes) -> None:
        if self.size == 0 and self.cfg.wav_format == "pcm" and not (data[:4] == b"RIFF" and data[8:12] == b"WAVE"):
            self.file.write(_wav_header(self.cfg.audio_fs, 0))
            self.wav_header = True
        self.file.write(data)
        self.size += len(data)

    def finish(self) -> Path:
        """Close the file (WAV header sizes filled in) and return its path."""
        if self.wav_header:
            n = self.size - (self.size & 1)
            self.file.truncate(44 + n)
            self.file.seek(0)
            self.file.write(_wav_header(self.cfg.audio_fs, n))
        self.file.close()
        return self.path

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def _wav_header(rate: int, data_bytes: int) -> bytes:
    import struct

    return b"RIFF" + struct.pack(
        "<I4s4sIHHIIHH4sI", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16, b"data", data_bytes
    )


async def _offline(
    ws: WebSocket, state, who: Principal, cfg: _FunasrConfig, spool: _OfflineSpool | None, sched, model: str
) -> None:
    """FunASR offline mode: one result for the whole received audio (decoded from disk)."""
    try:
        if spool is None or spool.size < 2:
            raise AudioError("no audio was sent before is_speaking false")
        path = await asyncio.to_thread(spool.finish)
        decode, vad, text = cfg.file_options().pipeline()
        try:
            t = await asyncio.to_thread(
                transcribe,
                str(path),
                sched,
                decode,
                vad,
                text,
                lane=INTERACTIVE,
                owner=f"funasr-{cfg.wav_name}",
            )
        except AudioError as e:  # name the client's wav_name, never the storage file
            raise AudioError(str(e).replace(path.name, cfg.wav_name)) from None
    except (AudioError, OptionsError) as e:
        await send_json(
            ws, {"mode": "offline", "wav_name": cfg.wav_name, "text": "", "is_final": True, "error": str(e)}
        )
        return
    ts = json.dumps([[int(s.start * 1000), int(s.end * 1000)] for s in t.segments])
    await send_json(
        ws, {"mode": "offline", "wav_name": cfg.wav_name, "text": t.text, "is_final": True, "timestamp": ts}
    )
    await record(
        state,
        who,
        model,
        t,
        uuid.uuid4().hex,
        None,
        filename=f"realtime-{time.strftime('%Y%m%d-%H%M%S')}",
        options={"funasr": cfg.__dict__},
    )
