"""glibc malloc settings for the PyTorch backend on CPU: keep freed memory for reuse instead of returning it.

PyTorch allocates CPU tensors with plain ``malloc``. glibc serves the large ones (activations, gradients: tens of
MB) with a fresh ``mmap`` and gives them back to the kernel on ``free``, and trims the top of its heap whenever
more than ~64 MB there is free, so every training step asks the kernel for the same memory again: about 240 000
page faults (0.4 s of system time) per Unet-resnet34 step at 256x256, batch 8, on 2 cores; ~500 000 for SMP's.
TensorFlow, JAX and torch on CUDA avoid this with their own caching allocators.

:func:`retain_freed_memory` sets glibc to serve all allocations from its heap (``M_MMAP_MAX=0``; it still falls
back to ``mmap`` if the heap cannot grow) and to return memory only when more than 1 GiB at the top of the heap is
free (``M_TRIM_THRESHOLD``): after the first step no page faults, 8-16% faster training steps, and the process
keeps its peak heap size (peak RSS +5-20%, free blocks between live tensors; measured in docs/benchmarks.md).
A process-wide setting, so never applied on import: the command line applies it for its own process (torch
backend, unless ``SM_TORCH_RETAIN_MEMORY`` is 0/false/no/off), Python users opt in with
``segmentation_models.accel.enable(allocator=True)``. :func:`release_freed_memory` hands the free memory back
(``malloc_trim``), e.g. after training. Standard library only: benchmarks/worker.py loads it by path for SMP.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt(3) parameters and glibc's documented defaults (restored by retain_freed_memory(False)).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_RETAINED_TRIM_THRESHOLD = 1 << 30  # bytes free at the heap top before glibc gives memory back
_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}
_STATE = {"retaining": False}


def _glibc():
    """The process' glibc (None elsewhere: musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: AttributeError elsewhere)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory(enable: bool = True) -> bool:
    """Keep freed memory in glibc's heap for reuse (``enable=False``: glibc's default thresholds again, fixed:
    any mallopt call ends glibc's dynamic adjustment of the mmap threshold).

    Returns True if the setting was applied (False where the C library is not glibc). Affects the whole process
    and the allocations made after the call.
    """
    libc = _glibc()
    if libc is None:
        return False
    if enable:
        applied = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _RETAINED_TRIM_THRESHOLD) == 1
    else:
        applied = all(libc.mallopt(param, value) == 1 for param, value in _DEFAULTS.items())
    if applied:
        _STATE["retaining"] = enable
    return applied


def retaining_freed_memory() -> bool:
    """True while :func:`retain_freed_memory` is in effect."""
    return _STATE["retaining"]


def release_freed_memory() -> bool:
    """Return the free memory of glibc's heap to the kernel (``malloc_trim(0)``); True if any was released."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))
