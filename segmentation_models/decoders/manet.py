"""MA-Net (Fan et al. 2020): position attention on the deepest map, multi-scale fusion attention in the decoder."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers, ops

from ..blocks import channel_gate, conv_bn_act, decoder_block, segmentation_head
from ..validation import check_decoder_channels, check_positive_int
from .common import aux_head, check_arguments, finish, pyramid_features, start

DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)


@keras.saving.register_keras_serializable(package="segmentation_models")
class PositionAttention(layers.Layer):
    """MAnet's position-wise attention over all H*W positions: inputs (query, key, value), NHWC.

    As segmentation_models_pytorch: the softmax runs over the whole (HW x HW) map of each image, and the
    (HW, C) result is laid out in channels-first order before it returns to NHWC.
    """

    def call(self, inputs):
        query, key, value = inputs
        shape = ops.shape(value)
        batch, height, width, channels = shape[0], shape[1], shape[2], value.shape[-1]
        q = ops.reshape(query, (batch, -1, query.shape[-1]))
        k = ops.reshape(key, (batch, -1, key.shape[-1]))
        v = ops.reshape(value, (batch, -1, channels))
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1)))
        positions = ops.shape(scores)[1]
        weights = ops.reshape(ops.softmax(ops.reshape(scores, (batch, -1)), axis=-1), (batch, positions, positions))
        out = ops.reshape(ops.matmul(weights, v), (batch, channels, height, width))
        return ops.transpose(out, (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[2])


def position_attention_block(x: keras.KerasTensor, pab_channels: int = 64, name: str = "pab") -> keras.KerasTensor:
    """MAnet's PAB: x + position attention (1x1 query/key, 3x3 value), then a 3x3 conv."""
    channels = x.shape[-1]
    plain = dict(use_batchnorm=False, activation=None)
    query = conv_bn_act(x, pab_channels, 1, name=f"{name}_center", **plain)
    key = conv_bn_act(x, pab_channels, 1, name=f"{name}_top", **plain)
    value = conv_bn_act(x, channels, 3, name=f"{name}_bottom", **plain)
    y = PositionAttention(name=f"{name}_attention")([query, key, value])
    x = layers.Add(name=f"{name}_add")([x, y])
    return conv_bn_act(x, channels, 3, name=f"{name}_out", **plain)


def multiscale_fusion_block(
    x: keras.KerasTensor,
    skip: keras.KerasTensor,
    filters: int,
    name: str,
    use_batchnorm: bool = True,
    reduction: int = 16,
) -> keras.KerasTensor:
    """MAnet's MFAB: high-level features to the skip's channels, x2 up, gated by SE(high) + SE(skip), fused."""
    skip_channels = skip.shape[-1]
    x = conv_bn_act(x, x.shape[-1], 3, name=f"{name}_high1", use_batchnorm=use_batchnorm)
    x = conv_bn_act(x, skip_channels, 1, name=f"{name}_high2", use_batchnorm=use_batchnorm)
    x = layers.UpSampling2D(size=2, name=f"{name}_upsampling")(x)
    reduced = max(1, skip_channels // reduction)
    gate = layers.Add(name=f"{name}_gate")(
        [
            channel_gate(x, skip_channels, reduced, name=f"{name}_se_high"),
            channel_gate(skip, skip_channels, reduced, name=f"{name}_se_low"),
        ]
    )
    x = layers.Multiply(name=f"{name}_scale")([x, gate])
    x = layers.Concatenate(axis=-1, name=f"{name}_concat")([x, skip])
    x = conv_bn_act(x, filters, 3, name=f"{name}a", use_batchnorm=use_batchnorm)
    return conv_bn_act(x, filters, 3, name=f"{name}b", use_batchnorm=use_batchnorm)


def MAnet(
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
    decoder_pab_channels: int = 64,
    aux_params: dict | None = None,
    **kwargs,
) -> keras.Model:
    """MAnet: PAB (position-wise attention) on the deepest encoder map, then MFAB decoder blocks.

    Args:
        encoder_depth: 3, 4 or 5: the decoder starts at stride 2**encoder_depth.
        decoder_channels: one channel count per decoder block, deepest first (``encoder_depth`` entries;
            the default is cut to its first ones).
        decoder_use_batchnorm: batch normalisation in the decoder.
        decoder_pab_channels: channels of the position attention's query and key.
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze, aux_params,
            **kwargs: as `Unet`.

    Returns:
        The `keras.Model` from images to masks of their size, and to ``(mask, labels)`` with ``aux_params``.
    """
    spec, aux_params = check_arguments("MAnet", backbone_name, aux_params, encoder_depth=encoder_depth)
    channels = check_decoder_channels(decoder_channels, encoder_depth, DEFAULT_DECODER_CHANNELS)
    check_positive_int("decoder_pab_channels", decoder_pab_channels)
    encoder = start(backbone_name, input_shape, classes, activation, encoder_weights, feature_layout="smp", **kwargs)

    features = pyramid_features(encoder, encoder_depth)[::-1]  # deepest first
    head, skips = features[0], features[1:]
    x = position_attention_block(head, decoder_pab_channels, name="decoder_pab")
    for stage, filters in enumerate(channels):
        skip = skips[stage] if stage < len(skips) else None
        if skip is not None:
            x = multiscale_fusion_block(x, skip, filters, f"decoder_stage{stage}", decoder_use_batchnorm)
        else:  # no skip at this stride (the last block, or a backbone without this map)
            x = decoder_block(x, [], filters, f"decoder_stage{stage}", decoder_use_batchnorm)
    outputs = segmentation_head(x, classes, activation)
    labels = aux_head(head, aux_params)
    return finish(encoder, outputs, f"manet_{spec.name}", weights, encoder_freeze, labels)
