"""SegFormer (Xie et al. 2021): an encoder and SMP's all-MLP decoder.

Decoder (as segmentation_models_pytorch's ``Segformer``): every encoder feature map at stride 2..32
that the backbone has is projected to ``decoder_segmentation_channels`` by a per-pixel linear layer
(1x1 convolution with bias), brought to stride 4 (bilinear upsampling; a stride-2 map is
average-pooled, which equals bilinear downsampling by 2), concatenated deepest first, fused by a
1x1 convolution + batch norm + ReLU, classified by a 1x1 convolution and upsampled x4 (bilinear) to
the input size. Works with any backbone: MiT (strides 4-32) as in the paper, or CNNs (strides 2-32).
"""

from __future__ import annotations

import keras
from keras import layers

from ..blocks import ResizeByFactor, conv_bn_act, segmentation_head
from ..validation import check_positive_int
from .common import finish, start

__all__ = ["SegFormer"]

DECODER_STRIDES = (32, 16, 8, 4, 2)  # deepest first, as SMP concatenates them


def _to_stride4(x, stride: int, name: str):
    if stride > 4:  # bilinear, half-pixel (= torch's align_corners=False); works with unknown sizes
        return ResizeByFactor(stride // 4, name=f"{name}_upsampling")(x)
    if stride == 2:
        return layers.AveragePooling2D(pool_size=2, name=f"{name}_downsampling")(x)
    return x


def SegFormer(
    backbone_name: str = "mit_b0",
    input_shape: tuple = (None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights: str | None = None,
    encoder_weights: str | None = "imagenet",
    encoder_freeze: bool = False,
    decoder_segmentation_channels: int = 256,
    **kwargs,
) -> keras.Model:
    """SegFormer: encoder features -> all-MLP decoder -> mask at the input size.

    Args:
        backbone_name: a name from `get_available_backbone_names()`; the MiT encoders ``mit_b0``..``mit_b5``
            are SegFormer's own, any other backbone works too.
        input_shape: (H, W, C); H and W multiples of 32 or None.
        classes: output channels (1 for a binary mask).
        activation: output activation ('sigmoid', 'softmax', None/'linear' for logits, ...).
        weights: optional path to full-model weights (``.keras``, ``.weights.h5`` or Keras 2 ``.h5``).
        encoder_weights: 'imagenet', None (random), another registered name, or a file path
            (``.h5`` or a safetensors checkpoint with the reference tensor names).
        encoder_freeze: freeze the encoder except its BatchNormalization layers.
        decoder_segmentation_channels: width of the decoder (per-stage projections and fusion).
        **kwargs: ``input_tensor`` (build on a Keras tensor).

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes).
    """
    channels = check_positive_int(
        "decoder_segmentation_channels",
        decoder_segmentation_channels,
        "the width of the all-MLP decoder, 256 in SegFormer/SMP",
    )
    encoder = start(backbone_name, input_shape, classes, activation, encoder_weights, feature_layout="smp", **kwargs)
    strides = [s for s in DECODER_STRIDES if s in encoder.features]
    if 4 not in strides or len(strides) < 2:
        raise ValueError(
            f"SegFormer needs encoder features at stride 4 and deeper; backbone {encoder.spec.name!r} has strides "
            f"{sorted(encoder.features)}"
        )
    projected = []
    for stride in strides:
        name = f"decoder_stride{stride}"
        x = layers.Conv2D(channels, 1, use_bias=True, name=f"{name}_linear")(encoder.feature(stride))
        projected.append(_to_stride4(x, stride, name))
    x = layers.Concatenate(axis=-1, name="decoder_concat")(projected)
    x = conv_bn_act(x, channels, 1, name="decoder_fuse")
    # x4 to the (padded) image size, then `finish` crops to the input size
    outputs = segmentation_head(x, classes, activation, kernel_size=1, upsampling=4)
    return finish(encoder, outputs, f"segformer_{encoder.spec.name}", weights, encoder_freeze)
