"""DeepLabV3 (Chen et al. 2017) and DeepLabV3+ (Chen et al. 2018) on dilated encoders (as in
segmentation_models_pytorch)."""

from __future__ import annotations

from keras import layers

from ..backbones.registry import get_backbone_spec
from ..blocks import ResizeByFactor, aspp, conv_bn_act, segmentation_head
from .common import (
    aux_head,
    check_aux_params,
    check_encoder_depth,
    check_output_stride,
    check_positive_int,
    finish,
    require_strides,
    start,
)

ATROUS_RATES = (12, 24, 36)
HIGHRES_CHANNELS = 48  # DeepLabV3+'s projection of the stride-4 features, as in the paper


def _check_aspp(atrous_rates, dropout) -> tuple:
    rates = tuple(atrous_rates) if isinstance(atrous_rates, (list, tuple)) else ()
    if len(rates) != 3 or not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in rates):
        raise ValueError(f"decoder_atrous_rates must be 3 positive integers, e.g. {ATROUS_RATES}, got {atrous_rates!r}")
    if dropout is not None and (
        isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1
    ):
        raise ValueError(f"decoder_aspp_dropout must be None or a number in [0, 1), got {dropout!r}")
    return rates


def _check_upsampling(upsampling, needed: int, architecture: str) -> int:
    if upsampling is None:
        return needed
    if upsampling != needed:
        raise ValueError(
            f"upsampling={upsampling!r} would not give a mask of the input's size: {architecture}'s "
            f"decoder output is at stride {needed} here; use upsampling=None or {needed}"
        )
    return upsampling


def DeepLabV3(
    backbone_name: str = "resnet34",
    input_shape=(None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights=None,
    encoder_weights="imagenet",
    encoder_freeze: bool = False,
    encoder_depth: int = 5,
    encoder_output_stride: int = 8,
    decoder_channels: int = 256,
    decoder_atrous_rates=ATROUS_RATES,
    decoder_aspp_separable: bool = False,
    decoder_aspp_dropout: float | None = 0.5,
    upsampling: int | None = None,
    aux_params: dict | None = None,
    **kwargs,
):
    """DeepLabV3: ASPP on the (dilated) deepest encoder map, a 3x3 conv, bilinear upsampling to the input size.

    Args:
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze:
            as `Unet`.
        encoder_depth: 3, 4 or 5: the encoder map at nominal stride 2**encoder_depth is used.
        encoder_output_stride: 8 (default) or 16 dilate the encoder's last stages (ResNet, SE-ResNet,
            ResNeXt and EfficientNet families; others raise a ValueError), 32 uses the plain encoder.
        decoder_channels: channels of ASPP and the decoder.
        decoder_atrous_rates: the three ASPP dilation rates.
        decoder_aspp_separable: depthwise-separable ASPP convolutions.
        decoder_aspp_dropout: dropout after the ASPP projection.
        upsampling: final upsampling; None (the decoder's stride) is the only size-preserving value.
        aux_params: optional auxiliary classification head (dict: classes, pooling, dropout, activation);
            the model then returns ``(mask, labels)``.
        **kwargs: ``input_tensor`` (build on a Keras tensor).

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    spec = get_backbone_spec(backbone_name)
    check_encoder_depth(spec, encoder_depth)
    check_output_stride(spec, encoder_output_stride)
    check_positive_int("decoder_channels", decoder_channels)
    rates = _check_aspp(decoder_atrous_rates, decoder_aspp_dropout)
    stride = min(2**encoder_depth, encoder_output_stride)
    upsampling = _check_upsampling(upsampling, stride, "DeepLabV3")
    aux_params = check_aux_params(aux_params)
    encoder = start(
        backbone_name,
        input_shape,
        classes,
        activation,
        encoder_weights,
        output_stride=encoder_output_stride,
        feature_layout="smp",
        **kwargs,
    )

    deepest = encoder.feature(2**encoder_depth)
    x = aspp(deepest, decoder_channels, rates, decoder_aspp_separable, decoder_aspp_dropout, name="decoder_aspp")
    x = conv_bn_act(x, decoder_channels, 3, name="decoder_conv")
    outputs = segmentation_head(x, classes, activation, kernel_size=1, upsampling=upsampling)
    labels = aux_head(deepest, aux_params)
    return finish(encoder, outputs, f"deeplabv3_{spec.name}", weights, encoder_freeze, aux_output=labels)


def DeepLabV3Plus(
    backbone_name: str = "resnet34",
    input_shape=(None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights=None,
    encoder_weights="imagenet",
    encoder_freeze: bool = False,
    encoder_depth: int = 5,
    encoder_output_stride: int = 16,
    decoder_channels: int = 256,
    decoder_atrous_rates=ATROUS_RATES,
    decoder_aspp_separable: bool = True,
    decoder_aspp_dropout: float | None = 0.5,
    upsampling: int = 4,
    aux_params: dict | None = None,
    **kwargs,
):
    """DeepLabV3+: ASPP on the (dilated) deepest map, upsampled to stride 4, fused with the stride-4 features.

    Args:
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze:
            as `Unet`.
        encoder_depth: 3, 4 or 5: the encoder map at nominal stride 2**encoder_depth feeds ASPP.
        encoder_output_stride: 16 (default) or 8 dilate the encoder's last stages (ResNet, SE-ResNet,
            ResNeXt and EfficientNet families; others raise a ValueError), 32 uses the plain encoder.
        decoder_channels: channels of ASPP and the decoder.
        decoder_atrous_rates: the three ASPP dilation rates.
        decoder_aspp_separable: depthwise-separable ASPP convolutions (default, as SMP).
        decoder_aspp_dropout: dropout after the ASPP projection.
        upsampling: final upsampling from the decoder's stride 4 (must be 4).
        aux_params: optional auxiliary classification head (dict: classes, pooling, dropout, activation);
            the model then returns ``(mask, labels)``.
        **kwargs: ``input_tensor`` (build on a Keras tensor).

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    spec = get_backbone_spec(backbone_name)
    check_encoder_depth(spec, encoder_depth)
    check_output_stride(spec, encoder_output_stride)
    check_positive_int("decoder_channels", decoder_channels)
    rates = _check_aspp(decoder_atrous_rates, decoder_aspp_dropout)
    upsampling = _check_upsampling(upsampling, 4, "DeepLabV3Plus")
    aux_params = check_aux_params(aux_params)
    require_strides(spec, (4,), "DeepLabV3Plus")
    encoder = start(
        backbone_name,
        input_shape,
        classes,
        activation,
        encoder_weights,
        output_stride=encoder_output_stride,
        feature_layout="smp",
        **kwargs,
    )

    deepest = encoder.feature(2**encoder_depth)
    x = aspp(deepest, decoder_channels, rates, decoder_aspp_separable, decoder_aspp_dropout, name="decoder_aspp")
    x = conv_bn_act(x, decoder_channels, 3, name="decoder_aspp_conv", separable=True)
    factor = min(2**encoder_depth, encoder_output_stride) // 4
    x = ResizeByFactor(factor, name="decoder_upsampling")(x)
    highres = conv_bn_act(encoder.feature(4), HIGHRES_CHANNELS, 1, name="decoder_highres")
    x = layers.Concatenate(axis=-1, name="decoder_concat")([x, highres])
    x = conv_bn_act(x, decoder_channels, 3, name="decoder_fuse", separable=True)
    outputs = segmentation_head(x, classes, activation, kernel_size=1, upsampling=upsampling)
    labels = aux_head(deepest, aux_params)
    return finish(encoder, outputs, f"deeplabv3plus_{spec.name}", weights, encoder_freeze, aux_output=labels)
