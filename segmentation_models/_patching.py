"""Replacing Keras functions and methods by faster ones, and putting Keras' own back (the backend kernel modules)."""
from __future__ import annotations

import importlib
import logging

logger = logging.getLogger("segmentation_models")


def resolve_targets(paths: dict) -> dict:
    """``name -> (module, class or None, attribute)`` to ``name -> (owner, attribute)`` for the targets present in
    this Keras version; absent ones are left out (logged at debug level), so Keras' own stay for them."""
    found = {}
    for name, (module, cls, attr) in paths.items():
        try:
            owner = importlib.import_module(module)
            owner = getattr(owner, cls) if cls else owner
            getattr(owner, attr)
        except (ImportError, AttributeError):  # pragma: no cover - depends on the Keras version
            logger.debug("segmentation_models: %s.%s not found, Keras' own kept", module, attr)
            continue
        found[name] = (owner, attr)
    return found


def restore(paths: dict, originals: dict) -> None:
    """Put the ``originals`` (name -> Keras' own function) back in place and forget them."""
    targets = resolve_targets(paths)
    for name, original in originals.items():
        owner, attr = targets[name]
        setattr(owner, attr, original)
    originals.clear()
