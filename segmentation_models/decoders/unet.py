"""Unet (Ronneberger et al. 2015) with the exact segmentation_models 1.0.1 signature and layer names."""
from __future__ import annotations

from keras import layers

from ..blocks import conv_bn_act, segmentation_head
from ..validation import check_choice
from .common import finish, start

DECODER_BLOCK_TYPES = ("upsampling", "transpose")


def _upsampling_block(x, skip, filters, stage, use_batchnorm):
    x = layers.UpSampling2D(size=2, name=f"decoder_stage{stage}_upsampling")(x)
    if skip is not None:
        x = layers.Concatenate(axis=-1, name=f"decoder_stage{stage}_concat")([x, skip])
    x = conv_bn_act(x, filters, 3, name=f"decoder_stage{stage}a", use_batchnorm=use_batchnorm)
    return conv_bn_act(x, filters, 3, name=f"decoder_stage{stage}b", use_batchnorm=use_batchnorm)


def _transpose_block(x, skip, filters, stage, use_batchnorm):
    x = layers.Conv2DTranspose(filters, (4, 4), strides=(2, 2), padding="same", use_bias=not use_batchnorm,
                               name=f"decoder_stage{stage}a_transpose")(x)
    if use_batchnorm:
        x = layers.BatchNormalization(axis=-1, name=f"decoder_stage{stage}a_bn")(x)
    x = layers.Activation("relu", name=f"decoder_stage{stage}a_relu")(x)
    if skip is not None:
        x = layers.Concatenate(axis=-1, name=f"decoder_stage{stage}_concat")([x, skip])
    return conv_bn_act(x, filters, 3, name=f"decoder_stage{stage}b", use_batchnorm=use_batchnorm)


def Unet(
    backbone_name: str = "vgg16",
    input_shape=(None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights=None,
    encoder_weights="imagenet",
    encoder_freeze: bool = False,
    encoder_features="default",
    decoder_block_type: str = "upsampling",
    decoder_filters=(256, 128, 64, 32, 16),
    decoder_use_batchnorm: bool = True,
    **kwargs,
):
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
        **kwargs: ``input_tensor`` (build on a Keras tensor); 1.0.1's backend/layers/models/utils are ignored.

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    check_choice("decoder_block_type", decoder_block_type, DECODER_BLOCK_TYPES)
    decoder_filters = tuple(decoder_filters)
    if len(decoder_filters) != 5 or not all(isinstance(f, int) and f > 0 for f in decoder_filters):
        raise ValueError(
            f"decoder_filters must be 5 positive integers (one per x2 upsampling block), got {decoder_filters!r}; "
            "the default is (256, 128, 64, 32, 16)."
        )
    encoder = start(backbone_name, input_shape, classes, activation, encoder_weights, **kwargs)
    skips = encoder.skips(encoder_features, n=4)
    block = _upsampling_block if decoder_block_type == "upsampling" else _transpose_block

    x = encoder.output
    if isinstance(encoder.model.layers[-1], layers.MaxPooling2D):  # VGG: add a centre block (as 1.0.1)
        x = conv_bn_act(x, 512, 3, name="center_block1", use_batchnorm=decoder_use_batchnorm)
        x = conv_bn_act(x, 512, 3, name="center_block2", use_batchnorm=decoder_use_batchnorm)
    for stage, filters in enumerate(decoder_filters):
        skip = skips[stage] if stage < len(skips) else None
        x = block(x, skip, filters, stage, decoder_use_batchnorm)
    outputs = segmentation_head(x, classes, activation)
    return finish(encoder, outputs, f"unet_{encoder.spec.name}", weights, encoder_freeze)
