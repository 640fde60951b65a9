"""Model lifetime in one place: load on demand, unload after an idle TTL, one scheduler
per model so all requests for a model share its batches."""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass

from . import device as device_mod
from . import models as models_mod
from .device import DeviceChoice
from .engine import Engine
from .scheduler import Scheduler
from .settings import Settings
from .types import OptionsError

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    model_id: str
    path: str
    engine: Engine | None
    scheduler: Scheduler
    last_used: float


class ModelManager:
    def __init__(self, settings: Settings, choice: DeviceChoice | None = None, on_batch=None):
        self.settings = settings
        self.choice = choice or device_mod.choose(
            settings.device,
            settings.compute_type,
            settings.instances,
            settings.threads_per_instance,
            settings.batch_size,
        )
        self.on_batch = on_batch
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        if settings.model_ttl_s > 0 or self.choice.device == "cuda":
            threading.Thread(target=self._reaper, name="tingxie-model-ttl", daemon=True).start()

    def resolve(self, model: str | None) -> tuple[str, str]:
        model_id, path = models_mod.resolve(model or self.settings.model, self.settings.models_dir)
        return model_id, str(path)

    def scheduler(self, model: str | None = None) -> Scheduler:
        """The scheduler of a model (created, not yet loaded, on first use)."""
        model_id, path = self.resolve(model)
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is None:
                sched = Scheduler(
                    lambda mid=model_id: self.engine(mid),
                    max_batch_size=self.choice.batch_size,
                    max_wait_ms=self.settings.max_batch_wait_ms,
                    instances=self.choice.instances,
                    interactive_limit=self.settings.interactive_queue_limit,
                    on_batch=self.on_batch,
                    serial=self.settings.serial,
                    max_audio_s=self.settings.max_audio_duration_s,
                    queued_audio_limit_s=self.settings.max_queued_audio_s,
                )
                slot = self._slots[model_id] = _Slot(model_id, path, None, sched, time.monotonic())
            slot.last_used = time.monotonic()
            return slot.scheduler

    def engine(self, model_id: str) -> Engine:
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is None:
                self.scheduler(model_id)
                slot = self._slots[model_id]
            slot.last_used = time.monotonic()
            if slot.engine is None:
                log.info("loading model %s on %s (%s, %d instances)", model_id, self.choice.label, self.choice.compute_type, self.choice.instances)
                slot.engine = Engine(model_id, slot.path, self.choice, dynamic_frames=self.settings.dynamic_frames)
                slot.engine.warm_up()
            return slot.engine

    def load(self, model: str | None = None) -> Engine:
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
        moved = []
        with self._lock:
            for s in self._slots.values():
                if s.engine is not None and not sum(s.scheduler.depth().values()):
                    s.engine.model.unload_model(to_cpu=True)
                    s.engine.model.load_model()
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
