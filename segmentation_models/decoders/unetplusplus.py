"""Unet++ (Zhou et al. 2018): Unet with a nested grid of dense skip connections (segmentation_models_pytorch design)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from ..blocks import decoder_block, segmentation_head
from ..validation import check_attention_type, check_decoder_channels
from .common import aux_head, check_arguments, finish, pyramid_features, start

DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)


def UnetPlusPlus(
    backbone_name: str = "resnet34",
    input_shape: tuple = (None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights: str | None = None,
    encoder_weights: str | None = "imagenet",
    encoder_freeze: bool = False,
    encoder_depth: int = 5,
    decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
    decoder_use_batchnorm: bool = True,
    decoder_attention_type: str | None = None,
    aux_params: dict | None = None,
    **kwargs,
) -> keras.Model:
    """Unet++: decoder nodes ``x_{i}_{j}`` fed by every shallower node of their resolution and the encoder skip.

    Args:
        encoder_depth: 3, 4 or 5: encoder maps at strides 2 .. 2**encoder_depth are used (the backbone needs
            every one of them).
        decoder_channels: one channel count per decoder column, deepest first (``encoder_depth`` entries;
            the default is cut to its first ones).
        decoder_use_batchnorm: batch normalisation in the decoder.
        decoder_attention_type: None or 'scse'.
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze, aux_params,
            **kwargs: as `Unet`.

    Returns:
        The `keras.Model`: masks from the top row of nodes at the input size, or ``(mask, labels)``.
    """
    spec, aux_params = check_arguments(
        "UnetPlusPlus",
        backbone_name,
        aux_params,
        encoder_depth=encoder_depth,
        required_strides=tuple(2**i for i in range(1, encoder_depth + 1)),
    )
    channels = check_decoder_channels(decoder_channels, encoder_depth, DEFAULT_DECODER_CHANNELS)
    check_attention_type(decoder_attention_type)
    encoder = start(backbone_name, input_shape, classes, activation, encoder_weights, feature_layout="smp", **kwargs)

    features = pyramid_features(encoder, encoder_depth)[::-1]  # deepest first
    skip_channels = [f.shape[-1] for f in features[1:]]
    depth = encoder_depth - 1
    block = dict(use_batchnorm=decoder_use_batchnorm, attention_type=decoder_attention_type)
    nodes = {}
    for level in range(depth):  # level 0: the first node of each column; then the nested nodes
        for i in range(depth - level):
            j = i + level
            # node x_i_j outputs decoder_channels[j] on the main path (i == 0), the skip's channels elsewhere
            filters = channels[j] if i == 0 else skip_channels[j]
            if level == 0:
                nodes[(i, j)] = decoder_block(features[i], [features[i + 1]], filters, f"decoder_x_{i}_{j}", **block)
            else:
                dense = [nodes[(k, j)] for k in range(i + 1, j + 1)] + [features[j + 1]]
                nodes[(i, j)] = decoder_block(nodes[(i, j - 1)], dense, filters, f"decoder_x_{i}_{j}", **block)
    x = decoder_block(nodes[(0, depth - 1)], [], channels[-1], f"decoder_x_0_{depth}", **block)
    outputs = segmentation_head(x, classes, activation)
    labels = aux_head(features[0], aux_params)
    return finish(encoder, outputs, f"unetplusplus_{spec.name}", weights, encoder_freeze, labels)
