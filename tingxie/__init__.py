"""tingxie (听写): self-hosted speech recognition with cross-request batching.

Importing the package first sets how this process uses CPU memory and threads, which
must happen before numpy and CTranslate2 load (see `_tune_process`)."""

import ctypes
import os

__version__ = "0.1.0"

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_KEEP_FREE_BYTES = 1 << 30


def _tune_process() -> None:
    """CTranslate2 allocates large temporary buffers on every call (the encoder's
    attention scores: ~300 MB for four 30 s windows), through MKL's allocator, which
    returns them to the kernel when freed; every next call faults the pages in again,
    zeroed: ~1 M page faults and ~10 % of the CPU time of a batch run (measured with
    perf; docs/throughput.md). Taking them from glibc's heap instead, kept for reuse up
    to 1 GiB free, removes most of that. numpy's OpenBLAS would start a thread per core
    whose idle spinning after each small product (the mel filterbank) takes CPU from
    the engine."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if os.environ.get("TINGXIE_SYSTEM_MALLOC") or not _glibc():
        return
    os.environ.setdefault("MKL_DISABLE_FAST_MM", "1")  # MKL allocates through malloc
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_ARENA_MAX, 1)  # one heap: a thread's own arena cannot hold a 300 MB buffer
    libc.mallopt(_M_MMAP_MAX, 0)  # no buffer gets its own mapping (unmapped again when freed)
    libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE_BYTES)


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or not glibc
        return False


_tune_process()
