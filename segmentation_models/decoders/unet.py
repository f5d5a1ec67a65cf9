"""Unet (Ronneberger et al. 2015) with the exact segmentation_models 1.0.1 signature and layer names."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from ..blocks import attention, conv_bn_act, decoder_block, segmentation_head, transpose_bn_relu
from ..validation import DECODER_BLOCK_TYPES, check_attention_type, check_choice, check_decoder_channels
from .common import aux_head, center, check_arguments, finish, start

DEFAULT_DECODER_FILTERS = (256, 128, 64, 32, 16)


def _upsampling_block(x, skip, filters: int, stage: int, use_batchnorm: bool, attention_type: str | None = None):
    return decoder_block(x, [skip], filters, f"decoder_stage{stage}", use_batchnorm, attention_type)


def _transpose_block(x, skip, filters: int, stage: int, use_batchnorm: bool, attention_type: str | None = None):
    x = transpose_bn_relu(x, filters, f"decoder_stage{stage}a", use_batchnorm)
    if skip is not None:
        x = layers.Concatenate(axis=-1, name=f"decoder_stage{stage}_concat")([x, skip])
        x = attention(x, attention_type, f"decoder_stage{stage}_attention1")
    x = conv_bn_act(x, filters, 3, name=f"decoder_stage{stage}b", use_batchnorm=use_batchnorm)
    return attention(x, attention_type, f"decoder_stage{stage}_attention2")


def Unet(
    backbone_name: str = "vgg16",
    input_shape: tuple = (None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights: str | None = None,
    encoder_weights: str | None = "imagenet",
    encoder_freeze: bool = False,
    encoder_features: str | Sequence[str | int] = "default",
    decoder_block_type: str = "upsampling",
    decoder_filters: Sequence[int] = DEFAULT_DECODER_FILTERS,
    decoder_use_batchnorm: bool = True,
    decoder_attention_type: str | None = None,
    encoder_depth: int = 5,
    aux_params: dict | None = None,
    *,
    feature_layout: str = "1.0.1",
    **kwargs,
) -> keras.Model:
    """Unet: an encoder, then five x2 decoder blocks fed with the encoder's skip connections.

    Args:
        backbone_name: a name from `get_available_backbone_names()`.
        input_shape: (H, W, C); any H and W (>= 32) or None: other sizes than multiples of 32 are padded
            inside the model and the mask is cropped back to the input size.
        classes: output channels (1 for a binary mask).
        activation: output activation ('sigmoid', 'softmax', None/'linear' for logits, ...).
        weights: optional path to full-model weights (1.0.1 ``.h5``, Keras 3 ``.weights.h5`` or ``.keras``).
        encoder_weights: 'imagenet', None (random), another registered name, or a file path.
        encoder_freeze: freeze the encoder except its BatchNormalization layers.
        encoder_features: 'default' or a list of backbone layer names/indices for the skips (deepest first).
        decoder_block_type: 'upsampling' (UpSampling2D + 2 convs) or 'transpose' (Conv2DTranspose + conv).
        decoder_filters: filters of the five decoder blocks.
        decoder_use_batchnorm: batch normalisation in the decoder.
        decoder_attention_type: None or 'scse' (spatial and channel squeeze & excitation after each
            concatenation and each decoder block, as SMP).
        encoder_depth: 3, 4 or 5: the decoder starts at stride 2**encoder_depth with that many blocks;
            ``decoder_filters`` then needs ``encoder_depth`` entries (the default is cut to its first ones).
        aux_params: optional auxiliary classification head on the deepest encoder feature, a dict with
            ``classes`` and optionally ``pooling`` ('avg'/'max'), ``dropout``, ``activation``;
            the model then returns ``(mask, labels)``.
        feature_layout: where the decoder taps the encoder: '1.0.1' (1.0.1's skips) or 'smp'
            (segmentation_models.pytorch's, each stage's output; they differ on EfficientNet and MobileNetV2,
            see docs/backbones.md: 'smp' on efficientnetb0 is SMP's model, 5.9 GFLOP per 256x256 image for
            the Unet against 9.4).
        **kwargs: ``input_tensor`` (build on a Keras tensor); 1.0.1's backend/layers/models/utils are ignored.

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    check_choice("decoder_block_type", decoder_block_type, DECODER_BLOCK_TYPES)
    check_attention_type(decoder_attention_type)
    _, aux_params = check_arguments("Unet", backbone_name, aux_params, encoder_depth=encoder_depth)
    if encoder_depth == 5:  # 1.0.1's check: five filters, the default is not cut
        decoder_filters = tuple(decoder_filters)
        if len(decoder_filters) != 5 or not all(isinstance(f, int) and f > 0 for f in decoder_filters):
            raise ValueError(
                f"decoder_filters must be 5 positive integers (one per x2 upsampling block), got {decoder_filters!r}; "
                f"the default is {DEFAULT_DECODER_FILTERS}."
            )
    else:
        decoder_filters = check_decoder_channels(
            decoder_filters, encoder_depth, DEFAULT_DECODER_FILTERS, name="decoder_filters"
        )
    encoder = start(
        backbone_name, input_shape, classes, activation, encoder_weights, feature_layout=feature_layout, **kwargs
    )
    skips = encoder.skips(encoder_features, n=4)
    block = _upsampling_block if decoder_block_type == "upsampling" else _transpose_block

    if encoder_depth < 5:  # start deeper in the encoder: its stride-2**depth map; only the shallower skips
        x = encoder.feature(2**encoder_depth)
        if encoder_features == "default":
            skips = skips[5 - encoder_depth :]
    else:
        x = center(encoder, decoder_use_batchnorm)
    for stage, filters in enumerate(decoder_filters):
        skip = skips[stage] if stage < len(skips) else None
        x = block(x, skip, filters, stage, decoder_use_batchnorm, decoder_attention_type)
    outputs = segmentation_head(x, classes, activation)
    labels = aux_head(encoder.feature(2**encoder_depth), aux_params) if aux_params else None
    return finish(encoder, outputs, f"unet_{encoder.spec.name}", weights, encoder_freeze, aux_output=labels)
