"""UPerNet (Xiao et al. 2018) as segmentation_models_pytorch 0.6 builds it: the encoder maps at strides 4 ..
2**encoder_depth layer-normalised, pyramid pooling on the deepest, a top-down FPN with a 3x3 conv per level, all
levels fused at stride 4."""

from __future__ import annotations

import keras
from keras import layers, ops

from ..blocks import ResizeByFactor, ResizeToMatch, ResizeToReference, conv_bn_act, segmentation_head
from ..validation import check_positive_int, check_upsampling
from .common import aux_head, check_arguments, finish, pyramid_features, start


def _adaptive_pool_matrix(out_size: int, in_size, dtype):
    """(out_size, in_size) averaging weights of adaptive average pooling (PyTorch's rule: cell i covers
    rows floor(i * in / out) .. ceil((i + 1) * in / out) - 1), valid also when in_size < out_size."""
    cell = ops.cast(ops.arange(out_size), "float32")
    n, m = ops.cast(in_size, "float32"), float(out_size)
    first, end = ops.floor(cell * n / m), ops.ceil((cell + 1.0) * n / m)
    source = ops.cast(ops.arange(in_size), "float32")
    inside = ops.cast(ops.logical_and(source[None, :] >= first[:, None], source[None, :] < end[:, None]), "float32")
    return ops.cast(inside / ops.sum(inside, axis=1, keepdims=True), dtype)


@keras.saving.register_keras_serializable(package="segmentation_models")
class AdaptiveAveragePooling(keras.layers.Layer):
    """Adaptive average pooling of (B, H, W, C) to ``output_size`` x ``output_size`` for any H and W, known
    or not when the model is built, also smaller than ``output_size`` (as PyTorch's adaptive_avg_pool2d)."""

    def __init__(self, output_size: int, **kwargs):
        super().__init__(**kwargs)
        self.output_size = int(output_size)

    def call(self, inputs):
        shape = ops.shape(inputs)
        rows = _adaptive_pool_matrix(self.output_size, shape[1], inputs.dtype)
        cols = _adaptive_pool_matrix(self.output_size, shape[2], inputs.dtype)
        return ops.einsum("Hh,bhwc,Ww->bHWc", rows, inputs, cols)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size, self.output_size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


def pyramid_pooling(
    x: keras.KerasTensor, filters: int, bins=(1, 2, 3, 6), use_batchnorm: bool = True, name: str = "psp"
) -> keras.KerasTensor:
    """UPerNet's pyramid pooling module (as segmentation_models_pytorch 0.6), at any feature size.

    Each bin: adaptive average pooling to ``bin x bin``, 1x1 conv-bn-relu to ``filters``, bilinear resize back;
    the input and the bins are concatenated and fused by a 3x3 conv-bn-relu to ``filters`` (always with batch
    normalisation, as SMP's).
    """
    branches = [x]
    for size in bins:
        y = AdaptiveAveragePooling(size, name=f"{name}_pool{size}")(x)
        y = conv_bn_act(y, filters, 1, name=f"{name}_bin{size}", use_batchnorm=use_batchnorm)
        branches.append(ResizeToReference(name=f"{name}_bin{size}_resize")([y, x]))
    y = layers.Concatenate(axis=-1, name=f"{name}_concat")(branches)
    return conv_bn_act(y, filters, 3, name=f"{name}_out")


def UPerNet(
    backbone_name: str = "resnet34",
    input_shape: tuple = (None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights: str | None = None,
    encoder_weights: str | None = "imagenet",
    encoder_freeze: bool = False,
    encoder_depth: int = 5,
    decoder_channels: int = 256,
    decoder_use_batchnorm: bool = True,
    upsampling: int = 4,
    aux_params: dict | None = None,
    **kwargs,
) -> keras.Model:
    """UPerNet: PPM on the deepest map, top-down FPN over strides 2**encoder_depth/2 .. 4, fused at stride 4.

    Args:
        encoder_depth: 3, 4 or 5: encoder maps at strides 4 .. 2**encoder_depth are used.
        decoder_channels: channels of the pyramid and of the fused features.
        decoder_use_batchnorm: batch normalisation in the pooling bins, the lateral, level and fusion convolutions
            (the pooling module's own fusion convolution always has it, as SMP's).
        upsampling: final bilinear upsampling from the decoder's stride 4 (must be 4).
        backbone_name, input_shape, classes, activation, weights, encoder_weights, encoder_freeze, aux_params,
            **kwargs: as `Unet`.

    Returns:
        The `keras.Model`: masks upsampled x4 from the fused stride-4 map, or ``(mask, labels)`` with aux_params.
    """
    spec, aux_params = check_arguments(
        "UPerNet", backbone_name, aux_params, encoder_depth=encoder_depth, required_strides=(4,)
    )
    check_positive_int("decoder_channels", decoder_channels)
    check_upsampling(upsampling, 4, "UPerNet")
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
    return finish(encoder, outputs, f"upernet_{spec.name}", weights, encoder_freeze, labels)
