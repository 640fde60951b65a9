"""Resources of a process while the bench runs: CPU, peak RSS, and the GPU via NVML."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np


def _proc_cpu_rss(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MB) of a process: psutil when installed, else /proc."""
    try:
        import psutil

        p = psutil.Process(pid)
        t = p.cpu_times()
        return t.user + t.system, p.memory_info().rss / 2**20
    except ImportError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        return cpu, rss
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


class Monitor:
    """Samples a process's CPU and RSS, and the GPU through NVML when there is one."""

    def __init__(self, pid: int | None = None, interval: float = 0.2):
        self.pid = pid or os.getpid()
        self.interval = interval
        self.peak_rss_mb = 0.0
        self.gpu_mem_mb = 0.0
        self.gpu_util: list[float] = []
        self._stop = threading.Event()
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self._pynvml = pynvml
        except Exception:  # no pynvml, no driver or no GPU
            self._nvml = None

    def _sample(self) -> None:
        _, rss = _proc_cpu_rss(self.pid)
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        if self._nvml:
            for h in self._nvml:
                try:
                    self.gpu_mem_mb = max(self.gpu_mem_mb, self._pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20)
                    self.gpu_util.append(float(self._pynvml.nvmlDeviceGetUtilizationRates(h).gpu))
                except Exception:
                    pass

    def __enter__(self) -> Monitor:
        self._cpu0, _ = _proc_cpu_rss(self.pid)
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall = time.perf_counter() - self._t0
        self.cpu_seconds = _proc_cpu_rss(self.pid)[0] - self._cpu0

    def to_dict(self) -> dict:
        from ..device import cpu_cores

        d = {
            "cpu_percent_of_all_cores": round(100 * self.cpu_seconds / self.wall / cpu_cores(), 1)
            if self.wall
            else None,
            "peak_rss_mb": round(self.peak_rss_mb),
        }
        if self._nvml:
            d["gpu_peak_memory_mb"] = round(self.gpu_mem_mb)
            d["gpu_util_mean_percent"] = round(float(np.mean(self.gpu_util)), 1) if self.gpu_util else None
            d["gpu_util_peak_percent"] = max(self.gpu_util) if self.gpu_util else None
        return d
