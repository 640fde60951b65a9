"""All settings in one place. Every value can come from the environment (`TINGXIE_*`),
and the CLI overrides them per run; nothing else reads the environment."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(os.path.expanduser("~/.cache/tingxie"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TINGXIE_", extra="ignore")

    home: Path = Field(default_factory=_default_home)

    # model and device
    model: str = "whisper-base"
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    compute_type: str = "auto"  # auto | int8 | int8_float16 | int8_float32 | float16 | float32
    # Model instances per device; 0 = one per 1 CPU core on CPU (measured best: two
    # single-threaded instances beat one two-threaded instance by 1.6x on 2 cores), 1 on GPU.
    instances: int = 0
    threads_per_instance: int = 0  # 0 = cores // instances on CPU
    model_ttl_s: float = 0.0  # unload a model idle this long; 0 = never

    # batching
    batch_size: int = 0  # max windows per batch; 0 = 4 on CPU (measured), 16 on GPU
    max_batch_wait_ms: float = 5.0
    beam_size: int = 5
    # Reproduce the reference system for comparison: one request at a time, decoded by
    # faster-whisper's sequential transcribe (reference.py); implies 1 instance, batch 1.
    serial: bool = False
    # Encode interactive windows (real-time, synchronous requests) at their own length
    # instead of Whisper's fixed 30 s: several times faster for short audio.
    dynamic_frames: bool = True

    # server
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str | None = None  # default: sqlite at $home/tingxie.db
    storage: Path | None = None  # uploaded audio; default $home/audio
    queue: Literal["local", "celery"] = "local"
    broker_url: str = "redis://127.0.0.1:6379/0"
    celery_visibility_timeout_s: int = 6 * 3600  # longer than the longest job (see docs/scaleout.md)
    worker_timeout_s: float = 30.0  # a worker silent this long is dead: its running jobs are taken over
    max_upload_mb: int = 1024
    interactive_queue_limit: int = 64  # windows waiting in the interactive lane before 503
    insecure: bool = False
    retention_audio_days: int = 0  # 0 = keep forever
    retention_keep_text: bool = True
    max_streams: int = 16
    stream_save_audio: bool = True  # allow real-time sessions to keep their audio when asked
    callback_retries: int = 5
    # Longest audio file accepted (seconds; 0 = no limit): longer ones are refused
    # with 413 naming the limit, before or while decoding (headers may lie).
    max_audio_duration_s: float = 4 * 3600.0
    # Seconds of audio that synchronous requests may have admitted at once (being
    # decoded, VAD-scanned or transcribed); more gets 503 + Retry-After. Counted in
    # audio, not windows, because silence makes no windows but still costs work.
    max_queued_audio_s: float = 4 * 3600.0

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def audio_dir(self) -> Path:
        return self.storage or (self.home / "audio")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'tingxie.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
