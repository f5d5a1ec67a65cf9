"""Linknet (Chaurasia & Culurciello 2017) with the exact segmentation_models 1.0.1 signature and layer names."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from ..blocks import conv_bn_act, segmentation_head, transpose_bn_relu
from ..validation import DECODER_BLOCK_TYPES, check_choice
from .common import center, finish, start

N_DECODER_BLOCKS = 5


def _decoder_block(x, skip, filters, stage: int, use_batchnorm: bool, block_type: str):
    """1x1 conv to a quarter of the channels, x2 upsampling (+3x3 conv or 4x4 transposed conv),
    1x1 conv to the skip's channels (or ``filters`` without skip), add the skip."""
    bottleneck = x.shape[-1] // 4
    out_filters = skip.shape[-1] if skip is not None else filters
    x = conv_bn_act(x, bottleneck, 1, name=f"decoder_stage{stage}a", use_batchnorm=use_batchnorm)
    if block_type == "upsampling":
        x = layers.UpSampling2D(2, name=f"decoder_stage{stage}_upsampling")(x)
        x = conv_bn_act(x, bottleneck, 3, name=f"decoder_stage{stage}b", use_batchnorm=use_batchnorm)
    else:
        x = transpose_bn_relu(x, bottleneck, f"decoder_stage{stage}b", use_batchnorm)
    x = conv_bn_act(x, out_filters, 1, name=f"decoder_stage{stage}c", use_batchnorm=use_batchnorm)
    if skip is not None:
        x = layers.Add(name=f"decoder_stage{stage}_add")([x, skip])
    return x


def _check_decoder_filters(decoder_filters, n_skips: int) -> tuple:
    try:
        filters = tuple(decoder_filters)
    except TypeError:
        filters = None
    valid = (
        filters is not None
        and len(filters) == N_DECODER_BLOCKS
        and all(f is None or (isinstance(f, int) and not isinstance(f, bool) and f > 0) for f in filters)
    )
    if valid and any(f is None for f in filters[n_skips:]):
        valid = False
    if not valid:
        raise ValueError(
            f"decoder_filters must be {N_DECODER_BLOCKS} entries (one per x2 upsampling block), each a positive "
            f"integer or None; None only for the first {n_skips} blocks, which take the channels of their skip "
            f"connection; got {decoder_filters!r}. The default is (None, None, None, None, 16)."
        )
    return filters


def Linknet(
    backbone_name: str = "vgg16",
    input_shape: tuple = (None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights: str | None = None,
    encoder_weights: str | None = "imagenet",
    encoder_freeze: bool = False,
    encoder_features: str | Sequence[str | int] = "default",
    decoder_block_type: str = "upsampling",
    decoder_filters: Sequence[int | None] = (None, None, None, None, 16),
    decoder_use_batchnorm: bool = True,
    *,
    feature_layout: str = "1.0.1",
    **kwargs,
) -> keras.Model:
    """Linknet: an encoder, then five x2 decoder blocks whose outputs are added to the encoder's skips
    (4 skips by default; the original paper has 3).

    Args:
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze, encoder_features,
            decoder_use_batchnorm, feature_layout, **kwargs: as `Unet`.
        decoder_block_type: 'upsampling' (UpSampling2D + 3x3 conv) or 'transpose' (Conv2DTranspose).
        decoder_filters: output channels of the five blocks; blocks with a skip connection take its channels
            (give None), the others need an integer.

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    check_choice("decoder_block_type", decoder_block_type, DECODER_BLOCK_TYPES)
    if isinstance(encoder_features, (list, tuple)):
        expected_skips = len(encoder_features)
    else:
        expected_skips = 4 if encoder_features == "default" else N_DECODER_BLOCKS  # a bad value fails below
    _check_decoder_filters(decoder_filters, min(expected_skips, N_DECODER_BLOCKS))
    encoder = start(
        backbone_name, input_shape, classes, activation, encoder_weights, feature_layout=feature_layout, **kwargs
    )
    skips = encoder.skips(encoder_features, n=4)
    if len(skips) < expected_skips and any(f is None for f in tuple(decoder_filters)[len(skips) : expected_skips]):
        # the filters were fine for the skips asked for: the backbone has fewer (no stride-2 map, e.g. mit_b0)
        example = tuple(decoder_filters)[: len(skips)] + (32,) * (N_DECODER_BLOCKS - 1 - len(skips)) + (16,)
        raise ValueError(
            f"Linknet's decoder blocks take their channels from the backbone's skip connections (None in "
            f"decoder_filters), but backbone {encoder.spec.name!r} gives only {len(skips)} (its feature strides are "
            f"{sorted(encoder.spec.features)}): give the channels of the blocks after them, e.g. "
            f"decoder_filters={example}."
        )
    filters = _check_decoder_filters(decoder_filters, min(len(skips), N_DECODER_BLOCKS))  # the backbone's skips

    x = center(encoder, decoder_use_batchnorm)
    for stage, stage_filters in enumerate(filters):
        skip = skips[stage] if stage < len(skips) else None
        x = _decoder_block(x, skip, stage_filters, stage, decoder_use_batchnorm, decoder_block_type)
    # 1.0.1 left this convolution unnamed (Keras called it conv2d_N); its weights files still load (by shape)
    outputs = segmentation_head(x, classes, activation, name="final_conv")
    return finish(encoder, outputs, f"linknet_{encoder.spec.name}", weights, encoder_freeze)
