"""What every architecture builder shares: argument checks, encoder, any input size, head, freezing, weights.

Any input size: `start` pads the input (reflect padding, centred) up to the next multiple of what the
architecture needs (32 for five x2 stages) and `finish` crops the mask back to the input's size. Both are
registered layers that compute the amounts with ``keras.ops`` at run time, so they work with ``None``
dimensions on every backend. A fixed input that is already a multiple gets no extra layer at all, so the
model (and its layer list) is exactly the 1.0.1 one.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from .. import accel
from ..backbones.factory import Encoder, build_encoder, freeze_encoder, make_input
from ..backbones.registry import BackboneSpec, available_backbones, get_backbone_spec
from ..blocks import AUX_POOLINGS, classification_head
from ..validation import check_activation, check_classes
from ..weights import load_weights_file

PAD_LAYER_NAME = "pad_to_multiple"
CROP_LAYER_NAME = "crop_to_input"


def _pad_amounts(size, multiple: int):
    """(before, after) padding that brings ``size`` (int or scalar tensor) to a multiple of ``multiple``."""
    total = (multiple - size % multiple) % multiple
    before = total // 2
    return before, total - before


def _padded_size(size, multiple: int):
    return None if size is None else -(-size // multiple) * multiple


@keras.saving.register_keras_serializable(package="segmentation_models")
class PadToMultiple(keras.layers.Layer):
    """Pad height and width (centred) up to the next multiple of ``multiple``; a no-op on multiples.

    ``mode`` is 'reflect' (default: no artificial edges for the encoder to see) or 'constant' (zeros).
    Reflect padding needs each side to be smaller than the image; the builders' minimum input size
    guarantees it.
    """

    def __init__(self, multiple: int, mode: str = "reflect", **kwargs):
        super().__init__(autocast=False, **kwargs)
        if mode not in ("reflect", "constant"):
            raise ValueError(f"mode must be 'reflect' or 'constant', got {mode!r}")
        self.multiple = int(multiple)
        self.mode = mode

    def call(self, inputs):
        shape = ops.shape(inputs)
        top, bottom = _pad_amounts(shape[1], self.multiple)
        left, right = _pad_amounts(shape[2], self.multiple)
        if all(isinstance(v, int) and v == 0 for v in (top, bottom, left, right)):
            return inputs  # known sizes that are multiples already (torch's reflect pad rejects all-zero widths)
        return ops.pad(inputs, [[0, 0], [top, bottom], [left, right], [0, 0]], mode=self.mode)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, _padded_size(h, self.multiple), _padded_size(w, self.multiple), c)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple, "mode": self.mode}


@keras.saving.register_keras_serializable(package="segmentation_models")
class CropToInput(keras.layers.Layer):
    """Crop ``[output, image]``'s output back to the image's height and width (undoes `PadToMultiple`)."""

    def __init__(self, multiple: int, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.multiple = int(multiple)

    def call(self, inputs):
        output, image = inputs
        shape = ops.shape(image)
        top, _ = _pad_amounts(shape[1], self.multiple)
        left, _ = _pad_amounts(shape[2], self.multiple)
        return output[:, top : top + shape[1], left : left + shape[2], :]

    def compute_output_shape(self, input_shape):
        output_shape, image_shape = input_shape
        return (output_shape[0], image_shape[1], image_shape[2], output_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


def needs_padding(shape, multiple: int) -> bool:
    """Whether an input of ``shape`` (H, W, C) must be padded to reach multiples of ``multiple``."""
    return multiple > 1 and any(s is None or s % multiple for s in tuple(shape)[:2])


def min_input_size(backbone_min: int, size_multiple: int) -> int:
    """Smallest accepted height/width: the backbone's minimum, and more than half of ``size_multiple``
    (reflect padding of a side needs fewer pixels than the image has)."""
    return max(backbone_min, size_multiple // 2 + 1) if size_multiple > 1 else backbone_min


def start(
    backbone_name,
    input_shape,
    classes,
    activation,
    encoder_weights,
    size_multiple=32,
    feature_layout: str = "1.0.1",
    **kwargs,
) -> Encoder:
    """Validate the common arguments, make the input (padded to ``size_multiple`` when needed), build the encoder.

    ``size_multiple`` is what the decoder needs the backbone's input to divide by (32 for five x2 stages);
    ``feature_layout`` where the decoder taps the backbone: '1.0.1' (1.0.1's architectures) or 'smp'
    (segmentation_models.pytorch's taps, for the architectures that come from it).
    """
    check_classes(classes)
    check_activation(activation)
    spec = get_backbone_spec(backbone_name)
    image = make_input(
        input_shape, kwargs.pop("input_tensor", None), spec, min_size=min_input_size(spec.min_input_size, size_multiple)
    )
    if not needs_padding(image.shape[1:], size_multiple):
        return build_encoder(
            backbone_name, encoder_weights=encoder_weights, input_tensor=image, feature_layout=feature_layout, **kwargs
        )
    padded = PadToMultiple(size_multiple, name=PAD_LAYER_NAME)(image)
    encoder = build_encoder(
        backbone_name, encoder_weights=encoder_weights, input_tensor=padded, feature_layout=feature_layout, **kwargs
    )
    return dataclasses.replace(encoder, image=image, pad_multiple=size_multiple)


def finish(
    encoder: Encoder, outputs, name: str, weights=None, encoder_freeze: bool = False, aux_output=None
) -> keras.Model:
    """Make the model (the mask cropped back to the input size if `start` padded), freeze the encoder
    if asked, load full-model ``weights`` if given.

    With ``aux_output`` (the auxiliary classification head) the model returns ``(mask, labels)``.
    """
    if encoder.pad_multiple > 1:
        outputs = CropToInput(encoder.pad_multiple, name=CROP_LAYER_NAME)([outputs, encoder.input])
    if aux_output is not None:
        outputs = [outputs, aux_output]
    model = accel.adopt(keras.Model(encoder.input, outputs, name=name))  # the package's: its fast paths
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
        raise ValueError(
            f"decoder_channels must be a list of {encoder_depth} positive integers, got {decoder_channels!r}"
        )
    channels = tuple(decoder_channels)
    if channels == tuple(default) and encoder_depth < len(default):
        channels = channels[:encoder_depth]
    if len(channels) != encoder_depth or not all(
        isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels
    ):
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
    if dropout is not None and (
        isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1
    ):
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
    return [encoder.feature(2**i) if 2**i in encoder.features else None for i in range(1, encoder_depth + 1)]


def require_strides(spec: BackboneSpec, strides, architecture: str) -> None:
    """Raise when ``spec`` lacks a feature map that ``architecture`` needs."""
    missing = [s for s in strides if s not in spec.features]
    if missing:
        raise ValueError(
            f"{architecture} needs encoder feature maps at strides {list(strides)}, but backbone "
            f"{spec.name!r} has none at {missing} (it has {sorted(spec.features)}); "
            f"use another architecture (e.g. Unet or FPN) or another backbone."
        )
