"""Which calls take the fast paths: the package's models, a ``scope()`` block, or every model after
``enable(everywhere=True)``; everything else runs Keras' own code."""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import weakref

_LOCAL = threading.local()  # .mode: True inside a package model or scope(), False inside disabled(), else None
PROCESS = {"everywhere": False}
MODELS: weakref.WeakSet = weakref.WeakSet()  # the models the package built (or adopted)
COUNTERS: collections.Counter = collections.Counter()  # fast-path entries, for status() and the tests


def switched_on(name: str, default: str = "1") -> bool:
    """An on/off environment variable: off for 0/false/no/off or empty."""
    return str(os.environ.get(name, default)).strip().lower() not in {"0", "false", "no", "off", ""}


def active() -> bool:
    """Whether the current call, on this thread, takes the fast paths."""
    mode = getattr(_LOCAL, "mode", None)
    return PROCESS["everywhere"] if mode is None else mode


def wants(model) -> bool:
    """Whether running ``model`` takes the fast paths: it is the package's (or inside a scope), unless disabled."""
    mode = getattr(_LOCAL, "mode", None)
    if mode is not None:
        return mode
    return PROCESS["everywhere"] or model in MODELS


@contextlib.contextmanager
def mode(value: bool):
    """The fast paths on (True) or off (False) for this block on this thread, whatever the model."""
    previous = getattr(_LOCAL, "mode", None)
    _LOCAL.mode = value
    try:
        yield
    finally:
        _LOCAL.mode = previous


def run_in_mode(value: bool, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` under :func:`mode` (no generator: this runs per model call)."""
    previous = getattr(_LOCAL, "mode", None)
    _LOCAL.mode = value
    try:
        return fn(*args, **kwargs)
    finally:
        _LOCAL.mode = previous
