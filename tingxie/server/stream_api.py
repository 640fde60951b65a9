"""Real-time recognition over WebSocket: `/v1/stream`, tingxie's protocol (described
in docs/streaming.md); the work is done by `tingxie.stream.StreamSession`. Every session
is saved to the history (kind "stream") when it ends, however it ends.

The WebSocket plumbing here (admission to a stream slot, bounded receive, closing,
saving a session) serves FunASR's protocol too (`funasr_api.py`)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.types import Message
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..jobs import record_sync_result
from ..stream import StreamSession, TooFast, open_session, parse_options
from ..types import OptionsError, Transcript
from .auth import Principal, ws_principal
from .errors import ApiError

log = logging.getLogger(__name__)

router = APIRouter(tags=["real-time"])

CLOSE_AUTH, CLOSE_BAD, CLOSE_BUSY = 4401, 4400, 1013
CLOSE_TIMEOUT = 4408  # nothing received in time: the slot goes back to the pool
CLOSE_TOO_BIG = 1009  # RFC 6455 "message too big": more audio than the upload limit
CLOSE_TOO_FAST = 1008  # RFC 6455 "policy violation": audio faster than the decoder, for too long


Refuse = Callable[[ApiError], Awaitable[None]]


async def admit(
    ws: WebSocket,
    refuse: Refuse | None = None,
    subprotocol: str | None = None,
    principal: Callable[[WebSocket], Principal] = ws_principal,
) -> Principal | None:
    """Accept (with `subprotocol`, when the client offered one) and authenticate; close
    with the reason otherwise (told first, in the protocol's own words, by `refuse` where
    it has them). No stream slot yet (see `take_slot`): a connection that has sent nothing
    counts only against the bound on handshakes, so idle sockets cannot keep real clients
    out. Pair with `release`."""
    await ws.accept(subprotocol)
    state = ws.app.state.tx
    try:
        who = await asyncio.to_thread(principal, ws)
    except ApiError as e:
        if refuse:
            await refuse(e)
        await ws.close(CLOSE_AUTH, reason=e.message)
        return None
    limit = state.settings.max_stream_handshakes
    if state.handshakes >= limit:
        reason = f"server busy: {limit} connections wait for their first message"
        if refuse:
            await refuse(ApiError(503, reason, "server_error", None, "server_busy"))
        await ws.close(CLOSE_BUSY, reason=reason)
        return None
    state.handshakes += 1
    ws.scope["tingxie_slot"] = "handshake"
    return who


async def take_slot(ws: WebSocket, refuse: Refuse | None = None) -> bool:
    """A valid first message came: the connection becomes a session and takes a stream
    slot, or is closed with 1013 when all are taken."""
    state = ws.app.state.tx
    if ws.scope.get("tingxie_slot") == "stream":
        return True
    limit = state.settings.max_streams
    if state.streams >= limit:
        reason = f"server at capacity: {limit} streams"
        if refuse:
            await refuse(ApiError(503, reason, "server_error", None, "server_at_capacity"))
        await close(ws, CLOSE_BUSY, reason)
        return False
    _leave(ws)
    state.streams += 1
    ws.scope["tingxie_slot"] = "stream"
    return True


def _leave(ws: WebSocket) -> None:
    state = ws.app.state.tx
    held = ws.scope.pop("tingxie_slot", None)
    if held == "handshake":
        state.handshakes -= 1
    elif held == "stream":
        state.streams -= 1


async def receive(ws: WebSocket, seconds: float) -> Message | None:
    """ws.receive() bounded in time (None on timeout): a client that connects and sends
    nothing must not hold a stream slot for ever. 0 = wait for ever."""
    if seconds <= 0:
        return await ws.receive()
    try:
        return await asyncio.wait_for(ws.receive(), seconds)
    except TimeoutError:
        return None


def timeouts(state) -> tuple[float, float]:
    s = state.settings
    return s.stream_first_message_timeout_s, s.stream_idle_timeout_s


def release(ws: WebSocket) -> None:
    """Give back what the connection holds (its handshake place or its stream slot);
    idempotent, so a departed client's slot can be freed before its session is saved."""
    _leave(ws)


def _audio_path(state, session_id: str, wanted: bool) -> Path | None:
    allowed = getattr(state.settings, "stream_save_audio", True)
    if not (wanted and allowed):
        return None
    return Path(state.settings.audio_dir) / f"stream-{session_id}.wav"


async def save_session(state, who: Principal, session: StreamSession, model: str) -> str | None:
    """Store the session in the history; audio only when it was written."""
    if session.received == 0:
        if session.audio_path and session.audio_path.exists():
            session.audio_path.unlink()
        return None
    t = session.transcript(model)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(session.started))
    path = session.audio_path if session.audio_path and session.audio_path.exists() else None
    saved = await record(
        state, who, model, t, session.id, path, filename=f"realtime-{stamp}", options=session.options.record()
    )
    return session.id if saved else None


async def record(
    state, who: Principal, model: str, t: Transcript, job_id: str, audio: Path | None, **fields: Any
) -> bool:
    """Keep a real-time result in the history (kind "stream"), with its audio file when
    one was kept. A failure to save is logged, never the client's error: the text was
    already sent."""

    def write() -> None:
        record_sync_result(
            state.store,
            job_id,
            state.node.owner,
            t,
            owner=who.key_id,
            kind="stream",
            model=model,
            audio_path=str(audio) if audio else None,
            size_bytes=audio.stat().st_size if audio else 0,
            **fields,
        )

    try:
        await asyncio.to_thread(write)
    except Exception:
        log.exception("could not save real-time session %s", job_id)
        return False
    return True


async def keep_abandoned(state, who: Principal, session: StreamSession, model: str, ws: WebSocket) -> None:
    """A session its client left mid-way (disconnected, closed, or an error). Its slot
    goes back at once. What it left pending is decoded and kept in the history when it
    is within the backlog bound (a real-time client: its last sentence or two); beyond it
    (a client that sent faster than the decoder, with no bound), its windows still
    waiting for the model are dropped — nobody will read them — and the history keeps
    the finals it was sent. Logged, never raised: the socket is gone."""
    release(ws)
    try:
        if session.backlog_s > state.settings.stream_max_backlog_s:
            dropped = await session.abandon()
            log.info("real-time session %s left: %d queued window(s) dropped", session.id, dropped)
        else:
            await session.finish(connected=False)
        await save_session(state, who, session, model)
    except Exception:
        log.exception("could not finish real-time session %s", session.id)


async def send_json(ws: WebSocket, msg: dict) -> None:
    await ws.send_text(json.dumps(msg, ensure_ascii=False))


async def close(ws: WebSocket, code: int = 1000, reason: str = "") -> None:
    if ws.application_state != WebSocketState.DISCONNECTED and ws.client_state != WebSocketState.DISCONNECTED:
        try:
            await ws.close(code, reason=reason)
        except Exception:
            pass


def observer(state):
    hist = state.metrics.stream_latency

    def on_update(kind: str, seconds: float) -> None:
        hist.labels(kind).observe(seconds)

    return on_update


def scheduler_and_model(state, model: str | None = None):
    model_id, _ = state.manager.resolve(model)
    return state.manager.scheduler(model_id), model_id


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    who = await admit(ws)
    if who is None:
        return
    state = ws.app.state.tx
    session: StreamSession | None = None
    first_timeout, idle_timeout = timeouts(state)
    try:
        try:
            first = await receive(ws, first_timeout)
            if first is None:
                reason = f"no options message within {first_timeout:g} s"
                await send_json(ws, {"type": "error", "message": reason + "; closing"})
                await close(ws, CLOSE_TIMEOUT, reason)
                return
            if first["type"] == "websocket.disconnect":
                return
            if first.get("text") is None:
                raise OptionsError("the first message must be a JSON text message of options, not binary audio")
            try:
                raw = json.loads(first["text"])
            except json.JSONDecodeError as e:
                raise OptionsError(f"the first message is not valid JSON: {e.msg} at position {e.pos}") from None
            opts = parse_options(raw)
            sched, model = scheduler_and_model(state, opts.model)
            if not await take_slot(ws):
                return
            sid = uuid.uuid4().hex
            session = await open_session(
                sched,
                opts,
                lambda m: send_json(ws, m),
                sid,
                audio_path=_audio_path(state, sid, opts.save_audio),
                on_update=observer(state),
                max_backlog_s=state.settings.stream_max_backlog_s,
            )
        except OptionsError as e:
            await send_json(ws, {"type": "error", "message": str(e)})
            await close(ws, CLOSE_BAD, str(e)[:120])
            return
        await send_json(ws, {"type": "ready", "session_id": sid})
        stopped = False
        idle_reason = None
        while not stopped:
            msg = await receive(ws, idle_timeout)
            if msg is None:  # idle: end the session as if stopped (its text is sent and kept), then close
                idle_reason = f"no audio or message for {idle_timeout:g} s"
                await session.send({"type": "error", "message": idle_reason + "; ending the session"})
                stopped = True
                break
            if msg["type"] == "websocket.disconnect":
                return  # left without stop: its queued windows are dropped, its slot freed (finally)
            data = msg.get("bytes")
            if data is not None:
                if len(data) % 2:
                    await session.send(
                        {
                            "type": "error",
                            "message": f"binary frame has an odd number of bytes ({len(data)}); PCM16 frames must hold whole 2-byte samples — frame dropped",
                        }
                    )
                    continue
                try:
                    await session.feed(data)
                except TooFast as e:  # its slot is freed, its queued windows dropped, its finals kept (finally)
                    release(ws)  # first: the close handshake waits behind the client's audio
                    await session.abandon()
                    await send_json(ws, {"type": "error", "message": str(e)})
                    await close(ws, CLOSE_TOO_FAST, "audio arrives faster than it can be decoded")
                    return
                continue
            try:
                cmd = json.loads(msg.get("text") or "")
            except json.JSONDecodeError as e:
                await session.send(
                    {
                        "type": "error",
                        "message": f'text message is not valid JSON ({e.msg}); send {{"type": "stop"}} or {{"type": "flush"}}',
                    }
                )
                continue
            kind = cmd.get("type") if isinstance(cmd, dict) else None
            if kind == "stop":
                stopped = True
            elif kind == "flush":
                await session.flush()
            else:
                await session.send(
                    {"type": "error", "message": f"unknown message type {kind!r}; expected stop or flush"}
                )
        await session.finish(connected=stopped)
        job = await save_session(state, who, session, model)
        stats = session.stats.summary()
        session = None
        if stopped:
            await send_json(ws, {"type": "end", "session_id": sid, "job_id": job, "stats": stats})
            await close(ws, CLOSE_TIMEOUT if idle_reason else 1000, idle_reason or "")
    except WebSocketDisconnect:
        pass
    finally:
        if session is not None:
            await keep_abandoned(state, who, session, model, ws)
        release(ws)
