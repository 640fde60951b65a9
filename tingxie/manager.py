"""Model lifetime in one place: load on demand, unload after an idle TTL, one scheduler
per model so all requests for a model share its batches."""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import device as device_mod
from . import models as models_mod
from .device import DeviceChoice
from .engines import ModelError, ModelSpec, Recognizer, registry
from .engines.base import EmptiesCache
from .scheduler import Scheduler
from .settings import Settings
from .types import OptionsError

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    model_id: str
    path: str
    engine: Recognizer | None
    scheduler: Scheduler
    last_used: float


class ModelManager:
    def __init__(self, settings: Settings, choice: DeviceChoice | None = None, on_batch=None, warm_up: bool = True):
        """`warm_up=False` for a batch run (the CLI): warming decodes noise so that the
        first request does not pay CTranslate2's first-shape cost, which a batch run
        would pay only once, on real work (≈ 3 s of a CPU core saved per run)."""
        self.settings = settings
        self.warm_up = warm_up
        self.choice = choice or device_mod.choose(
            settings.device,
            settings.compute_type,
            settings.instances,
            settings.threads_per_instance,
            settings.batch_size,
        )
        self.on_batch = on_batch
        self._slots: dict[str, _Slot] = {}
        self._punctuator: Recognizer | None = None  # the site's punctuation model, loaded on first use
        self._lock = threading.RLock()
        self._stop = threading.Event()
        if settings.model_ttl_s > 0 or self.choice.device == "cuda":
            threading.Thread(target=self._reaper, name="tingxie-model-ttl", daemon=True).start()

    def _default(self) -> str:
        """TINGXIE_MODEL / --model: an id, or a path (an operator's choice)."""
        m = self.settings.model or models_mod.BUNDLED
        return str(Path(m).expanduser()) if "/" in m or m.startswith(("~", ".")) else m

    def configured_models(self) -> list[Path]:
        """Model directories named by configuration: TINGXIE_MODEL_PATHS, and the default
        model when it is a path rather than an id."""
        out = [Path(p.strip()).expanduser() for p in self.settings.model_paths.split(",") if p.strip()]
        if "/" in self._default():
            out.insert(0, Path(self._default()))
        return out

    def models(self) -> list[models_mod.ModelInfo]:
        return models_mod.list_models(self.settings.models_dir, self.configured_models())

    def resolve(self, model: str | None) -> tuple[str, str]:
        """A registered model id (None / "default": the configured default) → (id,
        directory). A caller's path is never used: see models.resolve."""
        if model in (None, "", "default"):
            model = self._default()
        model_id, path = models_mod.resolve(model, self.settings.models_dir, self.configured_models())
        return model_id, str(path)

    def scheduler(self, model: str | None = None) -> Scheduler:
        """The scheduler of a model (created, not yet loaded, on first use)."""
        model_id, path = self.resolve(model)
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is None:
                sched = Scheduler(
                    functools.partial(self.engine, model_id),
                    max_batch_size=self.choice.batch_size,
                    max_wait_ms=self.settings.max_batch_wait_ms,
                    instances=self.choice.instances,
                    interactive_limit=self.settings.interactive_queue_limit,
                    on_batch=self.on_batch,
                    max_audio_s=self.settings.max_audio_duration_s,
                    queued_audio_limit_s=self.settings.max_queued_audio_s,
                )
                slot = self._slots[model_id] = _Slot(model_id, path, None, sched, time.monotonic())
            slot.last_used = time.monotonic()
            return slot.scheduler

    def engine(self, model_id: str) -> Recognizer:
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is None:
                self.scheduler(model_id)
                slot = self._slots[model_id]
            slot.last_used = time.monotonic()
            if slot.engine is None:
                log.info(
                    "loading model %s on %s (%s, %d instances)",
                    model_id,
                    self.choice.label,
                    self.choice.compute_type,
                    self.choice.instances,
                )
                try:
                    engine = registry.load(model_id, slot.path, self.choice, **self.settings.engine_options())
                    slot.engine = self._punctuated(engine)
                except ModelError as e:  # a bad directory: the request fails, the server goes on
                    raise OptionsError(str(e)) from e
                if self.warm_up:
                    slot.engine.warm_up()
            return slot.engine

    def spec(self, model: str | None = None) -> ModelSpec:
        """What a model can do, to refuse a request before anything is stored: the
        loaded model's own spec, else its directory's (checked, not loaded)."""
        model_id, path = self.resolve(model)
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is not None and slot.engine is not None:
                return slot.engine.spec
        try:
            registry.validate(path)
            return registry.describe(model_id, path)
        except ModelError as e:
            raise OptionsError(str(e)) from e

    def _punctuated(self, engine: Recognizer) -> Recognizer:
        """Put the site's punctuation model, when there is one, in front of a family that
        writes no punctuation (engines/punctuated.py)."""
        from .engines.punctuated import punctuated, wants_punctuation

        if not self.settings.punctuation_model or not wants_punctuation(engine.spec):
            return engine
        if self._punctuator is None:
            name = self.settings.punctuation_model
            path = Path(name) if Path(name).is_dir() else self.settings.models_dir / name  # from config, not requests
            self._punctuator = registry.load(path.name, path, self.choice, family="punctuation")
        return punctuated(engine, self._punctuator)

    def load(self, model: str | None = None) -> Recognizer:
        model_id, _ = self.resolve(model)
        self.scheduler(model_id)
        return self.engine(model_id)

    def unload(self, model: str | None = None) -> bool:
        model_id, _ = self.resolve(model)
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is None or slot.engine is None:
                return False
            if sum(slot.scheduler.depth().values()):
                raise OptionsError(f"model {model_id} is busy; unload it when its queue is empty")
            slot.engine = None
        gc.collect()
        return True

    def loaded(self) -> list[dict]:
        with self._lock:
            return [
                {
                    "id": s.model_id,
                    "path": s.path,
                    "loaded": s.engine is not None,
                    "idle_s": round(time.monotonic() - s.last_used, 1),
                    "queue": s.scheduler.depth(),
                    "stats": s.scheduler.stats.to_dict(),
                }
                for s in self._slots.values()
            ]

    def schedulers(self) -> list[Scheduler]:
        with self._lock:
            return [s.scheduler for s in self._slots.values()]

    def empty_cache(self) -> dict:
        """Free cached accelerator memory. CTranslate2 keeps freed CUDA blocks in its
        caching allocator; moving idle models to host memory and back returns them."""
        if self.choice.device != "cuda":
            return {"device": "cpu", "freed": False, "message": "running on CPU: there is no GPU cache to free"}
        moved: list[str] = []
        with self._lock:
            for s in self._slots.values():
                if isinstance(s.engine, EmptiesCache) and not sum(s.scheduler.depth().values()):
                    s.engine.empty_cache()  # Whisper's CTranslate2 cache
                    moved.append(s.model_id)
        gc.collect()
        return {"device": self.choice.label, "freed": True, "models_reloaded": moved, "message": "GPU cache released"}

    def _reaper(self) -> None:
        """Unload models idle past the TTL; on a GPU, also hand cached memory back once
        the server has been idle for a minute."""
        ttl = self.settings.model_ttl_s
        cache_released = True
        while not self._stop.wait(min(30.0, ttl / 2) if ttl > 0 else 30.0):
            idle_all = True
            with self._lock:
                for s in self._slots.values():
                    idle = time.monotonic() - s.last_used
                    busy = sum(s.scheduler.depth().values()) > 0
                    idle_all = idle_all and not busy and idle > 60
                    if ttl > 0 and s.engine is not None and idle > ttl and not busy:
                        log.info("unloading model %s after %.0f s idle", s.model_id, idle)
                        s.engine = None
            gc.collect()
            if self.choice.device == "cuda":
                if idle_all and not cache_released:
                    self.empty_cache()
                cache_released = idle_all

    def close(self) -> None:
        self._stop.set()
        for s in self.schedulers():
            s.close()
