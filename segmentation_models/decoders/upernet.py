"""UPerNet (Xiao et al. 2018) as segmentation_models_pytorch 0.6 builds it: the encoder maps at strides 4 ..
2**encoder_depth layer-normalised, pyramid pooling on the deepest, a top-down FPN with a 3x3 conv per level, all
levels fused at stride 4."""

from __future__ import annotations

from keras import layers

from ..backbones.registry import get_backbone_spec
from ..blocks import ResizeByFactor, ResizeToMatch, conv_bn_act, pyramid_pooling, segmentation_head
from .common import (
    aux_head,
    check_aux_params,
    check_encoder_depth,
    check_positive_int,
    finish,
    pyramid_features,
    require_strides,
    start,
)


def UPerNet(
    backbone_name: str = "resnet34",
    input_shape=(None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights=None,
    encoder_weights="imagenet",
    encoder_freeze: bool = False,
    encoder_depth: int = 5,
    decoder_channels: int = 256,
    decoder_use_batchnorm: bool = True,
    upsampling: int = 4,
    aux_params: dict | None = None,
    **kwargs,
):
    """UPerNet: PPM on the deepest map, top-down FPN over strides 2**encoder_depth/2 .. 4, fused at stride 4.

    Args:
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze:
            as `Unet`.
        encoder_depth: 3, 4 or 5: encoder maps at strides 4 .. 2**encoder_depth are used.
        decoder_channels: channels of the pyramid and of the fused features.
        decoder_use_batchnorm: batch normalisation in the pooling bins, the lateral, level and fusion convolutions
            (the pooling module's own fusion convolution always has it, as SMP's).
        upsampling: final bilinear upsampling from the decoder's stride 4 (must be 4).
        aux_params: optional auxiliary classification head (dict: classes, pooling, dropout, activation) on the
            deepest encoder map; the model then returns ``(mask, labels)``.
        **kwargs: ``input_tensor`` (build on a Keras tensor).

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    spec = get_backbone_spec(backbone_name)
    check_encoder_depth(spec, encoder_depth)
    check_positive_int("decoder_channels", decoder_channels)
    if upsampling != 4:
        raise ValueError(
            f"upsampling must be 4 for UPerNet (its decoder ends at stride 4, the mask must match "
            f"the input size), got {upsampling!r}"
        )
    aux_params = check_aux_params(aux_params)
    require_strides(spec, (4,), "UPerNet")
    encoder = start(backbone_name, input_shape, classes, activation, encoder_weights, feature_layout="smp", **kwargs)
    bn = decoder_use_batchnorm

    deepest = encoder.feature(2**encoder_depth)
    levels = {}  # stride -> encoder map, layer-normalised over channels (SMP's LayerNorm2d, eps 1e-6)
    for stride, feature in zip(range(2, encoder_depth + 1), pyramid_features(encoder, encoder_depth)[1:]):
        if feature is not None:
            levels[2**stride] = layers.LayerNormalization(epsilon=1e-6, name=f"decoder_norm_stride{2**stride}")(feature)
    x = pyramid_pooling(levels[2**encoder_depth], decoder_channels, use_batchnorm=bn, name="decoder_psp")
    pyramid = {2**encoder_depth: x}
    for stride in (2**i for i in range(encoder_depth - 1, 1, -1)):  # top-down: lateral 1x1 + upsampled state
        name = f"decoder_fpn_stride{stride}"
        if stride in levels:
            lateral = conv_bn_act(levels[stride], decoder_channels, 1, name=f"{name}_lateral", use_batchnorm=bn)
            x = layers.Add(name=f"{name}_add")([ResizeToMatch(name=f"{name}_resize")([x, lateral]), lateral])
        else:  # the backbone has no map here: upsample only
            x = ResizeByFactor(2, name=f"{name}_upsampling")(x)
        pyramid[stride] = x
    reference = pyramid[4]
    fused = []
    for stride in sorted(pyramid):  # stride 4 first, the pooling module's output last (as SMP concatenates)
        level = pyramid[stride]
        if stride != 2**encoder_depth:
            level = conv_bn_act(level, decoder_channels, 3, name=f"decoder_fpn_stride{stride}_conv", use_batchnorm=bn)
        if stride != 4:
            level = ResizeToMatch(name=f"decoder_fuse_resize{stride}")([level, reference])
        fused.append(level)
    x = layers.Concatenate(axis=-1, name="decoder_fuse_concat")(fused)
    x = conv_bn_act(x, decoder_channels, 3, name="decoder_fuse", use_batchnorm=bn)
    outputs = segmentation_head(x, classes, activation, kernel_size=1, upsampling=upsampling)
    labels = aux_head(deepest, aux_params)
    return finish(encoder, outputs, f"upernet_{spec.name}", weights, encoder_freeze, aux_output=labels)
