"""PSPNet (Zhao et al. 2017) with the exact segmentation_models 1.0.1 signature and layer names, any input size."""

from __future__ import annotations

import keras
from keras import layers, ops

from ..backbones.registry import get_backbone_spec
from ..blocks import ResizeToReference, conv_bn_act, segmentation_head
from ..validation import check_choice, check_dropout, check_positive_int
from .common import finish, min_input_size, start

DOWNSAMPLE_FACTORS = (4, 8, 16)
POOLING_TYPES = ("avg", "max")
PYRAMID_BINS = (1, 2, 3, 6)
# 1.0.1 took the pyramid's input from its feature layers list (deepest first): stride 16, 8, 4.
_SKIP_INDEX = {16: 0, 8: 1, 4: 2}


@keras.saving.register_keras_serializable(package="segmentation_models")
class GridPooling2D(keras.layers.Layer):
    """Average or max pooling of a (B, H, W, C) map into ``bins`` x ``bins`` equal cells, for any H and W
    divisible by ``bins`` (also unknown ones). Equal to ``AveragePooling2D(H // bins)`` / ``MaxPooling2D``
    with stride = pool size, which needs sizes known when the model is built."""

    def __init__(self, bins: int, pooling: str = "avg", **kwargs):
        super().__init__(**kwargs)
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")
        self.bins, self.pooling = int(bins), pooling

    def call(self, inputs):
        shape = ops.shape(inputs)
        b = self.bins
        cells = ops.reshape(inputs, (-1, b, shape[1] // b, b, shape[2] // b, shape[3]))
        reduce = ops.mean if self.pooling == "avg" else ops.max
        return reduce(cells, axis=(2, 4))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bins, self.bins, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "bins": self.bins, "pooling": self.pooling}


def pyramid_pooling_branch(
    x: keras.KerasTensor, bins: int, filters: int, *, name: str, pooling: str = "avg", use_batchnorm: bool = True
) -> keras.KerasTensor:
    """PSP branch: pool into ``bins`` x ``bins`` cells, 1x1 conv-bn-relu, resize back to ``x``'s size.

    Layer names are 1.0.1's: ``{name}_pooling``, ``{name}_conv/_bn/_relu``, ``{name}_upsampling``.
    """
    y = GridPooling2D(bins, pooling, name=f"{name}_pooling")(x)
    y = conv_bn_act(y, filters, 1, name=name, use_batchnorm=use_batchnorm)
    return ResizeToReference(name=f"{name}_upsampling")([y, x])


def _check_min_size(backbone_name: str, input_shape, input_tensor, downsample_factor: int) -> None:
    """Explain the one size limit that stays: reflect padding to a multiple of 6 * downsample_factor."""
    shape = (
        tuple(input_tensor.shape[1:]) if input_tensor is not None and hasattr(input_tensor, "shape") else input_shape
    )
    if shape is None or len(tuple(shape)) != 3:
        return  # the common checks report the malformed shape
    multiple = max(bins for bins in PYRAMID_BINS) * downsample_factor
    minimum = min_input_size(get_backbone_spec(backbone_name).min_input_size, multiple)
    for label, size in zip(("height", "width"), tuple(shape)[:2]):
        if isinstance(size, int) and not isinstance(size, bool) and 0 < size < minimum:
            raise ValueError(
                f"input {label} {size} is too small for PSPNet with downsample_factor={downsample_factor}: the "
                f"pyramid pools the stride-{downsample_factor} map into 1, 2, 3 and 6 cells, so the input is "
                f"reflect-padded to a multiple of {multiple}, which needs at least {minimum} pixels. Use a larger "
                f"input or a smaller downsample_factor."
            )


def PSPNet(
    backbone_name: str = "vgg16",
    input_shape: tuple = (384, 384, 3),
    classes: int = 21,
    activation: str | None = "softmax",
    weights: str | None = None,
    encoder_weights: str | None = "imagenet",
    encoder_freeze: bool = False,
    downsample_factor: int = 8,
    psp_conv_filters: int = 512,
    psp_pooling_type: str = "avg",
    psp_use_batchnorm: bool = True,
    psp_dropout: float | None = None,
    **kwargs,
) -> keras.Model:
    """PSPNet: a pyramid pooling module (1, 2, 3, 6 cells) on the encoder's stride-``downsample_factor`` map,
    a 1x1 aggregation and a bilinear upsampling to the input size.

    Unlike 1.0.1, any input size works (also None): inputs that are not multiples of
    ``6 * downsample_factor`` are reflect-padded inside the model and the mask is cropped back; for
    multiples the model is exactly 1.0.1's.

    Args:
        backbone_name: a name from `get_available_backbone_names()`.
        input_shape: (H, W, C); any H and W or None (the minimum is 32, 49 for downsample_factor=16).
        classes: output channels.
        activation: output activation ('softmax', 'sigmoid', None/'linear' for logits, ...).
        weights: optional path to full-model weights (1.0.1 ``.h5``, Keras 3 ``.weights.h5`` or ``.keras``).
        encoder_weights: 'imagenet', None (random), another registered name, or a file path.
        encoder_freeze: freeze the encoder except its BatchNormalization layers.
        downsample_factor: 4, 8 or 16: the encoder stride the pyramid is built on.
        psp_conv_filters: channels of the pyramid branches and of the aggregation.
        psp_pooling_type: 'avg' or 'max' pooling in the pyramid.
        psp_use_batchnorm: batch normalisation in the pyramid.
        psp_dropout: spatial dropout rate before the head (None: no dropout).
        **kwargs: ``input_tensor`` (build on a Keras tensor); 1.0.1's backend/layers/models/utils are ignored.

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    check_choice("downsample_factor", downsample_factor, DOWNSAMPLE_FACTORS)
    check_choice("psp_pooling_type", psp_pooling_type, POOLING_TYPES)
    check_positive_int("psp_conv_filters", psp_conv_filters)
    check_dropout("psp_dropout", psp_dropout)
    _check_min_size(backbone_name, input_shape, kwargs.get("input_tensor"), downsample_factor)
    multiple = max(PYRAMID_BINS) * downsample_factor  # the pyramid's cells divide the map evenly
    encoder = start(backbone_name, input_shape, classes, activation, encoder_weights, multiple, **kwargs)
    skips = list(encoder.spec.default_skips)
    index = _SKIP_INDEX[downsample_factor]
    x = encoder.layer_output(skips[index]) if index < len(skips) else encoder.feature(downsample_factor)

    branches = [
        pyramid_pooling_branch(
            x,
            bins,
            psp_conv_filters,
            name=f"psp_level{bins}",
            pooling=psp_pooling_type,
            use_batchnorm=psp_use_batchnorm,
        )
        for bins in PYRAMID_BINS
    ]
    x = layers.Concatenate(axis=-1, name="psp_concat")([x, *branches])
    x = conv_bn_act(x, psp_conv_filters, 1, name="aggregation", use_batchnorm=psp_use_batchnorm)
    if psp_dropout is not None:
        x = layers.SpatialDropout2D(psp_dropout, name="spatial_dropout")(x)
    outputs = segmentation_head(x, classes, activation, name="final_conv", upsampling=downsample_factor)
    return finish(encoder, outputs, f"pspnet_{encoder.spec.name}", weights, encoder_freeze)
