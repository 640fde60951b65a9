"""Enrolled voices: a name and a few seconds of a person's speech, kept as a voice print
so later requests can name them (`known_speaker_names[]` without references, on
`/v1/audio/transcriptions` and `/api/jobs`) and matching speakers carry the name.

Voices belong to the API key that enrolled them — admin keys included, unlike jobs: a
voice print is personal data and a name means something only to its owner — and the
keyless local user has its own. Only the print is stored unless `keep_audio=true`. A
refused enrolment leaves no row and no file.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from .. import audio as audio_mod
from .. import diarize
from ..jobs import user_error
from ..request import MAX_SPEAKER_NAME
from ..types import AudioError, OptionsError
from . import schemas
from .auth import Principal, principal
from .errors import ApiError
from .uploads import display_name, remove_stored, store_upload

router = APIRouter(prefix="/api", tags=["enrolled voices"])


def check_name(name: str) -> str:
    """A name as it will label turns: trimmed, 1–64 characters, no control characters."""
    name = (name or "").strip()
    if not name or len(name) > MAX_SPEAKER_NAME or any(unicodedata.category(c).startswith("C") for c in name):
        raise OptionsError(f"name must be 1–{MAX_SPEAKER_NAME} printable characters", "name")
    return name


def _enrol(state, owner: str, name: str, path, filename: str | None, keep_audio: bool) -> dict:
    try:
        audio = audio_mod.decode(path, max_seconds=diarize.MAX_ENROL_S)
    except AudioError as e:
        status = getattr(e, "status", 400)
        reason = user_error(e, path, display_name(filename))
        code = "audio_too_long" if status == 413 else "invalid_audio"
        raise ApiError(status, f"audio: {reason}", param="audio", code=code) from e
    vector, seconds, model = diarize.enrol_print(audio, state.settings.models_dir)
    return state.store.add_speaker(
        owner, name, vector.astype("float32").tobytes(), model, seconds, str(path) if keep_audio else None
    )


@router.post(
    "/speakers",
    status_code=201,
    summary="Enrol a voice by name (a few seconds of one person speaking)",
    response_model=schemas.EnrolledVoice,
)
async def enrol_speaker(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    name: Annotated[str, Form(description=f"the name matching turns will carry (1–{MAX_SPEAKER_NAME} characters)")],
    audio: Annotated[
        UploadFile,
        File(
            description=f"{diarize.MIN_ENROL_SPEECH_S:g}–{diarize.MAX_ENROL_S:g} s of the person speaking alone"
            " (any audio or video format)"
        ),
    ],
    keep_audio: Annotated[bool, Form(description="also keep the audio (default: only the voice print)")] = False,
):
    state = request.app.state.tx
    name = check_name(name)
    from ..engines.diarization import available

    available(state.settings.models_dir)  # no models: 400 naming how to add them
    await run_in_threadpool(state.store.check_enrolment, who.key_id, name)  # cheap refusals before any work
    _, path, _ = await run_in_threadpool(store_upload, audio, state.settings.audio_dir / "speakers")
    try:
        return await run_in_threadpool(_enrol, state, who.key_id, name, path, audio.filename, keep_audio)
    except BaseException:
        remove_stored(path)
        raise
    finally:
        if not keep_audio:
            remove_stored(path)


@router.get("/speakers", summary="This key's enrolled voices", response_model=schemas.EnrolledVoices)
def list_speakers(request: Request, who: Annotated[Principal, Depends(principal)]):
    return {"speakers": request.app.state.tx.store.list_speakers(who.key_id)}


@router.delete(
    "/speakers/{name}",
    summary="Delete an enrolled voice (its print and any kept audio)",
    response_model=schemas.EnrolledVoiceDeleted,
)
def delete_speaker(
    request: Request, who: Annotated[Principal, Depends(principal)], name: Annotated[str, Path(max_length=200)]
):
    row = request.app.state.tx.store.delete_speaker(who.key_id, name)
    if row is None:
        raise ApiError(404, f"no enrolled voice named {name[:64]!r}", "not_found_error", "name", "speaker_not_found")
    remove_stored(row.get("audio_path"))
    return {"name": row["name"], "deleted": True}
