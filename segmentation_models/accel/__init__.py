"""Speed for the package's own models, and nothing outside them.

Importing ``segmentation_models`` changes nothing in Keras or the process. The first model the package builds
installs the fast paths of its backend (verified Keras versions only, see :data:`VERIFIED_KERAS`): Keras
functions replaced by dispatchers that run the fast version only inside a package model's call, train or test
step (a thread-local context the package's models enter), and Keras' own function, untouched, for every other
model. So a user's model gives bitwise the results it gives without the package.

- torch (``torch_ops``, ``graph``, ``recompute``, ``optimizer``): zero-copy channels-last kernels, fused batch
  normalisation, a graph executor that drops tensors early and recomputes BN outputs in the backward pass,
  an in-place chunked Adam step, gradients released before the forward pass;
- TensorFlow (``tf_ops``): BatchNormalization as TensorFlow's fused kernel, as Keras 2 had;
- glibc's allocator (``allocator``): process-wide, so opt-in (``enable(allocator=True)``); the command line
  turns it on for its own process.

``SM_ACCEL=0`` turns everything off; ``SM_TORCH_FAST_OPS=0`` / ``SM_TF_FAST_OPS=0`` one backend's fast paths.
A model loaded from a file was not built by the package: :func:`adopt` it, or ``enable(everywhere=True)``.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator

import keras

from . import _context, _patches
from ._context import switched_on

__all__ = ["enable", "disable", "status", "adopt", "scope", "disabled", "process_wide", "VERIFIED_KERAS"]

# Keras releases (major.minor) the fast paths were verified on: tests/test_torch_kernels.py, tests/test_tf_kernels.py.
VERIFIED_KERAS = ("3.15",)
_BACKEND_SWITCH = {"torch": "SM_TORCH_FAST_OPS", "tensorflow": "SM_TF_FAST_OPS"}
_STATE = {"installed": [], "tried": False, "warned": False, "allocator": False}


def _modules(backend: str) -> list:
    """The modules with the fast paths of ``backend`` (each with TARGET_PATHS, and REPLACEMENTS and/or ENTRIES)."""
    if backend == "torch":
        from . import graph, optimizer, torch_ops

        return [torch_ops, graph, optimizer]
    if backend == "tensorflow":
        from . import tf_ops

        return [tf_ops]
    return []


def _keras_version() -> str:
    return ".".join(keras.__version__.split(".")[:2])


def verified() -> bool:
    """Whether the installed Keras is one the fast paths were verified on."""
    return _keras_version() in VERIFIED_KERAS


def _allowed(force: bool) -> bool:
    """Whether the fast paths may be installed now: not switched off, and a verified Keras (or forced; else one
    warning)."""
    backend = keras.backend.backend()
    if backend not in _BACKEND_SWITCH or not switched_on("SM_ACCEL") or not switched_on(_BACKEND_SWITCH[backend]):
        return False
    if force or verified() or switched_on("SM_ACCEL_FORCE", default="0"):
        return True
    if not _STATE["warned"]:
        _STATE["warned"] = True
        warnings.warn(
            f"segmentation_models: the fast paths were verified on Keras {', '.join(VERIFIED_KERAS)}; this "
            f"is Keras {keras.__version__}, so they stay off. SM_ACCEL_FORCE=1 or "
            f"segmentation_models.accel.enable(force=True) turns them on.",
            RuntimeWarning,
            stacklevel=4,
        )
    return False


def _install(force: bool = False) -> bool:
    """Install the fast paths of this backend (once); True if installed."""
    if _STATE["installed"]:
        return True
    if not _allowed(force):
        return False
    for module in _modules(keras.backend.backend()):
        scoped = getattr(module, "REPLACEMENTS", {})
        entries = getattr(module, "ENTRIES", {})
        _STATE["installed"] += _patches.install(
            module.TARGET_PATHS,
            {**scoped, **entries},
            lambda name, fast: fast if name in entries else _patches.scoped(name, fast, _context.active),  # noqa: B023  (called in this iteration)
        )
    return bool(_STATE["installed"])


def adopt(model: keras.Model) -> keras.Model:
    """Let ``model`` take the fast paths, as the package's own models do (e.g. one loaded from a ``.keras`` file);
    returns it. Installs the fast paths on first use (see :func:`enable`)."""
    _context.MODELS.add(model)
    if not _STATE["tried"]:
        _STATE["tried"] = True
        _install()
    return model


def enable(*, everywhere: bool = False, allocator: bool = False, force: bool = False) -> dict:
    """Install the fast paths (what the package's first model does by itself); returns :func:`status`.

    ``everywhere``: every model in the process takes them, not only the package's (the command line does this).
    ``allocator``: glibc keeps freed memory for reuse (torch backend, Linux; process-wide; not while
    ``SM_TORCH_RETAIN_MEMORY`` is 0). ``force``: also on a Keras version they were not verified on.
    ``SM_ACCEL=0`` still turns everything off.
    """
    _STATE["tried"] = True
    installed = _install(force)
    if everywhere and installed:
        _context.PROCESS["everywhere"] = True
    if (
        allocator
        and switched_on("SM_ACCEL")
        and keras.backend.backend() == "torch"
        and switched_on("SM_TORCH_RETAIN_MEMORY")
    ):
        from .allocator import retain_freed_memory

        _STATE["allocator"] = retain_freed_memory(True) or _STATE["allocator"]
    return status()


def disable() -> dict:
    """Keras' own functions back, the kernels' memory layout back, glibc's defaults back if :func:`enable` changed
    them; the package's models then run plain Keras until :func:`enable`. Returns :func:`status`."""
    for module in _modules(keras.backend.backend()):
        _patches.restore(module.TARGET_PATHS)
    _restore_layouts()
    _STATE["installed"] = []
    _STATE["tried"] = True  # no lazy install any more
    _context.PROCESS["everywhere"] = False
    if _STATE["allocator"]:
        from .allocator import retain_freed_memory

        retain_freed_memory(False)
        _STATE["allocator"] = False
    return status()


@contextlib.contextmanager
def process_wide() -> Iterator[None]:
    """A context for a program that owns its process (the command line): every model takes the fast paths and
    glibc keeps freed memory (torch) while it runs; afterwards both are as before (an in-process caller, e.g. a
    test, gets its process back)."""
    everywhere, allocator = _context.PROCESS["everywhere"], _STATE["allocator"]
    enable(everywhere=True, allocator=True)
    try:
        yield
    finally:
        _context.PROCESS["everywhere"] = everywhere
        if _STATE["allocator"] and not allocator:
            from .allocator import retain_freed_memory

            retain_freed_memory(False)
            _STATE["allocator"] = False


def _restore_layouts() -> None:
    """Conv kernels that the torch fast paths re-laid out, back in Keras' order (if that module was loaded)."""
    torch_ops = sys.modules.get(__name__ + ".torch_ops")
    if torch_ops is not None:
        torch_ops.restore_layouts()


def status() -> dict:
    """What is on: backend, Keras version and whether verified, the Keras functions replaced, whether every model
    or only the package's take them, the allocator setting, and how often the fast paths were entered."""
    from .allocator import retaining_freed_memory

    return {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "verified": verified(),
        "installed": list(_STATE["installed"]),
        "everywhere": _context.PROCESS["everywhere"],
        "allocator": retaining_freed_memory(),
        "recompute": switched_on("SM_TORCH_RECOMPUTE"),
        "models": len(_context.MODELS),
        "counters": dict(_context.COUNTERS),
    }


def scope() -> contextlib.AbstractContextManager:
    """A context: everything called in the block, on this thread, takes the fast paths (installed if needed),
    not only the package's models (tests, comparisons)."""
    _STATE["tried"] = True
    _install()
    return _context.mode(True)


def disabled() -> contextlib.AbstractContextManager:
    """A context: everything in the block, on this thread, runs Keras' own code, the package's models included
    (e.g. to reproduce a result on plain Keras)."""
    return _context.mode(False)
