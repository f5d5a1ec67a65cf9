"""UPerNet (Xiao et al. 2018): pyramid pooling on the deepest map, an FPN, all levels fused at stride 4."""
from __future__ import annotations

from keras import layers

from ..backbones.registry import get_backbone_spec
from ..blocks import ResizeToMatch, conv_bn_act, pyramid_pooling, segmentation_head
from .common import (aux_head, check_aux_params, check_encoder_depth, check_positive_int, finish,
                     pyramid_features, require_strides, start)


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
    """UPerNet: PPM on the deepest map, top-down FPN over strides 2**encoder_depth/2 .. 2, fused at stride 4.

    Args:
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze:
            as `Unet`.
        encoder_depth: 3, 4 or 5: encoder maps at strides 2 .. 2**encoder_depth are used.
        decoder_channels: channels of the pyramid and of the fused features.
        decoder_use_batchnorm: batch normalisation in the pooling bins, lateral and fusion convolutions.
        upsampling: final bilinear upsampling from the decoder's stride 4 (must be 4).
        aux_params: optional auxiliary classification head (dict: classes, pooling, dropout, activation);
            the model then returns ``(mask, labels)``.
        **kwargs: ``input_tensor`` (build on a Keras tensor).

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    spec = get_backbone_spec(backbone_name)
    check_encoder_depth(spec, encoder_depth)
    check_positive_int("decoder_channels", decoder_channels)
    if upsampling != 4:
        raise ValueError(f"upsampling must be 4 for UPerNet (its decoder ends at stride 4, the mask must match "
                         f"the input size), got {upsampling!r}")
    aux_params = check_aux_params(aux_params)
    require_strides(spec, (4,), "UPerNet")
    encoder = start(backbone_name, input_shape, classes, activation, encoder_weights, feature_layout="smp", **kwargs)

    features = pyramid_features(encoder, encoder_depth)[::-1]  # deepest first, strides 2**depth .. 2
    x = pyramid_pooling(features[0], decoder_channels, use_batchnorm=decoder_use_batchnorm, name="decoder_psp")
    levels = {2**encoder_depth: x}
    for i, skip in enumerate(features[1:]):
        stride = 2 ** (encoder_depth - 1 - i)
        name = f"decoder_fpn_stride{stride}"
        if skip is None:  # the backbone has no map here: upsample only
            x = layers.UpSampling2D(size=2, interpolation="bilinear", name=f"{name}_upsampling")(x)
        else:
            lateral = conv_bn_act(skip, decoder_channels, 1, name=f"{name}_lateral", use_batchnorm=decoder_use_batchnorm)
            x = layers.Add(name=f"{name}_add")([ResizeToMatch(name=f"{name}_resize")([x, skip]), lateral])
        levels[stride] = x
    reference = levels[4]
    fused = [level if stride == 4 else ResizeToMatch(name=f"decoder_fuse_resize{stride}")([level, reference])
             for stride, level in levels.items()]
    x = layers.Concatenate(axis=-1, name="decoder_fuse_concat")(fused)
    x = conv_bn_act(x, decoder_channels, 3, name="decoder_fuse", use_batchnorm=decoder_use_batchnorm)
    outputs = segmentation_head(x, classes, activation, kernel_size=1, upsampling=upsampling)
    labels = aux_head(features[0], aux_params)
    return finish(encoder, outputs, f"upernet_{spec.name}", weights, encoder_freeze, aux_output=labels)
