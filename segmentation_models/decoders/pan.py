"""PAN, Pyramid Attention Network (Li et al. 2018): FPA on the deepest map, GAU blocks up to stride 4."""

from __future__ import annotations

import keras
from keras import layers

from ..blocks import ResizeToMatch, conv_bn_act, segmentation_head
from ..validation import check_positive_int, check_upsampling
from .common import aux_head, check_arguments, finish, start


def feature_pyramid_attention(x: keras.KerasTensor, filters: int, name: str = "fpa") -> keras.KerasTensor:
    """PAN's FPA: a 3-level (7x7, 5x5, 3x3) single-channel pyramid gates a 1x1 projection; plus a global branch.

    Pooling is ceil-mode ('same') and every upsampling resizes to the partner tensor, so small and
    odd-sized maps work (SMP's floor sizes are the same for maps divisible by 8).
    """
    glob = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_global_pool")(x)
    glob = conv_bn_act(glob, filters, 1, name=f"{name}_global")
    glob = ResizeToMatch(name=f"{name}_global_resize")([glob, x])
    mid = conv_bn_act(x, filters, 1, name=f"{name}_mid")
    down1 = layers.MaxPooling2D(2, padding="same", name=f"{name}_down1_pool")(x)
    down1 = conv_bn_act(down1, 1, 7, name=f"{name}_down1")
    down2 = layers.MaxPooling2D(2, padding="same", name=f"{name}_down2_pool")(down1)
    down2 = conv_bn_act(down2, 1, 5, name=f"{name}_down2")
    down3 = layers.MaxPooling2D(2, padding="same", name=f"{name}_down3_pool")(down2)
    down3 = conv_bn_act(down3, 1, 3, name=f"{name}_down3a")
    down3 = conv_bn_act(down3, 1, 3, name=f"{name}_down3b")
    y = layers.Add(name=f"{name}_add2")(
        [conv_bn_act(down2, 1, 5, name=f"{name}_conv2"), ResizeToMatch(name=f"{name}_up3")([down3, down2])]
    )
    y = layers.Add(name=f"{name}_add1")(
        [conv_bn_act(down1, 1, 7, name=f"{name}_conv1"), ResizeToMatch(name=f"{name}_up2")([y, down1])]
    )
    y = ResizeToMatch(name=f"{name}_up1")([y, x])
    y = layers.Multiply(name=f"{name}_scale")([mid, y])
    return layers.Add(name=f"{name}_add")([y, glob])


def global_attention_upsample(
    low: keras.KerasTensor, high: keras.KerasTensor, filters: int, name: str = "gau"
) -> keras.KerasTensor:
    """PAN's GAU: the high-level map upsampled to the low-level one, plus conv3x3(low) gated by high's context."""
    high_up = ResizeToMatch(name=f"{name}_resize")([high, low])
    low = conv_bn_act(low, filters, 3, name=f"{name}_low")
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_gate_pool")(high)
    gate = conv_bn_act(gate, filters, 1, name=f"{name}_gate", activation="sigmoid")
    return layers.Add(name=f"{name}_add")([high_up, layers.Multiply(name=f"{name}_scale")([low, gate])])


def PAN(
    backbone_name: str = "resnet34",
    input_shape: tuple = (None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights: str | None = None,
    encoder_weights: str | None = "imagenet",
    encoder_freeze: bool = False,
    encoder_output_stride: int = 16,
    decoder_channels: int = 32,
    upsampling: int = 4,
    aux_params: dict | None = None,
    **kwargs,
) -> keras.Model:
    """PAN: Feature Pyramid Attention on the encoder output, Global Attention Upsample at strides 16, 8, 4.

    Args:
        encoder_output_stride: 16 (SMP's default: the last encoder stage is dilated; the backbone family
            must allow it) or 32 (plain encoder).
        decoder_channels: channels of the decoder.
        upsampling: the final bilinear upsampling from the decoder's stride 4 (must be 4).
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze, aux_params,
            **kwargs: as `Unet`.

    Returns:
        The `keras.Model`: masks at the input size (the GAU chain ends at stride 4), or ``(mask, labels)``.
    """
    spec, aux_params = check_arguments(
        "PAN",
        backbone_name,
        aux_params,
        output_stride=encoder_output_stride,
        output_strides=(16, 32),
        required_strides=(4, 8, 16, 32),
    )
    check_positive_int("decoder_channels", decoder_channels)
    check_upsampling(upsampling, 4, "PAN")
    options = dict(output_stride=encoder_output_stride, feature_layout="smp")
    encoder = start(backbone_name, input_shape, classes, activation, encoder_weights, **options, **kwargs)

    deepest = encoder.feature(32)
    x = feature_pyramid_attention(deepest, decoder_channels, name="decoder_fpa")
    for stride, name in ((16, "decoder_gau3"), (8, "decoder_gau2"), (4, "decoder_gau1")):
        x = global_attention_upsample(encoder.feature(stride), x, decoder_channels, name=name)
    outputs = segmentation_head(x, classes, activation, upsampling=upsampling)
    labels = aux_head(deepest, aux_params)
    return finish(encoder, outputs, f"pan_{spec.name}", weights, encoder_freeze, labels)
