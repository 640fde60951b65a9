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


# -- the machine's load while the bench runs --------------------------------------------
def _cpu_ticks() -> tuple[int, int, int] | None:
    """(busy, steal, total) jiffies of all CPUs from /proc/stat; None off Linux."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq  # guest time is already inside user
    return busy, steal, busy + idle + iowait + steal


class MachineLoad:
    """How much of the machine others took while the bench ran: CPU that processes other
    than the bench (and the servers it started) used, and hypervisor steal.

    Figures measured while something else competes for the cores are not the machine's
    capacity; the report says so when these are above TRUST_OTHERS_CORES / TRUST_STEAL.
    The bench's own processes are sampled every second, so a server that has stopped
    keeps the CPU it used."""

    TRUST_OTHERS_SHARE = 0.10  # others' CPU, as a share of all cores
    TRUST_STEAL_PCT = 5.0
    # headline figures should hold to ±10 %: identical repeats further apart than that
    # range (20 % of their mean) show a machine whose speed changed under the run,
    # which neither others' CPU nor steal reveals on every host (a noisy neighbour on
    # shared cores, a throttled CPU)
    TRUST_REPEAT_SPREAD_PCT = 20.0

    def judge_repeats(self, load: dict, measured: list[dict]) -> None:
        """Mark `load` (to_dict's) untrustworthy when one configuration's repeats spread
        more than TRUST_REPEAT_SPREAD_PCT, naming it."""
        for r in measured:
            spread = r.get("spread_percent")
            if r.get("repeats", 1) > 1 and spread is not None and spread > self.TRUST_REPEAT_SPREAD_PCT:
                why = (
                    f"the same run (batch {r.get('batch_size')} × {r.get('instances')}) took "
                    f"{min(r['wall_seconds_all']):g}–{max(r['wall_seconds_all']):g} s over {r['repeats']} repeats "
                    f"({spread:g} % apart): the machine's speed changed during the run"
                )
                load["trustworthy"] = False
                load["why_not"] = "; ".join(x for x in (load.get("why_not"), why) if x)
                return

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.pids: set[int] = {os.getpid()}
        self._cpu: dict[int, tuple[float, float]] = {}  # pid → (first, last) CPU seconds seen
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ended_cpu = 0.0

    def add_ended(self, cpu_seconds: float) -> None:
        """CPU of a child the bench waited for (its rusage), counted as the bench's own."""
        self._ended_cpu += cpu_seconds

    def watch(self, pid: int) -> None:
        with self._lock:
            self.pids.add(pid)
        self._sample()

    def _sample(self) -> None:
        with self._lock:
            for pid in self.pids:
                cpu, _ = _proc_cpu_rss(pid)
                if cpu > 0:
                    first, _ = self._cpu.get(pid, (cpu, cpu))
                    self._cpu[pid] = (first, cpu)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> MachineLoad:
        self.loadavg_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self._sample()
        self._t0, self._ticks0 = time.perf_counter(), _cpu_ticks()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall = time.perf_counter() - self._t0
        self._ticks1 = _cpu_ticks()

    def to_dict(self) -> dict:
        from ..device import cpu_cores

        cores = os.cpu_count() or cpu_cores()  # /proc/stat counts every CPU of the machine
        d: dict = {"wall_seconds": round(self.wall, 1), "cpus": cores, "loadavg_1m_before": self.loadavg_before}
        if self._ticks0 and self._ticks1:
            hz = os.sysconf("SC_CLK_TCK")
            busy = (self._ticks1[0] - self._ticks0[0]) / hz
            steal = self._ticks1[1] - self._ticks0[1]
            total = self._ticks1[2] - self._ticks0[2]
            own = sum(last - first for first, last in self._cpu.values()) + self._ended_cpu
            others = max(0.0, busy - own) / self.wall if self.wall else 0.0
            d.update(
                {
                    "own_cpu_cores": round(own / self.wall, 2) if self.wall else None,
                    "others_cpu_cores": round(others, 2),
                    "steal_percent": round(100 * steal / total, 1) if total else 0.0,
                }
            )
            reasons = []
            if others > self.TRUST_OTHERS_SHARE * cores:
                reasons.append(f"other processes used {others:.2f} of {cores} CPUs on average during the run")
            if d["steal_percent"] > self.TRUST_STEAL_PCT:
                reasons.append(f"the hypervisor took {d['steal_percent']} % of CPU time (steal) during the run")
            d["trustworthy"] = not reasons
            d["why_not"] = "; ".join(reasons)
        else:
            d.update({"trustworthy": None, "why_not": "no /proc/stat: the machine's load was not measured"})
        return d


def load_sentence(load: dict) -> str:
    """MachineLoad.to_dict as the benchmarks' reports say it: others' CPU and steal, and
    why the figures are not to be trusted when they are not."""
    return (
        f"other processes {load.get('others_cpu_cores')} of {load.get('cpus')} CPUs, steal {load.get('steal_percent')} %"
        + ("" if load.get("trustworthy", True) else f" — FIGURES NOT TRUSTWORTHY: {load.get('why_not')}")
    )
