"""Keras functions replaced while the fast paths are installed, each dispatching per call: the fast version
inside a package model (see ``_context``), Keras' own untouched otherwise."""

from __future__ import annotations

import functools
import importlib
import sys
import warnings

ORIGINAL: dict = {}  # name -> Keras' own function, while installed


def resolve(paths: dict) -> tuple[dict, list[str]]:
    """``name -> (module, class or None, attribute)`` to (``name -> (owner, attribute)`` for the targets present,
    the names missing from this Keras version)."""
    found, missing = {}, []
    for name, (module, cls, attr) in paths.items():
        try:
            owner = importlib.import_module(module)
            owner = getattr(owner, cls) if cls else owner
            getattr(owner, attr)
        except (ImportError, AttributeError):
            missing.append(name)
            continue
        found[name] = (owner, attr)
    return found, missing


def _compiling():
    """torch.compile's tracing check (Keras' ``jit_compile=True``): Keras' own code is traced then. Never imports
    torch (on TensorFlow it need not be loaded)."""
    compiler = getattr(sys.modules.get("torch"), "compiler", None)
    return getattr(compiler, "is_compiling", lambda: False)


def scoped(name: str, fast, active):
    """``fast`` where ``active()``, Keras' own function otherwise (and while torch.compile traces)."""
    compiling = _compiling()

    @functools.wraps(fast)
    def dispatch(*args, **kwargs):
        if active() and not compiling():
            return fast(*args, **kwargs)
        return ORIGINAL[name](*args, **kwargs)

    return dispatch


def install(paths: dict, replacements: dict, wrap) -> list[str]:
    """Put ``wrap(name, replacement)`` in place of each target in ``paths``; warns about each one this Keras lacks
    (its own stays). Returns the names installed."""
    targets, missing = resolve(paths)
    for name in missing:
        module, cls, attr = paths[name]
        warnings.warn(
            f"segmentation_models.accel: {module}.{cls + '.' if cls else ''}{attr} is not in this Keras "
            f"version: that fast path stays off (Keras' own runs)",
            RuntimeWarning,
            stacklevel=3,
        )
    for name, (owner, attr) in targets.items():
        ORIGINAL[name] = getattr(owner, attr)
        setattr(owner, attr, wrap(name, replacements[name]))
    return list(targets)


def restore(paths: dict) -> None:
    """Put Keras' own functions back."""
    targets, _ = resolve(paths)
    for name, (owner, attr) in targets.items():
        if name in ORIGINAL:
            setattr(owner, attr, ORIGINAL.pop(name))


def original(name: str):
    """Keras' own function that ``name`` replaces."""
    return ORIGINAL[name]
