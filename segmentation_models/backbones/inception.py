"""Inception-v3 and Inception-ResNet-v2 as segmentation_models 1.0.1 built them.

1.0.1 shipped its own copies of keras-applications' Inceptions with every 'valid' convolution and
pooling turned into 'same', so that the feature maps are exactly H/2 .. H/32 for H divisible by 32
and every decoder works. Same architecture here; keras-applications left most layers unnamed, so
every layer gets a stable name (``stem_b3``, ``mixed4_b2_conv``, ``block35_3_b1_bn``) and the
published files, which carry Keras' auto-generated names, load by position
(`segmentation_models.weights.loading.assign_weights`). Inception-ResNet's residual scaling (a
``Lambda`` in the original) is the registered `ScaledResidual` layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import layers

from ..weights.registry import register_published
from .registry import by_stride, register_family


class _Namer:
    """Names the conv-bn-relu units of one block in creation order: ``{prefix}_b1``, ``{prefix}_b2``..."""

    def __init__(self, prefix: str):
        self.prefix, self.count = prefix, 0

    def __call__(self) -> str:
        self.count += 1
        return f"{self.prefix}_b{self.count}"


def conv2d_bn(x, filters, num_row, num_col, name: str, strides=1, padding="same", activation="relu", use_bias=False):
    """keras-applications' ``conv2d_bn``: conv (``name_conv``), BN without scale (``name_bn``), relu (``name``)."""
    x = layers.Conv2D(
        filters, (num_row, num_col), strides=strides, padding=padding, use_bias=use_bias, name=name + "_conv"
    )(x)
    x = layers.BatchNormalization(axis=-1, scale=False, name=name + "_bn")(x)
    return layers.Activation(activation, name=name)(x) if activation else x


def _branches_35(x, conv: Callable, n: _Namer, widths: Sequence[int], kernel: int, pool_filters: int = 0) -> list:
    """The 35x35 Inception branches: 1x1 | 1x1, ``kernel`` | 1x1, 3x3, 3x3 | with ``pool_filters``: 3x3 average
    pooling, 1x1. ``widths``: the first six convolutions' filters in that order; ``conv(x, filters, kernel, name)``."""
    w = iter(widths)
    b0 = conv(x, next(w), 1, n())
    b1 = conv(x, next(w), 1, n())
    b1 = conv(b1, next(w), kernel, n())
    b2 = conv(x, next(w), 1, n())
    b2 = conv(b2, next(w), 3, n())
    b2 = conv(b2, next(w), 3, n())
    if not pool_filters:
        return [b0, b1, b2]
    pool = layers.AveragePooling2D((3, 3), strides=1, padding="same", name=n.prefix + "_pool")(x)
    return [b0, b1, b2, conv(pool, pool_filters, 1, n())]


def _square_conv2d_bn(x, filters: int, kernel: int, name: str):
    return conv2d_bn(x, filters, kernel, kernel, name)


def _avg_branch(x, filters, n: _Namer):
    pool = layers.AveragePooling2D((3, 3), strides=1, padding="same", name=n.prefix + "_pool")(x)
    return conv2d_bn(pool, filters, 1, 1, n())


def build_inceptionv3(input_tensor, name: str = "inceptionv3", **_) -> keras.Model:
    """segmentation_models 1.0.1's 'same'-padded Inception-v3 without its classifier (ends with ``mixed10``)."""
    n = _Namer("stem")
    x = conv2d_bn(input_tensor, 32, 3, 3, n(), strides=2)
    x = conv2d_bn(x, 32, 3, 3, n())
    x = conv2d_bn(x, 64, 3, 3, n())
    x = layers.MaxPooling2D((3, 3), strides=2, padding="same", name="stem_pool1")(x)
    x = conv2d_bn(x, 80, 1, 1, n())
    x = conv2d_bn(x, 192, 3, 3, n())
    x = layers.MaxPooling2D((3, 3), strides=2, padding="same", name="stem_pool2")(x)

    for i, pool_filters in enumerate((32, 64, 64)):  # mixed 0, 1, 2: 35 x 35 x 256/288
        branches = _branches_35(x, _square_conv2d_bn, _Namer(f"mixed{i}"), (64, 48, 64, 64, 96, 96), 5, pool_filters)
        x = layers.Concatenate(axis=-1, name=f"mixed{i}")(branches)

    n = _Namer("mixed3")  # 17 x 17 x 768
    b3 = conv2d_bn(x, 384, 3, 3, n(), strides=2)
    bd = conv2d_bn(x, 64, 1, 1, n())
    bd = conv2d_bn(bd, 96, 3, 3, n())
    bd = conv2d_bn(bd, 96, 3, 3, n(), strides=2)
    bp = layers.MaxPooling2D((3, 3), strides=2, padding="same", name="mixed3_pool")(x)
    x = layers.Concatenate(axis=-1, name="mixed3")([b3, bd, bp])

    for i, width in zip(range(4, 8), (128, 160, 160, 192)):  # mixed 4..7: 17 x 17 x 768
        n = _Namer(f"mixed{i}")
        b1 = conv2d_bn(x, 192, 1, 1, n())
        b7 = conv2d_bn(x, width, 1, 1, n())
        b7 = conv2d_bn(b7, width, 1, 7, n())
        b7 = conv2d_bn(b7, 192, 7, 1, n())
        bd = conv2d_bn(x, width, 1, 1, n())
        bd = conv2d_bn(bd, width, 7, 1, n())
        bd = conv2d_bn(bd, width, 1, 7, n())
        bd = conv2d_bn(bd, width, 7, 1, n())
        bd = conv2d_bn(bd, 192, 1, 7, n())
        bp = _avg_branch(x, 192, n)
        x = layers.Concatenate(axis=-1, name=f"mixed{i}")([b1, b7, bd, bp])

    n = _Namer("mixed8")  # 8 x 8 x 1280
    b3 = conv2d_bn(x, 192, 1, 1, n())
    b3 = conv2d_bn(b3, 320, 3, 3, n(), strides=2)
    b7 = conv2d_bn(x, 192, 1, 1, n())
    b7 = conv2d_bn(b7, 192, 1, 7, n())
    b7 = conv2d_bn(b7, 192, 7, 1, n())
    b7 = conv2d_bn(b7, 192, 3, 3, n(), strides=2)
    bp = layers.MaxPooling2D((3, 3), strides=2, padding="same", name="mixed8_pool")(x)
    x = layers.Concatenate(axis=-1, name="mixed8")([b3, b7, bp])

    for i in range(2):  # mixed 9, 10: 8 x 8 x 2048
        n = _Namer(f"mixed{9 + i}")
        b1 = conv2d_bn(x, 320, 1, 1, n())
        b3 = conv2d_bn(x, 384, 1, 1, n())
        b3_1 = conv2d_bn(b3, 384, 1, 3, n())
        b3_2 = conv2d_bn(b3, 384, 3, 1, n())
        b3 = layers.Concatenate(axis=-1, name=f"mixed9_{i}")([b3_1, b3_2])
        bd = conv2d_bn(x, 448, 1, 1, n())
        bd = conv2d_bn(bd, 384, 3, 3, n())
        bd_1 = conv2d_bn(bd, 384, 1, 3, n())
        bd_2 = conv2d_bn(bd, 384, 3, 1, n())
        bd = layers.Concatenate(axis=-1, name=f"mixed{9 + i}_dbl")([bd_1, bd_2])
        bp = _avg_branch(x, 192, n)
        x = layers.Concatenate(axis=-1, name=f"mixed{9 + i}")([b1, b3, bd, bp])
    return keras.Model(input_tensor, x, name=name)


# ---- Inception-ResNet-v2 ------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="segmentation_models")
class ScaledResidual(layers.Layer):
    """``x + scale * residual`` (Inception-ResNet's residual scaling; a Lambda layer in keras-applications)."""

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        x, residual = inputs
        return x + residual * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def irv2_conv2d_bn(x, filters, kernel_size, name: str, strides=1, activation="relu", use_bias=False):
    """keras-applications' Inception-ResNet ``conv2d_bn``: conv (``name``), BN (``name_bn``), act (``name_ac``)."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=use_bias, name=name)(x)
    if not use_bias:
        x = layers.BatchNormalization(axis=-1, scale=False, name=name + "_bn")(x)
    if activation is not None:
        x = layers.Activation(activation, name=name + "_ac")(x)
    return x


def inception_resnet_block(x, scale: float, block_type: str, block_idx: int, activation="relu"):
    block_name = f"{block_type}_{block_idx}"
    n = _Namer(block_name)
    if block_type == "block35":
        branches = _branches_35(x, irv2_conv2d_bn, n, (32, 32, 32, 32, 48, 64), 3)
    elif block_type == "block17":
        b0 = irv2_conv2d_bn(x, 192, 1, n())
        b1 = irv2_conv2d_bn(x, 128, 1, n())
        b1 = irv2_conv2d_bn(b1, 160, (1, 7), n())
        b1 = irv2_conv2d_bn(b1, 192, (7, 1), n())
        branches = [b0, b1]
    else:  # block8
        b0 = irv2_conv2d_bn(x, 192, 1, n())
        b1 = irv2_conv2d_bn(x, 192, 1, n())
        b1 = irv2_conv2d_bn(b1, 224, (1, 3), n())
        b1 = irv2_conv2d_bn(b1, 256, (3, 1), n())
        branches = [b0, b1]
    mixed = layers.Concatenate(axis=-1, name=block_name + "_mixed")(branches)
    up = irv2_conv2d_bn(mixed, x.shape[-1], 1, block_name + "_conv", activation=None, use_bias=True)
    x = ScaledResidual(scale, name=block_name)([x, up])
    if activation is not None:
        x = layers.Activation(activation, name=block_name + "_ac")(x)
    return x


def build_inceptionresnetv2(input_tensor, name: str = "inceptionresnetv2", **_) -> keras.Model:
    """segmentation_models 1.0.1's 'same'-padded Inception-ResNet-v2 without its classifier (ends with
    ``conv_7b_ac``)."""
    n = _Namer("stem")
    x = irv2_conv2d_bn(input_tensor, 32, 3, n(), strides=2)
    x = irv2_conv2d_bn(x, 32, 3, n())
    x = irv2_conv2d_bn(x, 64, 3, n())
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool1")(x)
    x = irv2_conv2d_bn(x, 80, 1, n())
    x = irv2_conv2d_bn(x, 192, 3, n())
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool2")(x)

    branches = _branches_35(x, irv2_conv2d_bn, _Namer("mixed_5b"), (96, 48, 64, 64, 96, 96), 5, pool_filters=64)
    x = layers.Concatenate(axis=-1, name="mixed_5b")(branches)
    for idx in range(1, 11):
        x = inception_resnet_block(x, 0.17, "block35", idx)

    n = _Namer("mixed_6a")
    b0 = irv2_conv2d_bn(x, 384, 3, n(), strides=2)
    b1 = irv2_conv2d_bn(x, 256, 1, n())
    b1 = irv2_conv2d_bn(b1, 256, 3, n())
    b1 = irv2_conv2d_bn(b1, 384, 3, n(), strides=2)
    bp = layers.MaxPooling2D(3, strides=2, padding="same", name="mixed_6a_pool")(x)
    x = layers.Concatenate(axis=-1, name="mixed_6a")([b0, b1, bp])
    for idx in range(1, 21):
        x = inception_resnet_block(x, 0.1, "block17", idx)

    n = _Namer("mixed_7a")
    b0 = irv2_conv2d_bn(x, 256, 1, n())
    b0 = irv2_conv2d_bn(b0, 384, 3, n(), strides=2)
    b1 = irv2_conv2d_bn(x, 256, 1, n())
    b1 = irv2_conv2d_bn(b1, 288, 3, n(), strides=2)
    b2 = irv2_conv2d_bn(x, 256, 1, n())
    b2 = irv2_conv2d_bn(b2, 288, 3, n())
    b2 = irv2_conv2d_bn(b2, 320, 3, n(), strides=2)
    bp = layers.MaxPooling2D(3, strides=2, padding="same", name="mixed_7a_pool")(x)
    x = layers.Concatenate(axis=-1, name="mixed_7a")([b0, b1, b2, bp])
    for idx in range(1, 10):
        x = inception_resnet_block(x, 0.2, "block8", idx)
    x = inception_resnet_block(x, 1.0, "block8", 10, activation=None)
    x = irv2_conv2d_bn(x, 1536, 1, "conv_7b")
    return keras.Model(input_tensor, x, name=name)


# name: (builder, feature layers at strides 2..32, their channels, first conv)
_INCEPTIONS = {
    "inceptionv3": (
        build_inceptionv3,
        "stem_b3 stem_b5 mixed2 mixed7 mixed10",
        (64, 192, 288, 768, 2048),
        "stem_b1_conv",
    ),
    "inceptionresnetv2": (
        build_inceptionresnetv2,
        "stem_b3_ac stem_b5_ac block35_10_ac block17_20_ac conv_7b_ac",
        (64, 192, 320, 1088, 1536),
        "stem_b1",
    ),
}
_TITLES = {"inceptionv3": "Inception-v3", "inceptionresnetv2": "Inception-ResNet-v2"}
for _name, (_builder, _features, _channels, _first_conv) in _INCEPTIONS.items():
    register_family(
        _name,
        {_name: dict(builder=_builder, description=f"{_TITLES[_name]} ('same'-padded, as segmentation_models 1.0.1)")},
        features=by_stride(_features),
        channels=by_stride(_channels),
        preprocessing="tf",
        first_conv=_first_conv,
    )
# keras-applications 1.0.8's ImageNet files (no top), the ones segmentation_models 1.0.1 loaded
_RELEASES = "https://github.com/fchollet/deep-learning-models/releases/download/"
register_published(
    "keras-applications 1.0.8",
    {"inceptionv3": "bcbd6486424b2319ff4ef7d526e38f63", "inceptionresnetv2": "d19885ff4a710c122648d3b5c3b684e4"},
    {
        "inceptionv3": _RELEASES + "v0.5/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "inceptionresnetv2": _RELEASES + "v0.7/inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    }.get,
)
