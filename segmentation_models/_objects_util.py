"""Helpers shared by ``losses`` and ``metrics``: argument checks, config values, lookup by name."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping

import keras
import numpy as np

from .base.functional import MODES


def config_value(value):
    """A JSON-friendly copy of a class-weights / class-indexes argument."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    arr = np.asarray(keras.ops.convert_to_numpy(value) if not isinstance(value, (list, tuple)) else value)
    return arr.tolist()


def check_common(
    owner: str, *, mode=None, class_indexes=None, class_weights=None, smooth=None, per_image=None, threshold=None
) -> None:
    """Fail early, naming ``owner``, on arguments that can be checked without data."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"{owner}: mode must be one of {MODES} or None; got {mode!r}")
    if class_indexes is not None:
        idx = [class_indexes] if isinstance(class_indexes, (int, np.integer)) else list(class_indexes)
        if not idx or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i >= 0 for i in idx):
            raise ValueError(
                f"{owner}: class_indexes must be a non-negative int or a non-empty list of them; got {class_indexes!r}"
            )
    if class_weights is not None:
        w = np.asarray(config_value(class_weights), dtype="float64")
        if w.ndim > 1 or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(
                f"{owner}: class_weights must be a number or a 1-D list of non-negative numbers; got {class_weights!r}"
            )
    if smooth is not None and (not isinstance(smooth, (int, float)) or smooth < 0):
        raise ValueError(f"{owner}: smooth must be a non-negative number; got {smooth!r}")
    if per_image is not None and not isinstance(per_image, (bool, np.bool_)):
        raise ValueError(f"{owner}: per_image must be True or False; got {per_image!r}")
    if threshold is not None and not isinstance(threshold, (int, float)):
        raise ValueError(f"{owner}: threshold must be a number or None; got {threshold!r}")


def copy_object(obj):
    """A fresh, independent copy of a registered loss/metric (via its config)."""
    return keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))


def lookup(kind: str, identifier, table: Mapping[str, Callable[[], object]], fallback: Callable):
    """Resolve ``identifier`` (object or name) using ``table`` (name -> factory), then Keras' own names."""
    if not isinstance(identifier, str):
        if identifier is None or not callable(identifier):
            raise ValueError(f"{kind} must be a name or a callable; got {identifier!r}")
        return identifier
    if identifier in table:
        return table[identifier]()
    try:
        return fallback(identifier)
    except (ValueError, TypeError):
        pass
    close = difflib.get_close_matches(identifier, list(table), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"unknown {kind} {identifier!r}.{hint} Known names: {', '.join(sorted(table))} and Keras' own {kind} names."
    )
