"""DeepLabV3 (Chen et al. 2017) and DeepLabV3+ (Chen et al. 2018) on dilated encoders (as in
segmentation_models_pytorch): atrous spatial pyramid pooling (ASPP) on the deepest encoder map; V3+ adds a decoder
that fuses it with the stride-4 features."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from ..blocks import ResizeByFactor, ResizeToMatch, conv_bn_act, segmentation_head
from ..validation import check_dropout, check_positive_int, check_upsampling
from .common import aux_head, check_arguments, finish, start

ATROUS_RATES = (12, 24, 36)
HIGHRES_CHANNELS = 48  # DeepLabV3+'s projection of the stride-4 features, as in the paper


def aspp(
    x: keras.KerasTensor,
    filters: int,
    atrous_rates=ATROUS_RATES,
    separable: bool = False,
    dropout: float | None = 0.5,
    name: str = "aspp",
) -> keras.KerasTensor:
    """Atrous spatial pyramid pooling (DeepLabV3): 1x1, three dilated 3x3 and an image-pooling branch."""
    branches = [conv_bn_act(x, filters, 1, name=f"{name}_branch0")]
    for i, rate in enumerate(atrous_rates, start=1):
        branches.append(conv_bn_act(x, filters, 3, name=f"{name}_branch{i}", dilation_rate=rate, separable=separable))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_image_pool")(x)
    pooled = conv_bn_act(pooled, filters, 1, name=f"{name}_image")
    branches.append(ResizeToMatch(name=f"{name}_image_resize")([pooled, x]))
    y = layers.Concatenate(axis=-1, name=f"{name}_concat")(branches)
    y = conv_bn_act(y, filters, 1, name=f"{name}_project")
    if dropout:
        y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
    return y


def _check_aspp(atrous_rates, dropout) -> tuple[int, int, int]:
    rates = tuple(atrous_rates) if isinstance(atrous_rates, (list, tuple)) else ()
    if len(rates) != 3 or not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in rates):
        raise ValueError(f"decoder_atrous_rates must be 3 positive integers, e.g. {ATROUS_RATES}, got {atrous_rates!r}")
    check_dropout("decoder_aspp_dropout", dropout)
    return rates


def DeepLabV3(
    backbone_name: str = "resnet34",
    input_shape: tuple = (None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights: str | None = None,
    encoder_weights: str | None = "imagenet",
    encoder_freeze: bool = False,
    encoder_depth: int = 5,
    encoder_output_stride: int = 8,
    decoder_channels: int = 256,
    decoder_atrous_rates: Sequence[int] = ATROUS_RATES,
    decoder_aspp_separable: bool = False,
    decoder_aspp_dropout: float | None = 0.5,
    upsampling: int | None = None,
    aux_params: dict | None = None,
    **kwargs,
) -> keras.Model:
    """DeepLabV3: ASPP on the (dilated) deepest encoder map, a 3x3 conv, bilinear upsampling to the input size.

    Args:
        encoder_depth: 3, 4 or 5: the encoder map at nominal stride 2**encoder_depth is used.
        encoder_output_stride: 8 (default) or 16 dilate the encoder's last stages (ResNet, SE-ResNet,
            ResNeXt and EfficientNet families; others raise a ValueError), 32 uses the plain encoder.
        decoder_channels: channels of ASPP and the decoder.
        decoder_atrous_rates: the three ASPP dilation rates.
        decoder_aspp_separable: depthwise-separable ASPP convolutions.
        decoder_aspp_dropout: dropout after the ASPP projection.
        upsampling: final upsampling; None (the decoder's stride) is the only size-preserving value.
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze, aux_params,
            **kwargs: as `Unet`.

    Returns:
        The `keras.Model`: masks at the input size from the ASPP features' stride, or ``(mask, labels)``.
    """
    return _deeplab("DeepLabV3", **locals())  # the arguments, by name


def DeepLabV3Plus(
    backbone_name: str = "resnet34",
    input_shape: tuple = (None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights: str | None = None,
    encoder_weights: str | None = "imagenet",
    encoder_freeze: bool = False,
    encoder_depth: int = 5,
    encoder_output_stride: int = 16,
    decoder_channels: int = 256,
    decoder_atrous_rates: Sequence[int] = ATROUS_RATES,
    decoder_aspp_separable: bool = True,
    decoder_aspp_dropout: float | None = 0.5,
    upsampling: int = 4,
    aux_params: dict | None = None,
    **kwargs,
) -> keras.Model:
    """DeepLabV3+: ASPP on the (dilated) deepest map, upsampled to stride 4, fused with the stride-4 features.

    Args:
        the arguments of `DeepLabV3`, with other defaults: encoder_output_stride 16 (the encoder map ASPP sees is
        upsampled to stride 4 by the decoder), decoder_aspp_separable True (as SMP; the decoder's own two 3x3
        convolutions are always separable) and upsampling 4 (from the decoder's stride 4: 4 or None).

    Returns:
        The `keras.Model`: masks at the input size from the decoder's stride-4 output, or ``(mask, labels)``.
    """
    return _deeplab("DeepLabV3Plus", **locals())


def _deeplab(
    architecture: str,
    backbone_name: str,
    input_shape: tuple,
    classes: int,
    activation: str | None,
    weights,
    encoder_weights,
    encoder_freeze: bool,
    encoder_depth: int,
    encoder_output_stride: int,
    decoder_channels: int,
    decoder_atrous_rates,
    decoder_aspp_separable: bool,
    decoder_aspp_dropout: float | None,
    upsampling: int | None,
    aux_params: dict | None,
    kwargs: dict,
) -> keras.Model:
    """Both DeepLabs: ASPP on the deepest (dilated) encoder map, then V3's head or V3+'s decoder."""
    plus = architecture == "DeepLabV3Plus"
    spec, aux_params = check_arguments(
        architecture,
        backbone_name,
        aux_params,
        encoder_depth=encoder_depth,
        output_stride=encoder_output_stride,
        required_strides=(4,) if plus else (),
    )
    check_positive_int("decoder_channels", decoder_channels)
    rates = _check_aspp(decoder_atrous_rates, decoder_aspp_dropout)
    stride = min(2**encoder_depth, encoder_output_stride)  # of the deepest map, the one ASPP works on
    upsampling = check_upsampling(upsampling, 4 if plus else stride, architecture, allow_none=True)
    options = dict(output_stride=encoder_output_stride, feature_layout="smp")
    encoder = start(backbone_name, input_shape, classes, activation, encoder_weights, **options, **kwargs)

    deepest = encoder.feature(2**encoder_depth)
    x = aspp(deepest, decoder_channels, rates, decoder_aspp_separable, decoder_aspp_dropout, name="decoder_aspp")
    if plus:
        x = conv_bn_act(x, decoder_channels, 3, name="decoder_aspp_conv", separable=True)
        x = ResizeByFactor(stride // 4, name="decoder_upsampling")(x)
        highres = conv_bn_act(encoder.feature(4), HIGHRES_CHANNELS, 1, name="decoder_highres")
        x = layers.Concatenate(axis=-1, name="decoder_concat")([x, highres])
        x = conv_bn_act(x, decoder_channels, 3, name="decoder_fuse", separable=True)
    else:
        x = conv_bn_act(x, decoder_channels, 3, name="decoder_conv")
    outputs = segmentation_head(x, classes, activation, kernel_size=1, upsampling=upsampling)
    labels = aux_head(deepest, aux_params)
    return finish(encoder, outputs, f"{architecture.lower()}_{spec.name}", weights, encoder_freeze, labels)
