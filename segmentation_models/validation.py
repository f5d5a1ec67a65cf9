"""Argument checks shared by every public builder: fail early, say what is wrong and how to fix it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np

if TYPE_CHECKING:
    from .backbones.registry import BackboneSpec

__all__ = [
    "check_classes",
    "check_activation",
    "check_input_shape",
    "check_choice",
    "check_positive_int",
    "check_dropout",
    "check_encoder_depth",
    "check_output_stride",
    "require_strides",
    "check_decoder_channels",
    "check_upsampling",
    "check_attention_type",
    "check_aux_params",
    "MODES",
    "check_score_options",
    "check_class_indexes",
    "check_class_weights",
    "check_no_extra_kwargs",
]


def check_classes(classes: object) -> int:
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be an integer >= 1 (1 for a binary mask), got {classes!r}")
    return classes


def check_activation(activation: object) -> str | Callable | None:
    """Accept a Keras activation name, a callable or None; raise a ValueError listing valid names."""
    if activation is None or callable(activation):
        return activation
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError):
        valid = ["sigmoid", "softmax", "linear", "relu", "tanh", "softplus", "swish", "None (logits)"]
        raise ValueError(f"Unknown activation {activation!r}; use one of {valid} or a callable.") from None
    return activation


def check_choice(name: str, value: object, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_input_shape(input_shape: object, min_size: int = 32) -> tuple:
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
def check_positive_int(name: str, value: object, meaning: str = "") -> int:
    """A positive integer; ``meaning`` (what the number is) goes into the message."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer{f' ({meaning})' if meaning else ''}, got {value!r}")
    return value


def check_dropout(name: str, value: object) -> float | None:
    """``None`` (no dropout) or a rate in [0, 1)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1):
        raise ValueError(f"{name} must be None or a dropout rate in [0, 1), got {value!r}")
    return value


# ---- architecture arguments: encoder depth and output stride, decoder widths, auxiliary head --------------
ENCODER_DEPTHS = (3, 4, 5)
OUTPUT_STRIDES = (8, 16, 32)  # 32: the plain backbone; 16 and 8 dilate its last stages
ATTENTION_TYPES = (None, "scse")
DECODER_BLOCK_TYPES = ("upsampling", "transpose")  # Unet and Linknet
AUX_PARAMS_KEYS = ("classes", "pooling", "dropout", "activation")
AUX_POOLINGS = ("avg", "max")


def check_encoder_depth(spec: BackboneSpec, encoder_depth: object, minimum: int = 3) -> int:
    """``encoder_depth`` d uses the feature maps at strides 2 .. 2**d; the backbone must have the deepest one."""
    allowed = [d for d in ENCODER_DEPTHS if d >= minimum]
    if isinstance(encoder_depth, bool) or encoder_depth not in allowed:
        raise ValueError(
            f"encoder_depth must be one of {allowed} (the decoder then starts at stride 2**encoder_depth), "
            f"got {encoder_depth!r}"
        )
    if 2**encoder_depth not in spec.features:
        have = [d for d in allowed if 2**d in spec.features]
        raise ValueError(
            f"backbone {spec.name!r} has no feature map at stride {2**encoder_depth}, so encoder_depth="
            f"{encoder_depth} is not available; use one of {have}"
        )
    return encoder_depth


def check_output_stride(
    output_stride: object,
    spec: BackboneSpec | None = None,
    allowed: Sequence[int] = OUTPUT_STRIDES,
    name: str = "output_stride",
) -> int:
    """An encoder output stride among ``allowed`` and, given ``spec``, one the backbone can produce
    (``spec.output_strides``: 32, and 16/8 for the families that can be dilated)."""
    if isinstance(output_stride, bool) or output_stride not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {output_stride!r}")
    if spec is not None and output_stride not in spec.output_strides:
        from .backbones.registry import available_backbones, get_backbone_spec  # the registry imports this module

        dilatable = [n for n in available_backbones() if output_stride in get_backbone_spec(n).output_strides]
        raise ValueError(
            f"backbone {spec.name!r} ({spec.family} family) cannot be dilated, so {name}={output_stride} is not "
            f"available. Use {name}={max(spec.output_strides)}, or a backbone that can be dilated: "
            f"{', '.join(dilatable)}."
        )
    return output_stride


def require_strides(
    spec: BackboneSpec,
    strides: Sequence[int],
    architecture: str,
    advice: str = "use another architecture (e.g. Unet or FPN) or another backbone",
) -> None:
    """Raise when ``spec`` lacks a feature map that ``architecture`` needs; ``advice`` ends the message."""
    missing = [s for s in strides if s not in spec.features]
    if missing:
        raise ValueError(
            f"{architecture} needs encoder feature maps at strides {list(strides)}, but backbone "
            f"{spec.name!r} has none at {missing} (it has {sorted(spec.features)}); {advice}."
        )


def check_decoder_channels(
    decoder_channels: object, encoder_depth: int, default: tuple, name: str = "decoder_channels"
) -> tuple[int, ...]:
    """One positive channel count per decoder block; the default is cut to its first ``encoder_depth`` entries."""
    if not isinstance(decoder_channels, (list, tuple)):
        raise ValueError(f"{name} must be a list of {encoder_depth} positive integers, got {decoder_channels!r}")
    channels = tuple(decoder_channels)
    if channels == tuple(default) and encoder_depth < len(default):
        channels = channels[:encoder_depth]
    if len(channels) != encoder_depth or not all(
        isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels
    ):
        raise ValueError(
            f"{name} must have encoder_depth={encoder_depth} positive integers (one per decoder block, "
            f"deepest first), got {decoder_channels!r}; e.g. {tuple(default)[:encoder_depth]}"
        )
    return channels


def check_upsampling(upsampling: object, stride: int, architecture: str, allow_none: bool = False) -> int:
    """The final upsampling must bring the decoder's output, at ``stride``, to the input size (None: that one)."""
    if upsampling is None and allow_none:
        return stride
    if isinstance(upsampling, bool) or upsampling != stride:
        raise ValueError(
            f"upsampling must be {stride}{' (or None)' if allow_none else ''} for {architecture}: "
            f"upsampling={upsampling!r} would not give a mask of the input's size (the decoder output is at "
            f"stride {stride} here)"
        )
    return upsampling


def check_attention_type(attention_type: object) -> None:
    if attention_type not in ATTENTION_TYPES:
        raise ValueError(
            f"decoder_attention_type must be None or 'scse' (concurrent spatial and channel squeeze & "
            f"excitation), got {attention_type!r}"
        )


def check_aux_params(aux_params: object) -> dict | None:
    """Validate SMP's ``aux_params`` (classes, pooling, dropout, activation) and fill in the defaults."""
    if aux_params is None:
        return None
    if not isinstance(aux_params, dict):
        raise ValueError(f"aux_params must be None or a dict with keys {list(AUX_PARAMS_KEYS)}, got {aux_params!r}")
    unknown = sorted(set(aux_params) - set(AUX_PARAMS_KEYS))
    if unknown:
        raise ValueError(f"aux_params has unknown key(s) {unknown}; allowed keys are {list(AUX_PARAMS_KEYS)}")
    if "classes" not in aux_params:
        raise ValueError("aux_params needs 'classes' (the number of image-level labels), e.g. {'classes': 4}")
    params = {"pooling": "avg", "dropout": None, "activation": None, **aux_params}
    try:
        check_classes(params["classes"])
    except ValueError as err:
        raise ValueError(f"aux_params: {err}") from None
    check_dropout("aux_params['dropout']", params["dropout"])
    if params["pooling"] not in AUX_POOLINGS:
        raise ValueError(f"aux_params['pooling'] must be one of {list(AUX_POOLINGS)}, got {params['pooling']!r}")
    check_activation(params["activation"])
    return params


# ---- losses and metrics ----------------------------------------------------------------------------
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
