"""Argument checks shared by every public builder: fail early, say what is wrong and how to fix it."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

__all__ = [
    "check_classes",
    "check_activation",
    "check_input_shape",
    "check_choice",
    "check_positive_int",
    "check_dropout",
]


def check_classes(classes) -> int:
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be an integer >= 1 (1 for a binary mask), got {classes!r}")
    return classes


def check_activation(activation):
    """Accept a Keras activation name, a callable or None; raise a ValueError listing valid names."""
    if activation is None or callable(activation):
        return activation
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError):
        valid = ["sigmoid", "softmax", "linear", "relu", "tanh", "softplus", "swish", "None (logits)"]
        raise ValueError(f"Unknown activation {activation!r}; use one of {valid} or a callable.") from None
    return activation


def check_choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_input_shape(input_shape, min_size: int = 32) -> tuple:
    """Validate (H, W, C): H and W None or integers >= ``min_size`` (any size: builders pad and crop); C known."""
    if input_shape is None or len(tuple(input_shape)) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), e.g. (256, 256, 3); got {input_shape!r}")
    h, w, c = tuple(input_shape)
    if c is None or not isinstance(c, int) or c < 1:
        raise ValueError(f"the number of input channels must be a positive integer, got input_shape={input_shape!r}")
    for label, size in (("height", h), ("width", w)):
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"input {label} must be a positive integer or None, got {size!r}")
        if size < min_size:
            raise ValueError(
                f"input {label} {size} is smaller than the minimum {min_size} of this model; "
                f"resize or pad your images to at least {min_size}x{min_size}."
            )
    return (h, w, c)


# ---- decoder hyper-parameters ----------------------------------------------------------------------
def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_dropout(name: str, value):
    """``None`` (no dropout) or a rate in [0, 1)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1):
        raise ValueError(f"{name} must be None or a dropout rate in [0, 1), got {value!r}")
    return value


# ---- losses and metrics ----------------------------------------------------------------------------
__all__ += ["MODES", "check_score_options", "check_class_indexes", "check_class_weights", "check_no_extra_kwargs"]

MODES = ("binary", "multilabel", "multiclass")
_IGNORED_KWARGS = {"backend", "layers", "models", "utils"}  # 1.0.1's injected Keras submodules


def _as_array(value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value) if not isinstance(value, (list, tuple)) else value)


def check_score_options(
    owner: str,
    *,
    mode: str | None = None,
    class_indexes: object = None,
    class_weights: object = None,
    smooth: float | None = None,
    per_image: bool | None = None,
    threshold: float | None = None,
) -> None:
    """Fail early, naming ``owner``, on loss/metric arguments that can be checked without data."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"{owner}: mode must be one of {MODES} or None; got {mode!r}")
    if class_indexes is not None:
        idx = [class_indexes] if isinstance(class_indexes, (int, np.integer)) else list(class_indexes)
        if not idx or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i >= 0 for i in idx):
            raise ValueError(
                f"{owner}: class_indexes must be a non-negative int or a non-empty list of them; got {class_indexes!r}"
            )
    if class_weights is not None:
        scalar = isinstance(class_weights, (bool, int, float, str, np.generic))
        w = np.asarray(class_weights if scalar else _as_array(class_weights), dtype="float64")
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


def check_class_indexes(class_indexes: object, classes: int, pred_shape: tuple) -> list[int] | None:
    """``class_indexes`` as a list of valid channel indexes (or None)."""
    if class_indexes is None:
        return None
    idx = [int(class_indexes)] if isinstance(class_indexes, (int, np.integer)) else [int(i) for i in class_indexes]
    if not idx:
        raise ValueError("class_indexes is empty; pass None to use all classes")
    bad = [i for i in idx if not 0 <= i < classes]
    if bad:
        raise ValueError(
            f"class_indexes {bad} out of range: y_pred has shape {pred_shape}, i.e. {classes} classes "
            f"(valid indexes 0..{classes - 1})"
        )
    return idx


def check_class_weights(
    class_weights: object, classes: int, pred_shape: tuple, class_indexes: object = None
) -> float | np.ndarray:
    """A float, or a float32 array of one weight per (selected) class; ValueError on a length mismatch."""
    if class_weights is None:
        return 1.0
    if isinstance(class_weights, (int, float, np.number)):
        return float(class_weights)
    w = np.asarray(_as_array(class_weights), dtype="float32").reshape(-1)
    if w.size == 1:
        return float(w[0])
    if w.size != classes:
        where = (
            f"{classes} classes selected by class_indexes={list(class_indexes)}"
            if class_indexes is not None
            else f"{classes} classes"
        )
        raise ValueError(
            f"class_weights has {w.size} values but y_pred with shape {pred_shape} has {where}; "
            f"give one weight per class"
        )
    return w


def check_no_extra_kwargs(kwargs: dict) -> None:
    """TypeError on keyword arguments other than 1.0.1's ignored ``backend``, ``layers``, ``models``, ``utils``."""
    unknown = set(kwargs) - _IGNORED_KWARGS
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
