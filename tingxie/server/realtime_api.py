"""OpenAI's Realtime API, transcription sessions: `/v1/realtime` (docs/streaming.md).

Clients that speak OpenAI's protocol for live transcription (the official `openai`
package's `client.realtime.connect(extra_query={"intent": "transcription"})`, and the
SDKs built on it) connect here. The protocol is followed as the `openai` package's types
(`openai.types.realtime`) state it, field by field, where it applies to transcription;
what does not apply (responses, audio output, conversation items of text) is refused
with the protocol's `error` event, and the session goes on.

The work is `tingxie.stream.StreamSession`'s, on the same scheduler, admission, slots and
time limits as `/v1/stream` (`stream_api.py`'s plumbing): a conversation *item* is one
turn of the input audio. With `server_vad` turn detection each sentence the stream's VAD
closes is committed as an item (`speech_started` / `speech_stopped` / `committed`);
with turn detection `null` the client's `input_audio_buffer.commit` ends the item, which
then holds every sentence since the last commit. Partials become
`conversation.item.input_audio_transcription.delta` events (only where the new partial
extends what was sent: a delta cannot be taken back), finals `...completed`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from .. import text as text_mod
from ..request import StreamOptions
from ..stream import StreamSession, TooFast, open_session
from ..types import OptionsError
from .auth import Principal, authenticate, ws_principal
from .errors import ApiError
from .stream_api import (
    CLOSE_TIMEOUT,
    CLOSE_TOO_FAST,
    _audio_path,
    admit,
    close,
    keep_abandoned,
    observer,
    receive,
    release,
    save_session,
    scheduler_and_model,
    send_json,
    take_slot,
    timeouts,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["real-time"])

# OpenAI's transcription models (openai.types.realtime.AudioTranscription.model): each
# is served by the server's default model, as `model` left out is.
OPENAI_MODELS = frozenset(
    {
        "whisper-1",
        "gpt-transcribe",
        "gpt-live-transcribe",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "gpt-4o-mini-transcribe-2025-12-15",
        "gpt-4o-transcribe-diarize",
        "gpt-realtime-whisper",
    }
)
PCM_RATE = 24000  # the protocol's only PCM rate
G711_RATE = 8000
MIN_COMMIT_MS = 100  # the protocol's smallest committable buffer
# The protocol's defaults for server_vad, except the silence: tingxie's measured endpoint
# (request.StreamOptions.endpoint_silence_ms) unless the client names one.
DEFAULT_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300}


class ProtocolError(Exception):
    """A client event the server cannot act on: sent back as an `error` event."""

    def __init__(self, message: str, code: str, param: str | None = None, type_: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.code, self.param, self.type = message, code, param, type_


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


# -- G.711 --------------------------------------------------------------------------------
def _g711_tables() -> tuple[np.ndarray, np.ndarray]:
    """μ-law and A-law byte → 16-bit sample (ITU-T G.711)."""
    b = np.arange(256, dtype=np.int32)
    u = ~b & 0xFF
    exp, mant = (u >> 4) & 7, u & 0x0F
    ulaw = (((mant << 3) + 0x84) << exp) - 0x84
    ulaw = np.where(u & 0x80, -ulaw, ulaw)
    a = b ^ 0x55
    exp, mant = (a >> 4) & 7, a & 0x0F
    alaw = np.where(exp == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(exp - 1, 0))
    alaw = np.where(a & 0x80, alaw, -alaw)
    return ulaw.astype("<i2"), alaw.astype("<i2")


ULAW, ALAW = _g711_tables()


# -- the session's configuration ----------------------------------------------------------
@dataclass
class Config:
    """A transcription session's configuration, in the protocol's terms."""

    format: str = "audio/pcm"  # audio/pcm (24 kHz PCM16), audio/pcmu, audio/pcma
    model: str = "whisper-1"  # as the client named it
    model_id: str | None = None  # the served model (None: the server's default)
    language: str | None = None
    prompt: str | None = None
    keywords: list[str] = field(default_factory=list)
    turn_detection: dict[str, Any] | None = field(default_factory=lambda: dict(DEFAULT_VAD))
    include: list[str] = field(default_factory=list)

    @property
    def rate(self) -> int:
        return PCM_RATE if self.format == "audio/pcm" else G711_RATE

    def options(self) -> StreamOptions:
        """The stream's options for this configuration (validated: a bad value is an
        OptionsError naming it)."""
        d: dict[str, Any] = {
            "language": self.language,
            "hotwords": list(self.keywords),
            "prompt": self.prompt,
            "model": self.model_id,
        }
        td = self.turn_detection
        if td is None:  # the client commits: the VAD only marks sentences within a turn
            d["endpoint_silence_ms"] = 10000
        else:
            if td.get("silence_duration_ms") is not None:
                d["endpoint_silence_ms"] = max(100, int(td["silence_duration_ms"]))
            if td.get("threshold") is not None:
                d["vad_threshold"] = td["threshold"]
            if td.get("prefix_padding_ms") is not None:
                d["vad_speech_pad_ms"] = td["prefix_padding_ms"]
        opts = StreamOptions.parse(d)
        return opts.model_copy(update={"sample_rate": self.rate})

    def session(self, sid: str) -> dict[str, Any]:
        """The effective configuration, as `session.created` / `session.updated` carry it."""
        fmt: dict[str, Any] = {"type": self.format}
        if self.format == "audio/pcm":
            fmt["rate"] = PCM_RATE
        td = self.turn_detection
        if td is not None:
            td = {**td, "silence_duration_ms": td.get("silence_duration_ms") or self.options().endpoint_silence_ms}
        return {
            "type": "transcription",
            "id": sid,
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": fmt,
                    "transcription": {
                        "model": self.model,
                        "language": self.language,
                        "prompt": self.prompt or "",
                        "keywords": list(self.keywords),
                    },
                    "turn_detection": td,
                    "noise_reduction": None,
                }
            },
            "include": list(self.include),
        }


def _obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ProtocolError(f"{where} must be an object", "invalid_type", where)
    return v


def update_config(cfg: Config, session: Any, resolve) -> Config:
    """`session.update`'s `session` applied to `cfg` (only the fields present), as a new
    Config; `resolve(model)` → the served model id, or OptionsError."""
    s = _obj(session, "session")
    kind = s.get("type", "transcription")
    if kind != "transcription":
        raise ProtocolError(
            f"session type {kind!r} is not served: this server transcribes input audio only; "
            'use a transcription session ("type": "transcription")',
            "unsupported_session_type",
            "session.type",
        )
    new = Config(**{**cfg.__dict__, "keywords": list(cfg.keywords), "include": list(cfg.include)})
    if "include" in s:
        inc = s["include"] or []
        if not isinstance(inc, list) or any(x != "item.input_audio_transcription.logprobs" for x in inc):
            raise ProtocolError(
                'session.include may only hold "item.input_audio_transcription.logprobs"',
                "invalid_value",
                "session.include",
            )
        new.include = []  # log probabilities are not given: the effective value says so
    audio = s.get("audio")
    if audio is None:
        return new
    if _obj(audio, "session.audio").get("output") is not None:
        raise ProtocolError(
            "audio output does not apply to a transcription session", "unsupported_feature", "session.audio.output"
        )
    inp = audio.get("input")
    if inp is None:
        return new
    inp = _obj(inp, "session.audio.input")
    if inp.get("format") is not None:
        fmt = _obj(inp["format"], "session.audio.input.format")
        kind = fmt.get("type", "audio/pcm")
        if kind not in ("audio/pcm", "audio/pcmu", "audio/pcma"):
            raise ProtocolError(
                f"input audio format {kind!r} is not supported; use audio/pcm (24 kHz), audio/pcmu or audio/pcma",
                "invalid_value",
                "session.audio.input.format.type",
            )
        if kind == "audio/pcm" and fmt.get("rate", PCM_RATE) != PCM_RATE:
            raise ProtocolError(
                f"audio/pcm input must be {PCM_RATE} Hz, not {fmt.get('rate')!r}",
                "invalid_value",
                "session.audio.input.format.rate",
            )
        new.format = kind
    if "transcription" in inp and inp["transcription"] is not None:
        t = _obj(inp["transcription"], "session.audio.input.transcription")
        if "model" in t and t["model"] is not None:
            name = str(t["model"])
            try:
                new.model_id = None if name in OPENAI_MODELS else resolve(name)
            except OptionsError as e:
                raise ProtocolError(str(e), "model_not_found", "session.audio.input.transcription.model") from None
            new.model = name
        if "language" in t:
            new.language = t["language"] or None
        if t.get("languages"):
            langs = t["languages"]
            new.language = langs[0] if isinstance(langs, list) and len(langs) == 1 else None
        if "prompt" in t:
            new.prompt = t["prompt"] or None
        if "keywords" in t:
            new.keywords = list(t["keywords"] or [])
    if "turn_detection" in inp:
        td = inp["turn_detection"]
        if td is None:
            new.turn_detection = None
        else:
            td = _obj(td, "session.audio.input.turn_detection")
            kind = td.get("type", "server_vad")
            if kind not in ("server_vad", "semantic_vad"):
                raise ProtocolError(
                    f"turn detection {kind!r} is not supported; use server_vad or null",
                    "invalid_value",
                    "session.audio.input.turn_detection.type",
                )
            # semantic_vad is served as server_vad: the stream's VAD and endpoint
            keep = ("threshold", "prefix_padding_ms", "silence_duration_ms")
            new.turn_detection = {"type": "server_vad", **{k: td[k] for k in keep if td.get(k) is not None}}
    _check(new)
    return new


_PARAMS = {
    "language": "session.audio.input.transcription.language",
    "hotwords": "session.audio.input.transcription.keywords",
    "prompt": "session.audio.input.transcription.prompt",
    "vad_threshold": "session.audio.input.turn_detection.threshold",
    "vad_speech_pad_ms": "session.audio.input.turn_detection.prefix_padding_ms",
    "endpoint_silence_ms": "session.audio.input.turn_detection.silence_duration_ms",
}


def _check(cfg: Config) -> None:
    try:
        cfg.options()
    except OptionsError as e:
        raise ProtocolError(str(e), "invalid_value", _PARAMS.get(e.param or "", e.param)) from None


# -- items ------------------------------------------------------------------------------
@dataclass
class _Item:
    id: str
    previous: str | None
    sentences: list[int] = field(default_factory=list)  # in order
    texts: dict[int, str] = field(default_factory=dict)  # sentence → its final text
    start_s: float | None = None
    end_s: float | None = None
    committed: bool = False
    shown: str = ""  # text sent as deltas
    failed: str | None = None
    done: bool = False


class Realtime:
    """One `/v1/realtime` connection: the configuration, the items, and the stream
    session (opened at the first audio, reopened after a configuration change)."""

    def __init__(self, ws: WebSocket, who: Principal) -> None:
        self.ws = ws
        self.who = who
        self.state = ws.app.state.tx
        self.sid = _id("sess")
        self.cfg = Config()
        self.session: StreamSession | None = None
        self.model = ""
        self.offset_s = 0.0  # audio of earlier sessions on this connection
        self.items: dict[int, _Item] = {}  # sentence → item
        self.pending: _Item | None = None  # the item the uncommitted audio belongs to
        self.last_item: str | None = None
        self.uncommitted = 0  # bytes appended since the last commit or clear

    # -- server events
    async def emit(self, kind: str, **fields: Any) -> None:
        await send_json(self.ws, {"type": kind, "event_id": _id("event"), **fields})

    async def error(self, e: ProtocolError, event_id: str | None = None) -> None:
        err = {"type": e.type, "code": e.code, "message": e.message, "param": e.param, "event_id": event_id}
        await self.emit("error", error=err)

    # -- the stream session's messages, as the protocol's events
    async def sink(self, m: dict[str, Any]) -> None:
        kind = m.get("type")
        item: _Item | None
        if kind == "speech_started":
            item = self._item_for(m["sentence"])
            if item.start_s is None:
                item.start_s = m["start"]
            if self.cfg.turn_detection is not None:
                ms = int(round((self.offset_s + m["start"]) * 1000))
                await self.emit("input_audio_buffer.speech_started", audio_start_ms=ms, item_id=item.id)
        elif kind == "speech_stopped":
            item = self.items.get(m["sentence"])
            if item is None:
                return
            item.end_s = m["end"]
            if self.cfg.turn_detection is not None and not item.committed:
                ms = int(round((self.offset_s + m["end"]) * 1000))
                await self.emit("input_audio_buffer.speech_stopped", audio_end_ms=ms, item_id=item.id)
                if self.pending is item:
                    self.pending = None
                self.uncommitted = 0
                await self._commit(item)
        elif kind == "dropped":
            item = self.items.pop(m["sentence"], None)
            if item is not None:
                item.sentences.remove(m["sentence"])
                if item.committed:
                    await self._maybe_complete(item)
                elif not item.sentences and self.pending is item:
                    self.pending = None
        elif kind == "partial":
            item = self.items.get(m["segment_id"])
            if item is not None and not item.done:
                await self._delta(item, self._joined(item, m["segment_id"], m["text"]))
        elif kind == "final":
            item = self.items.get(m["sentence"])
            if item is not None:
                item.texts[m["sentence"]] = m["text"]
                await self._maybe_complete(item)
        elif kind == "error" and "sentence" in m:
            item = self.items.get(m["sentence"])
            if item is not None:
                item.failed = m["message"]
                item.texts[m["sentence"]] = ""
                await self._maybe_complete(item)
        elif kind == "error":
            await self.error(ProtocolError(m["message"], "server_error", type_="server_error"))

    def _item_for(self, sentence: int) -> _Item:
        """The item a new sentence belongs to: its own with server VAD, else the one the
        uncommitted audio belongs to."""
        if self.cfg.turn_detection is not None or self.pending is None:
            self.pending = _Item(_id("item"), None)
        item = self.pending
        item.sentences.append(sentence)
        self.items[sentence] = item
        return item

    def _sep(self, text: str) -> str:
        lang = self.session.language if self.session else None
        return "" if text_mod.is_cjk(lang) or text_mod.has_ideographs(text) else " "

    def _joined(self, item: _Item, upto: int | None = None, last: str = "") -> str:
        texts = [item.texts.get(i, "") for i in item.sentences if upto is None or i < upto]
        texts = [t for t in [*texts, last] if t]
        return self._sep("".join(texts)).join(texts)

    async def _delta(self, item: _Item, text: str) -> None:
        if text.startswith(item.shown) and len(text) > len(item.shown):
            delta, item.shown = text[len(item.shown) :], text
            await self.emit(
                "conversation.item.input_audio_transcription.delta", item_id=item.id, content_index=0, delta=delta
            )

    def _message(self, item: _Item, transcript: str | None) -> dict[str, Any]:
        return {
            "id": item.id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": transcript}],
        }

    async def _commit(self, item: _Item) -> None:
        item.previous, self.last_item = self.last_item, item.id
        await self.emit("input_audio_buffer.committed", item_id=item.id, previous_item_id=item.previous)
        await self.emit("conversation.item.added", item=self._message(item, None), previous_item_id=item.previous)
        item.committed = True  # only now may it complete: its final may have come meanwhile
        await self._maybe_complete(item)

    async def _maybe_complete(self, item: _Item) -> None:
        if item.done or not item.committed or any(i not in item.texts for i in item.sentences):
            return
        item.done = True
        for i in item.sentences:
            self.items.pop(i, None)
        transcript = self._joined(item)
        if item.failed:
            err = {"type": "server_error", "code": "transcription_failed", "message": item.failed}
            await self.emit(
                "conversation.item.input_audio_transcription.failed", item_id=item.id, content_index=0, error=err
            )
        else:
            await self._delta(item, transcript)
            seconds = max(0.0, (item.end_s or 0.0) - (item.start_s or 0.0))
            await self.emit(
                "conversation.item.input_audio_transcription.completed",
                item_id=item.id,
                content_index=0,
                transcript=transcript,
                usage={"type": "duration", "seconds": round(seconds, 3)},
            )
        await self.emit("conversation.item.done", item=self._message(item, transcript), previous_item_id=item.previous)

    # -- client events
    async def handle(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "session.update":
            await self.update(ev.get("session"))
        elif kind == "input_audio_buffer.append":
            await self.append(ev.get("audio"))
        elif kind == "input_audio_buffer.commit":
            await self.commit()
        elif kind == "input_audio_buffer.clear":
            await self.clear()
        elif kind in (
            "response.create",
            "response.cancel",
            "output_audio_buffer.clear",
            "conversation.item.create",
            "conversation.item.retrieve",
            "conversation.item.truncate",
            "conversation.item.delete",
        ):
            raise ProtocolError(
                f"{kind} does not apply to a transcription session: this server transcribes input audio; "
                "it generates no responses, audio output or conversation items",
                "unsupported_event",
                "type",
            )
        else:
            raise ProtocolError(
                f"unknown event type {kind!r}; a transcription session takes session.update and "
                "input_audio_buffer.append / commit / clear",
                "invalid_value",
                "type",
            )

    async def update(self, session: Any) -> None:
        new = update_config(self.cfg, session, lambda name: scheduler_and_model(self.state, name)[1])
        if self.session is not None and new.options() != self.cfg.options():
            await self.end_session()  # the rest of the audio goes to a session with the new settings
        self.cfg = new
        await self.emit("session.updated", session=self.cfg.session(self.sid))

    async def start_session(self) -> StreamSession:
        opts = self.cfg.options()
        sid = uuid.uuid4().hex
        try:
            sched, self.model = scheduler_and_model(self.state, opts.model)
            self.session = await open_session(
                sched,
                opts,
                self.sink,
                sid,
                audio_path=_audio_path(self.state, sid, opts.save_audio),
                on_update=observer(self.state),
                sentence_events=True,
                max_backlog_s=self.state.settings.stream_max_backlog_s,
            )
        except OptionsError as e:
            raise ProtocolError(str(e), "invalid_value", _PARAMS.get(e.param or "", e.param)) from None
        return self.session

    async def end_session(self, connected: bool = True) -> None:
        """Finish the stream session (every pending item completes) and keep it in the
        history."""
        s, self.session = self.session, None
        if s is None:
            return
        if connected:
            await s.finish()
            if self.pending is not None and self.pending.sentences:  # no commit came: commit what was said
                item, self.pending = self.pending, None
                await self._commit(item)
            await save_session(self.state, self.who, s, self.model)
        else:
            await keep_abandoned(self.state, self.who, s, self.model, self.ws)
        self.offset_s += s.duration
        self.pending = None
        self.items.clear()
        self.uncommitted = 0  # what was appended went into the items just committed

    async def append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise ProtocolError(
                "input_audio_buffer.append needs `audio`: base64-encoded audio", "invalid_value", "audio"
            )
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("`audio` is not valid base64", "invalid_value", "audio") from None
        if self.cfg.format == "audio/pcm":
            if len(data) % 2:
                raise ProtocolError(
                    f"audio/pcm audio must hold whole 16-bit samples, not {len(data)} bytes; dropped",
                    "invalid_value",
                    "audio",
                )
            pcm = data
        else:
            table = ULAW if self.cfg.format == "audio/pcmu" else ALAW
            pcm = table[np.frombuffer(data, np.uint8)].tobytes()
        session = self.session or await self.start_session()
        self.uncommitted += len(pcm)
        await session.feed(pcm)

    def _uncommitted_ms(self) -> float:
        return self.uncommitted / 2 / self.cfg.rate * 1000

    async def commit(self) -> None:
        if self._uncommitted_ms() < MIN_COMMIT_MS and (self.session is None or not self.session.speaking):
            if self.pending is None or not self.pending.sentences:
                raise ProtocolError(
                    f"buffer too small: at least {MIN_COMMIT_MS} ms of audio must be appended since the last "
                    f"commit, {self._uncommitted_ms():.0f} ms were",
                    "input_audio_buffer_commit_empty",
                )
        self.uncommitted = 0
        session = self.session
        if self.cfg.turn_detection is not None:
            if session is not None and session.speaking:
                await session.flush()  # its speech_stopped commits the item
                return
            await self._commit(_Item(_id("item"), None))  # audio without speech: an empty item
            return
        item = self.pending or _Item(_id("item"), None)
        self.pending = None  # the open sentence (if any) ends with this turn; what follows starts the next
        if session is not None:
            await session.flush()
        await self._commit(item)

    async def clear(self) -> None:
        if self.pending is not None:  # sentences of the uncommitted audio are forgotten
            for i in self.pending.sentences:
                self.items.pop(i, None)
            self.pending = None
        if self.session is not None:  # speech going on past the clear starts a new item
            await self.session.clear()
        self.uncommitted = 0
        await self.emit("input_audio_buffer.cleared")


KEY_PROTOCOL = "openai-insecure-api-key."  # a browser's way to send a key: it cannot set headers


def _browser_key(ws: WebSocket) -> str | None:
    """The key a browser client offers as a subprotocol (OpenAI's own convention)."""
    return next((p[len(KEY_PROTOCOL) :] for p in ws.scope.get("subprotocols", []) if p.startswith(KEY_PROTOCOL)), None)


def _principal(ws: WebSocket) -> Principal:
    key = _browser_key(ws)
    if key and "authorization" not in ws.headers:
        return authenticate(ws.app.state.tx, {"authorization": f"Bearer {key}"}, ws.query_params)
    return ws_principal(ws)


def _configure_from_query(rt: Realtime, ws: WebSocket) -> None:
    """`?model=` names the transcription model when it is one (a conversation model's
    name, e.g. gpt-realtime, is left to the defaults: only transcription is served)."""
    name = ws.query_params.get("model")
    if not name:
        return
    if name in OPENAI_MODELS:
        rt.cfg.model = name
        return
    try:
        rt.cfg.model_id = scheduler_and_model(rt.state, name)[1]
        rt.cfg.model = name
    except OptionsError:
        pass


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    async def refuse(e: ApiError) -> None:
        await send_json(
            ws,
            {
                "type": "error",
                "event_id": _id("event"),
                "error": {"type": e.type, "code": e.code, "message": e.message, "param": None, "event_id": None},
            },
        )

    # browsers offer "realtime" (and the key, above) as subprotocols, and need one chosen
    offered = ws.scope.get("subprotocols", [])
    who = await admit(ws, refuse, "realtime" if "realtime" in offered else None, _principal)
    if who is None:
        return
    rt = Realtime(ws, who)
    try:
        _configure_from_query(rt, ws)
        await rt.emit("session.created", session=rt.cfg.session(rt.sid))
        first_timeout, idle_timeout = timeouts(rt.state)
        session = False  # a stream slot is taken by the first valid event, not by the connection
        while True:
            wait = idle_timeout if session else first_timeout
            msg = await receive(ws, wait)
            if msg is None:
                reason = f"no event for {wait:g} s"
                await rt.error(ProtocolError(reason + "; ending the session", "idle_timeout"))
                await rt.end_session()
                await close(ws, CLOSE_TIMEOUT, reason)
                return
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") is None:
                await rt.error(
                    ProtocolError(
                        "binary frames are not part of the protocol: send audio as input_audio_buffer.append "
                        "events (base64)",
                        "invalid_value",
                    )
                )
                continue
            event_id = None
            try:
                ev = json.loads(msg["text"])
                if not isinstance(ev, dict):
                    raise ProtocolError("an event must be a JSON object", "invalid_json")
                event_id = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
                if not session:
                    if not await take_slot(ws, refuse):
                        return
                    session = True
                await rt.handle(ev)
            except TooFast as e:  # its slot is freed, its queued windows dropped, its finals kept (finally)
                release(ws)  # first: the close handshake waits behind the client's audio
                if rt.session is not None:
                    await rt.session.abandon()
                await rt.error(ProtocolError(str(e), "rate_limit_exceeded"), event_id)
                await close(ws, CLOSE_TOO_FAST, "audio arrives faster than it can be decoded")
                return
            except json.JSONDecodeError as e:
                await rt.error(ProtocolError(f"the event is not valid JSON: {e.msg} at {e.pos}", "invalid_json"))
            except ProtocolError as e:
                await rt.error(e, event_id)
    except WebSocketDisconnect:
        pass
    finally:
        try:
            await rt.end_session(connected=False)
        finally:
            release(ws)
