"""What every architecture builder shares: argument checks, encoder, head, freezing, weights."""
from __future__ import annotations

import keras

from ..backbones.factory import Encoder, build_encoder, freeze_encoder
from ..backbones.registry import BackboneSpec, available_backbones, get_backbone_spec
from ..blocks import AUX_POOLINGS, classification_head
from ..validation import check_activation, check_classes
from ..weights import load_weights_file


def start(backbone_name, input_shape, classes, activation, encoder_weights, size_multiple=32, **kwargs) -> Encoder:
    """Validate the common arguments and build the encoder."""
    check_classes(classes)
    check_activation(activation)
    return build_encoder(backbone_name, input_shape=input_shape, encoder_weights=encoder_weights,
                         size_multiple=size_multiple, **kwargs)


def finish(encoder: Encoder, outputs, name: str, weights=None, encoder_freeze: bool = False,
           aux_output=None) -> keras.Model:
    """Make the model, freeze the encoder if asked, load full-model ``weights`` if given.

    With ``aux_output`` (the auxiliary classification head) the model returns ``(mask, labels)``.
    """
    if aux_output is not None:
        outputs = [outputs, aux_output]
    model = keras.Model(encoder.input, outputs, name=name)
    if encoder_freeze:
        freeze_encoder(encoder.model)
    if weights is not None:
        load_weights_file(model, weights)
    return model


# ---- SMP keyword arguments: encoder depth, dilation, decoder channels, auxiliary head --------------------
ENCODER_DEPTHS = (3, 4, 5)
AUX_PARAMS_KEYS = ("classes", "pooling", "dropout", "activation")


def check_encoder_depth(spec: BackboneSpec, encoder_depth, minimum: int = 3) -> int:
    """``encoder_depth`` d uses the feature maps at strides 2 .. 2**d; the backbone must have the deepest one."""
    allowed = [d for d in ENCODER_DEPTHS if d >= minimum]
    if isinstance(encoder_depth, bool) or encoder_depth not in allowed:
        raise ValueError(f"encoder_depth must be one of {allowed} (the decoder then starts at stride 2**encoder_depth), "
                         f"got {encoder_depth!r}")
    if 2**encoder_depth not in spec.features:
        have = [d for d in allowed if 2**d in spec.features]
        raise ValueError(f"backbone {spec.name!r} has no feature map at stride {2**encoder_depth}, so encoder_depth="
                         f"{encoder_depth} is not available; use one of {have}")
    return encoder_depth


def check_output_stride(spec: BackboneSpec, output_stride, allowed=(8, 16, 32)) -> int:
    """Validate an encoder output stride: 32 is the plain backbone; 8 and 16 dilate its last stages."""
    if isinstance(output_stride, bool) or output_stride not in allowed:
        raise ValueError(f"encoder_output_stride must be one of {list(allowed)}, got {output_stride!r}")
    if output_stride != 32 and not spec.can_dilate:
        dilatable = [n for n in available_backbones() if get_backbone_spec(n).can_dilate]
        raise ValueError(
            f"backbone {spec.name!r} ({spec.family} family) cannot be dilated, so encoder_output_stride="
            f"{output_stride} is not available. Use encoder_output_stride=32"
            + (" (where this architecture allows it)" if 32 in allowed else "")
            + f", or a backbone that can be dilated: {', '.join(dilatable)}."
        )
    return output_stride


def check_decoder_channels(decoder_channels, encoder_depth: int, default: tuple) -> tuple:
    """One positive channel count per decoder block; the default is cut to its first ``encoder_depth`` entries."""
    if not isinstance(decoder_channels, (list, tuple)):
        raise ValueError(f"decoder_channels must be a list of {encoder_depth} positive integers, got {decoder_channels!r}")
    channels = tuple(decoder_channels)
    if channels == tuple(default) and encoder_depth < len(default):
        channels = channels[:encoder_depth]
    if len(channels) != encoder_depth or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0
                                                  for c in channels):
        raise ValueError(
            f"decoder_channels must have encoder_depth={encoder_depth} positive integers (one per decoder block, "
            f"deepest first), got {decoder_channels!r}; e.g. {tuple(default)[:encoder_depth]}"
        )
    return channels


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_aux_params(aux_params) -> dict | None:
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
    if params["pooling"] not in AUX_POOLINGS:
        raise ValueError(f"aux_params['pooling'] must be one of {list(AUX_POOLINGS)}, got {params['pooling']!r}")
    dropout = params["dropout"]
    if dropout is not None and (isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1):
        raise ValueError(f"aux_params['dropout'] must be None or a number in [0, 1), got {dropout!r}")
    check_activation(params["activation"])
    return params


def aux_head(x, aux_params: dict | None):
    """The auxiliary classification output on the deepest encoder feature ``x`` (None without aux_params)."""
    if aux_params is None:
        return None
    return classification_head(x, **aux_params, name="aux")


def pyramid_features(encoder: Encoder, encoder_depth: int) -> list:
    """Encoder feature maps at strides 2, 4, ..., 2**encoder_depth (None where the backbone has none)."""
    return [encoder.feature(2**i) if 2**i in encoder.spec.features else None for i in range(1, encoder_depth + 1)]


def require_strides(spec: BackboneSpec, strides, architecture: str) -> None:
    """Raise when ``spec`` lacks a feature map that ``architecture`` needs."""
    missing = [s for s in strides if s not in spec.features]
    if missing:
        raise ValueError(f"{architecture} needs encoder feature maps at strides {list(strides)}, but backbone "
                         f"{spec.name!r} has none at {missing} (it has {sorted(spec.features)}); "
                         f"use another architecture (e.g. Unet or FPN) or another backbone.")
