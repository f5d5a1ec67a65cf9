"""PAN, Pyramid Attention Network (Li et al. 2018): FPA on the deepest map, GAU blocks up to stride 4."""

from __future__ import annotations

from ..backbones.registry import get_backbone_spec
from ..blocks import feature_pyramid_attention, global_attention_upsample, segmentation_head
from .common import aux_head, check_aux_params, check_output_stride, check_positive_int, finish, require_strides, start


def PAN(
    backbone_name: str = "resnet34",
    input_shape=(None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights=None,
    encoder_weights="imagenet",
    encoder_freeze: bool = False,
    encoder_output_stride: int = 16,
    decoder_channels: int = 32,
    upsampling: int = 4,
    aux_params: dict | None = None,
    **kwargs,
):
    """PAN: Feature Pyramid Attention on the encoder output, Global Attention Upsample at strides 16, 8, 4.

    Args:
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze:
            as `Unet`.
        encoder_output_stride: 16 (SMP's default: the last encoder stage is dilated; the backbone family
            must allow it) or 32 (plain encoder).
        decoder_channels: channels of the decoder.
        upsampling: the final bilinear upsampling from the decoder's stride 4 (must be 4).
        aux_params: optional auxiliary classification head (dict: classes, pooling, dropout, activation);
            the model then returns ``(mask, labels)``.
        **kwargs: ``input_tensor`` (build on a Keras tensor).

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    spec = get_backbone_spec(backbone_name)
    check_output_stride(spec, encoder_output_stride, allowed=(16, 32))
    check_positive_int("decoder_channels", decoder_channels)
    if upsampling != 4:
        raise ValueError(
            f"upsampling must be 4 for PAN (its decoder ends at stride 4, the mask must match the "
            f"input size), got {upsampling!r}"
        )
    aux_params = check_aux_params(aux_params)
    require_strides(spec, (4, 8, 16, 32), "PAN")
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

    deepest = encoder.feature(32)
    x = feature_pyramid_attention(deepest, decoder_channels, name="decoder_fpa")
    for stride, name in ((16, "decoder_gau3"), (8, "decoder_gau2"), (4, "decoder_gau1")):
        x = global_attention_upsample(encoder.feature(stride), x, decoder_channels, name=name)
    outputs = segmentation_head(x, classes, activation, upsampling=upsampling)
    labels = aux_head(deepest, aux_params)
    return finish(encoder, outputs, f"pan_{spec.name}", weights, encoder_freeze, aux_output=labels)
