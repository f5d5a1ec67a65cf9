"""FPN (Kirillov et al., panoptic FPN head) with the exact segmentation_models 1.0.1 signature and layer names."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from ..blocks import ResizeByFactor, conv_bn_act, segmentation_head
from ..validation import check_choice, check_dropout, check_positive_int
from .common import finish, start

PYRAMID_AGGREGATIONS = ("sum", "concat")
PYRAMID_STYLES = ("1.0.1", "smp")


def _fpn_block(x, skip, filters: int, stage: int):
    """Top-down step: 1x1 convs to ``filters`` channels, x2 nearest upsampling, add the lateral skip."""
    if x.shape[-1] != filters:
        x = layers.Conv2D(filters, 1, kernel_initializer="he_uniform", name=f"fpn_stage_p{stage}_pre_conv")(x)
    skip = layers.Conv2D(filters, 1, kernel_initializer="he_uniform", name=f"fpn_stage_p{stage}_conv")(skip)
    x = layers.UpSampling2D(2, name=f"fpn_stage_p{stage}_upsampling")(x)
    return layers.Add(name=f"fpn_stage_p{stage}_add")([x, skip])


def _aggregate(branches: list, aggregation: str, dropout: float | None):
    """Sum or concatenation of the segmentation branches, then optional spatial dropout (1.0.1's layer names)."""
    if aggregation == "sum":
        x = layers.Add(name="aggregation_sum")(branches)
    else:
        x = layers.Concatenate(axis=-1, name="aggregation_concat")(branches)
    if dropout:
        x = layers.SpatialDropout2D(dropout, name="pyramid_dropout")(x)
    return x


def _segmentation_branch(x, filters: int, stage: int, use_batchnorm: bool):
    """Two 3x3 conv-bn-relu on a pyramid level, then nearest upsampling to stride 4 (of the x2-upsampled head)."""
    x = conv_bn_act(x, filters, 3, name=f"segm_stage{stage}a", use_batchnorm=use_batchnorm)
    x = conv_bn_act(x, filters, 3, name=f"segm_stage{stage}b", use_batchnorm=use_batchnorm)
    factor = 2 ** (stage - 2)
    if factor > 1:
        x = layers.UpSampling2D(factor, interpolation="nearest", name=f"upsampling_stage{stage}")(x)
    return x


def FPN(
    backbone_name: str = "vgg16",
    input_shape: tuple = (None, None, 3),
    classes: int = 21,
    activation: str | None = "softmax",
    weights: str | None = None,
    encoder_weights: str | None = "imagenet",
    encoder_freeze: bool = False,
    encoder_features: str | Sequence[str | int] = "default",
    pyramid_block_filters: int = 256,
    pyramid_use_batchnorm: bool = True,
    pyramid_aggregation: str = "concat",
    pyramid_dropout: float | None = None,
    *,
    pyramid_style: str = "1.0.1",
    **kwargs,
) -> keras.Model:
    """FPN: a feature pyramid on four encoder levels (strides 16..2 of 1.0.1's skips), a segmentation branch
    per level, aggregated and upsampled to the input size.

    Args:
        backbone_name: a name from `get_available_backbone_names()`.
        input_shape: (H, W, C); any H and W (>= 32) or None (other sizes than multiples of 32 are padded
            inside the model and the mask is cropped back to the input size).
        classes: output channels.
        activation: output activation ('softmax', 'sigmoid', None/'linear' for logits, ...).
        weights: optional path to full-model weights (1.0.1 ``.h5``, Keras 3 ``.weights.h5`` or ``.keras``).
        encoder_weights: 'imagenet', None (random), another registered name, or a file path.
        encoder_freeze: freeze the encoder except its BatchNormalization layers.
        encoder_features: 'default' or 4 backbone layer names/indices for the pyramid (deepest first).
        pyramid_block_filters: channels of the pyramid (the segmentation branches get half of it).
        pyramid_use_batchnorm: batch normalisation in the segmentation branches.
        pyramid_aggregation: 'concat' or 'sum' of the four segmentation branches.
        pyramid_dropout: spatial dropout rate on the aggregated pyramid (None: no dropout).
        pyramid_style: '1.0.1' (1.0.1's layers and names: pyramid on the encoder output and the four
            features, strides 16..2, merged at stride 2: 49 GFLOP per 256x256 image on resnet34) or 'smp'
            (segmentation_models.pytorch's FPN: pyramid on the encoder output and the first three features,
            strides 32..4, per level one 3x3 conv-bn-relu per x2 bilinear upsampling to stride 4, merged
            there, a 1x1 head and x4 bilinear upsampling: 14 GFLOP; BatchNormalization where SMP has
            GroupNorm; SMP's encoder taps, which differ from 1.0.1's on EfficientNet and MobileNetV2).
            Use ``pyramid_aggregation='sum'`` and ``pyramid_dropout=0.2`` for SMP's defaults.
        **kwargs: ``input_tensor`` (build on a Keras tensor); 1.0.1's backend/layers/models/utils are ignored.

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    check_choice("pyramid_aggregation", pyramid_aggregation, PYRAMID_AGGREGATIONS)
    check_positive_int("pyramid_block_filters", pyramid_block_filters)
    if pyramid_block_filters < 2:
        raise ValueError(
            f"pyramid_block_filters must be >= 2 (the segmentation branches get half), got {pyramid_block_filters}"
        )
    check_dropout("pyramid_dropout", pyramid_dropout)
    check_choice("pyramid_style", pyramid_style, PYRAMID_STYLES)
    layout = "smp" if pyramid_style == "smp" else "1.0.1"
    encoder = start(backbone_name, input_shape, classes, activation, encoder_weights, feature_layout=layout, **kwargs)
    skips = encoder.skips(encoder_features, n=4)
    # SMP's pyramid uses the skips at strides 16, 8, 4 only: backbones without a stride-2 map (MiT, ConvNeXt,
    # keras-hub ResNet) serve it
    needed = 3 if pyramid_style == "smp" else 4
    if len(skips) < needed:
        hint = (
            f" Backbone {encoder.spec.name!r} has no stride-2 map (strides {sorted(encoder.features)}): use "
            "pyramid_style='smp', which needs strides 4-32 only."
            if encoder_features == "default" and 2 not in encoder.features
            else ""
        )
        raise ValueError(
            f"FPN needs {needed} encoder_features (strides {', '.join(map(str, (16, 8, 4, 2)[:needed]))}, deepest "
            f"first), got {len(skips)}: {encoder_features!r}.{hint}"
        )
    segmentation_filters = pyramid_block_filters // 2
    if pyramid_style == "smp":
        outputs = _smp_pyramid(
            encoder.output,
            skips[:3],
            classes,
            activation,
            pyramid_block_filters,
            segmentation_filters,
            pyramid_use_batchnorm,
            pyramid_aggregation,
            pyramid_dropout,
        )
        return finish(encoder, outputs, f"fpn_{encoder.spec.name}", weights, encoder_freeze)

    x = encoder.output
    branches = []
    for stage, skip in zip((5, 4, 3, 2), skips):
        x = _fpn_block(x, skip, pyramid_block_filters, stage)
        branches.append(_segmentation_branch(x, segmentation_filters, stage, pyramid_use_batchnorm))
    branches = branches[::-1]  # s2, s3, s4, s5 as in 1.0.1
    x = _aggregate(branches, pyramid_aggregation, pyramid_dropout)
    x = conv_bn_act(x, segmentation_filters, 3, name="final_stage", use_batchnorm=pyramid_use_batchnorm)
    x = ResizeByFactor(2, name="final_upsampling")(x)
    outputs = segmentation_head(x, classes, activation, name="head_conv")
    return finish(encoder, outputs, f"fpn_{encoder.spec.name}", weights, encoder_freeze)


def _smp_pyramid(
    x,
    skips,
    classes: int,
    activation,
    filters: int,
    segmentation_filters: int,
    use_batchnorm: bool,
    aggregation: str,
    dropout: float | None,
):
    """SMP's FPN decoder on the encoder output (stride 32) and three skips (strides 16, 8, 4)."""
    x = layers.Conv2D(filters, 1, kernel_initializer="he_uniform", name="fpn_stage_p5_pre_conv")(x)
    pyramid = [x]
    for stage, skip in zip((4, 3, 2), skips):
        x = _fpn_block(x, skip, filters, stage)
        pyramid.append(x)
    branches = []
    for stage, level in zip((5, 4, 3, 2), pyramid):
        upsamplings = stage - 2  # stride 2**stage -> stride 4
        for i in range(max(1, upsamplings)):
            level = conv_bn_act(
                level, segmentation_filters, 3, name=f"segm_stage{stage}_{i}", use_batchnorm=use_batchnorm
            )
            if i < upsamplings:
                level = ResizeByFactor(2, name=f"segm_stage{stage}_{i}_upsampling")(level)
        branches.append(level)
    x = _aggregate(branches, aggregation, dropout)
    return segmentation_head(x, classes, activation, kernel_size=1, name="head_conv", upsampling=4)
