"""glibc heap settings for a long-running server (no-ops elsewhere).

A server's native libraries (CTranslate2, llama.cpp, onnxruntime, espeak-ng) allocate and
free hundreds of MB per turn through glibc's malloc, which keeps freed pages it cannot return
from the top of a heap. Under heaptrack the live heap of a soak grew by a few KB a round
while RSS rose ~0.3 MB a round in glibc's heaps (docs/serving.md, soak). Handing free pages
back when idle lowers the level by about 100 MB.

The slow climb itself was Python's: every realtime session leaves reference cycles (asyncio
tasks, cancelled scopes and their tracebacks, uvicorn's WebSocket protocol with its zlib
streams, the session's audio buffers), and with the models' objects in the oldest generation,
CPython collected them only every several rounds, by which time new allocations had been
placed above them. Freezing the objects alive after start-up (`gc.freeze`) makes a full
collection cost well under a millisecond, so one runs before each trim.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import os


@functools.cache
def _libc() -> ctypes.CDLL | None:
    with contextlib.suppress(OSError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            return libc
    return None


def cap_arenas(workers: int) -> None:
    """Cap glibc's malloc arenas at max(2, workers). By default every thread that allocates
    gets an arena of its own (up to 8 per core), each keeping what its busiest moment needed:
    measured on three bursts of six concurrent 10-minute uploads, RSS after the bursts grew
    +161, +212, +261 MB; with two arenas it stays at +121 MB and the peak is lower. (An
    earlier fix, mapping every block over 1 MB on its own, returned as much but made each
    Whisper pass 1.6x slower: CTranslate2's buffers then page-fault on every call.)"""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-8, max(2, workers))  # M_ARENA_MAX


def freeze_loaded() -> None:
    """Call once the models are loaded: what is alive now lives as long as the server, so
    later collections need not walk it (a full collection: ~11 ms before, ~0 after)."""
    gc.collect()
    gc.freeze()


def give_back() -> None:
    """Collect the finished sessions' reference cycles, then return every free page of every
    arena to the system (`malloc_trim(0)`): about 1 ms; run when the server falls idle, so the
    next turn's first allocations re-fault at most what it uses, once (a Whisper pass
    measured no slower after it)."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def usage() -> dict[str, float | int | None]:
    """Resident memory (MB; Linux only, else None) and the Python objects not frozen at
    start-up: what `/health` reports, so a creep shows without a profiler."""
    rss = None
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/statm") as f:
        rss = round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    return {"rss_mb": rss, "python_objects": len(gc.get_objects())}
