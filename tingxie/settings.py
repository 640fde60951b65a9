"""All settings in one place. Every value can come from the environment (`TINGXIE_*`),
and the CLI overrides them per run; nothing else reads the environment."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(os.path.expanduser("~/.cache/tingxie"))


class Settings(BaseSettings):
    # an error names the setting and the problem, never echoes the value (it may be a secret)
    model_config = SettingsConfigDict(env_prefix="TINGXIE_", extra="ignore", hide_input_in_errors=True)

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
    # The beam width is a request option (request.TranscriptionOptions.beam_size, default 5).
    # The recognition pipeline: "tingxie" (windows of every request batched by the
    # scheduler), or "reference" to reproduce the reference system for comparison: one
    # request at a time, decoded by faster-whisper's sequential transcribe
    # (engines/whisper/reference.py); `tingxie serve` then runs 1 instance, batch 1.
    pipeline: Literal["tingxie", "reference"] = "tingxie"
    # Encode interactive windows (real-time, synchronous requests) at their own length
    # instead of Whisper's fixed 30 s: several times faster for short audio.
    dynamic_frames: bool = True
    # Decode noise once per model load so the first request does not pay CTranslate2's
    # first-shape cost (≈ 3 s of a core on CPU). Off: a faster start, a slower first
    # request (the test suite starts many servers; a batch CLI run never warms).
    warm_up: bool = True

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
    retention_audio_days: int = 0  # 0 = keep forever
    retention_keep_text: bool = True
    max_streams: int = 16  # live sessions at once: a slot is taken by a valid first message, not by a connection
    # Connections that have not yet sent a valid first message (they wait at most
    # stream_first_message_timeout_s); beyond this many, new ones are closed with 1013.
    max_stream_handshakes: int = 64
    # Seconds of a live stream's audio received and not yet decoded: a client sending
    # faster than the decoder keeps up is served at the decoder's pace (its audio held as
    # received, at most this much: 32 kB a second) and closed with 1008 and the reason
    # beyond it; 0 = no bound (docs/streaming.md).
    stream_max_backlog_s: float = 120.0
    stream_save_audio: bool = True  # allow real-time sessions to keep their audio when asked
    callback_retries: int = 5
    # Authentication: "auto" = keys required once any key has ever been created (revoking
    # the last one does not open the server) and always on a non-loopback bind; "on" =
    # always; "off" = never (an explicit operator act, logged loudly; refused on a
    # non-loopback bind).
    auth: Literal["auto", "on", "off"] = "auto"
    # Job callbacks never go to loopback, private, link-local, multicast or reserved
    # addresses unless named here: comma-separated host names and/or CIDRs.
    callback_allow: str = ""
    callback_timeout_s: float = 10.0
    # The key callbacks are signed with (Standard Webhooks: `whsec_` + base64 of 24-64
    # bytes). Empty: one is generated once and kept in $home/webhook-secret
    # (`tingxie webhooks secret` shows it). Nodes that send callbacks without sharing a
    # home (Celery workers elsewhere) need the same value set here.
    webhook_secret: str = Field(default="", repr=False)
    # Host names a keyless (loopback) server also answers to, comma-separated, e.g. the
    # name a reverse proxy forwards; otherwise only localhost and loopback addresses
    # (server/browser.py: a web page that rebinds its own name to 127.0.0.1 is refused).
    allowed_hosts: str = ""
    # Extra model directories an operator registers (comma-separated); callers pick models
    # by id only (the directory's name), never by path.
    model_paths: str = ""
    # bounds on what one client may hold (issue 12)
    stream_first_message_timeout_s: float = 10.0  # a WebSocket that sends nothing this long is closed
    stream_idle_timeout_s: float = 60.0  # a WebSocket silent this long mid-session is closed (its text kept)
    max_queued_jobs_per_key: int = 200  # queued + running jobs one key may hold (429 beyond); 0 = no limit
    # A punctuation model (sherpa-onnx CT-Transformer: a folder under the models dir, or a
    # path) that punctuates families writing none (Paraformer, Whisper's Mandarin).
    punctuation_model: str = ""
    # Auto-detection chooses only among these languages, e.g. "zh,en" (empty = every
    # language the model has): a quiet Mandarin clip is then never "Polish".
    detect_languages: str = ""
    # Longest audio file accepted (seconds; 0 = no limit): longer ones are refused
    # with 413 naming the limit, before or while decoding (headers may lie).
    max_audio_duration_s: float = 4 * 3600.0
    # Seconds of audio that synchronous requests may have admitted at once (being
    # decoded, VAD-scanned or transcribed); more gets 503 + Retry-After. Counted in
    # audio, not windows, because silence makes no windows but still costs work.
    max_queued_audio_s: float = 4 * 3600.0
    # `tingxie serve` takes the batch size and instances that the last `tingxie bench` on
    # this machine measured best (stored in $home/bench/recommended.json) unless a flag or
    # TINGXIE_BATCH_SIZE / TINGXIE_INSTANCES sets them; off: the device's defaults.
    use_bench: bool = True

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, v: str) -> str:
        if v:
            from .webhooks import parse_secret

            try:
                parse_secret(v)
            except ValueError as e:
                raise ValueError(f"TINGXIE_WEBHOOK_SECRET: {e}") from None
        return v

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def bench_file(self) -> Path:
        return self.home / "bench" / "recommended.json"

    @property
    def audio_dir(self) -> Path:
        return self.storage or (self.home / "audio")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'tingxie.db'}"

    def engine_options(self) -> dict:
        """What the manager hands every model's loader (`pipeline` "reference" selects
        the reference pipeline for Whisper, engines/whisper/reference.py)."""
        from .options import parse_detect_languages

        return {
            "dynamic_frames": self.dynamic_frames,
            "pipeline": self.pipeline,
            "detect_languages": parse_detect_languages(self.detect_languages),
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


ENGINE_OVERRIDES = (
    "model",
    "device",
    "compute_type",
    "batch_size",
    "instances",
    "host",
    "port",
    "threads_per_instance",
)


def from_overrides(args: object, names: tuple[str, ...] = ENGINE_OVERRIDES) -> Settings:
    """Settings from the environment, with every attribute of `args` named in `names`
    that is set (not None) on top: how the CLI commands build theirs."""
    overrides = {n: v for n in names if (v := getattr(args, n, None)) is not None}
    return Settings(**overrides)


ENGINE_PLAN = ("batch_size", "instances", "threads_per_instance")


def apply_bench(settings: Settings, cores: int, device_label: str) -> str:
    """Take what the last `tingxie bench` on this machine stored, when it was measured for
    this model, device and core count: the engine plan it measured best (unless a flag or
    the environment set one) and the live streams it measured within its latency target
    (unless TINGXIE_MAX_STREAMS sets them), so that the stream past capacity gets a clear
    refusal instead of every stream slowing down. Returns the line `serve` logs at
    start-up ("" when nothing applied). `device_label` is what device.choose resolves."""
    import json

    if not settings.use_bench:
        return ""
    try:
        rec = json.loads(settings.bench_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(rec, dict):
        return ""
    if (rec.get("model"), rec.get("device"), rec.get("cores")) != (settings.model, device_label, cores):
        return ""
    said = []
    plan = [rec.get(k) for k in ENGINE_PLAN]
    if not settings.model_fields_set & set(ENGINE_PLAN) and all(isinstance(v, int) and v >= 1 for v in plan):
        settings.batch_size, settings.instances, settings.threads_per_instance = (int(v or 1) for v in plan)
        said.append(
            f"batch {plan[0]} × {plan[1]} instance(s), {plan[2]} thread(s) each: measured best by `tingxie bench` "
            f"on {rec.get('measured_at', '?')} ({rec.get('audio_hours_per_day', '?')} audio h/day); "
            "--batch-size/--instances or TINGXIE_USE_BENCH=0 override"
        )
    streams = rec.get("max_streams")
    if "max_streams" not in settings.model_fields_set and isinstance(streams, int) and streams >= 1:
        settings.max_streams = streams
        said.append(
            f"at most {streams} live streams: the most `tingxie bench` measured within its final-latency target "
            f"on {rec.get('streams_measured_at', rec.get('measured_at', '?'))}; TINGXIE_MAX_STREAMS overrides"
        )
    return "; ".join(said)
