"""Prometheus metrics, one registry per app (tests run several apps in one process).
Counters that the scheduler already keeps are read at scrape time, not duplicated."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..device import cuda_device_count


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tingxie_requests_total", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "tingxie_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
        )
        self.batch_size = Histogram(
            "tingxie_batch_size",
            "windows per model batch",
            registry=self.registry,
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
        )
        self.rtf = Histogram(
            "tingxie_rtf",
            "real-time factor per transcription (processing / audio seconds)",
            registry=self.registry,
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        )
        self.stream_latency = Histogram(
            "tingxie_stream_latency_seconds",
            "real-time latency",
            ["kind"],
            registry=self.registry,
            buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
        )
        self.state = None

    def bind(self, state) -> None:
        self.state = state
        self.registry.register(_StateCollector(state))

    def observe_batch(self, size: int, seconds: float, timings: dict) -> None:
        self.batch_size.observe(size)

    def install(self, app: FastAPI) -> None:
        @app.middleware("http")
        async def _count(request: Request, call_next):
            t0 = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "other")
            self.requests.labels(path, str(response.status_code)).inc()
            self.latency.labels(path).observe(time.perf_counter() - t0)
            return response

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    """Scheduler, queue and device figures, read when Prometheus scrapes."""

    def __init__(self, state):
        self.state = state

    def collect(self):
        s = self.state
        depth = GaugeMetricFamily("tingxie_queue_depth", "windows waiting per lane, jobs waiting", labels=["lane"])
        audio = CounterMetricFamily("tingxie_audio_seconds", "audio seconds decoded by the model", labels=["model"])
        stage = CounterMetricFamily("tingxie_stage_seconds", "model time per stage", labels=["model", "stage"])
        batches = CounterMetricFamily("tingxie_batches", "model batches run", labels=["model"])
        lanes = {"interactive": 0, "batch": 0}
        for m in s.manager.loaded():
            for k in lanes:
                lanes[k] += m["queue"].get(k, 0)
            st = m["stats"]
            audio.add_metric([m["id"]], st["audio_seconds"])
            batches.add_metric([m["id"]], st["batches"])
            for k, v in st["stage_seconds"].items():
                stage.add_metric([m["id"], k], v)
        for k, v in lanes.items():
            depth.add_metric([k], v)
        try:
            depth.add_metric(["jobs"], s.queue.depth())
        except Exception:
            pass
        yield depth
        yield audio
        yield stage
        yield batches
        streams = GaugeMetricFamily("tingxie_active_streams", "open real-time streams")
        streams.add_metric([], s.streams)
        yield streams
        gpu = gpu_memory()
        if gpu is not None:
            g = GaugeMetricFamily("tingxie_gpu_memory_bytes", "GPU memory used", labels=["device"])
            for i, used in enumerate(gpu):
                g.add_metric([str(i)], used)
            yield g


def gpu_memory() -> list[int] | None:
    """Used bytes per GPU through NVML, or None without a GPU or NVML."""
    if cuda_device_count() == 0:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        return [
            pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).used
            for i in range(pynvml.nvmlDeviceGetCount())
        ]
    except Exception:
        return None
