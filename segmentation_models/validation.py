"""Argument checks shared by every public builder: fail early, say what is wrong and how to fix it."""

from __future__ import annotations

from collections.abc import Sequence

import keras

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
