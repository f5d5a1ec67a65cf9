"""MA-Net (Fan et al. 2020): position attention on the deepest map, multi-scale fusion attention in the decoder."""

from __future__ import annotations

from ..backbones.registry import get_backbone_spec
from ..blocks import decoder_block, multiscale_fusion_block, position_attention_block, segmentation_head
from .common import (
    aux_head,
    check_aux_params,
    check_decoder_channels,
    check_encoder_depth,
    check_positive_int,
    finish,
    pyramid_features,
    start,
)

DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)


def MAnet(
    backbone_name: str = "resnet34",
    input_shape=(None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights=None,
    encoder_weights="imagenet",
    encoder_freeze: bool = False,
    encoder_depth: int = 5,
    decoder_channels=DEFAULT_DECODER_CHANNELS,
    decoder_use_batchnorm: bool = True,
    decoder_pab_channels: int = 64,
    aux_params: dict | None = None,
    **kwargs,
):
    """MAnet: PAB (position-wise attention) on the deepest encoder map, then MFAB decoder blocks.

    Args:
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze:
            as `Unet`.
        encoder_depth: 3, 4 or 5: the decoder starts at stride 2**encoder_depth.
        decoder_channels: one channel count per decoder block, deepest first (``encoder_depth`` entries;
            the default is cut to its first ones).
        decoder_use_batchnorm: batch normalisation in the decoder.
        decoder_pab_channels: channels of the position attention's query and key.
        aux_params: optional auxiliary classification head (dict: classes, pooling, dropout, activation);
            the model then returns ``(mask, labels)``.
        **kwargs: ``input_tensor`` (build on a Keras tensor).

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    spec = get_backbone_spec(backbone_name)
    check_encoder_depth(spec, encoder_depth)
    channels = check_decoder_channels(decoder_channels, encoder_depth, DEFAULT_DECODER_CHANNELS)
    check_positive_int("decoder_pab_channels", decoder_pab_channels)
    aux_params = check_aux_params(aux_params)
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
    return finish(encoder, outputs, f"manet_{spec.name}", weights, encoder_freeze, aux_output=labels)
