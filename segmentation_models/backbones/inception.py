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

import keras
from keras import layers

from .registry import BackboneSpec, register_backbone


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
        n = _Namer(f"mixed{i}")
        b1 = conv2d_bn(x, 64, 1, 1, n())
        b5 = conv2d_bn(x, 48, 1, 1, n())
        b5 = conv2d_bn(b5, 64, 5, 5, n())
        b3 = conv2d_bn(x, 64, 1, 1, n())
        b3 = conv2d_bn(b3, 96, 3, 3, n())
        b3 = conv2d_bn(b3, 96, 3, 3, n())
        bp = _avg_branch(x, pool_filters, n)
        x = layers.Concatenate(axis=-1, name=f"mixed{i}")([b1, b5, b3, bp])

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


register_backbone(
    BackboneSpec(
        name="inceptionv3",
        family="inceptionv3",
        builder=build_inceptionv3,
        features={2: "stem_b3", 4: "stem_b5", 8: "mixed2", 16: "mixed7", 32: "mixed10"},
        channels={2: 64, 4: 192, 8: 288, 16: 768, 32: 2048},
        default_skips=("mixed7", "mixed2", "stem_b5", "stem_b3"),
        preprocessing="tf",
        first_conv="stem_b1_conv",
        description="Inception-v3 ('same'-padded, as segmentation_models 1.0.1)",
    )
)


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
        b0 = irv2_conv2d_bn(x, 32, 1, n())
        b1 = irv2_conv2d_bn(x, 32, 1, n())
        b1 = irv2_conv2d_bn(b1, 32, 3, n())
        b2 = irv2_conv2d_bn(x, 32, 1, n())
        b2 = irv2_conv2d_bn(b2, 48, 3, n())
        b2 = irv2_conv2d_bn(b2, 64, 3, n())
        branches = [b0, b1, b2]
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

    n = _Namer("mixed_5b")
    b0 = irv2_conv2d_bn(x, 96, 1, n())
    b1 = irv2_conv2d_bn(x, 48, 1, n())
    b1 = irv2_conv2d_bn(b1, 64, 5, n())
    b2 = irv2_conv2d_bn(x, 64, 1, n())
    b2 = irv2_conv2d_bn(b2, 96, 3, n())
    b2 = irv2_conv2d_bn(b2, 96, 3, n())
    bp = layers.AveragePooling2D(3, strides=1, padding="same", name="mixed_5b_pool")(x)
    bp = irv2_conv2d_bn(bp, 64, 1, n())
    x = layers.Concatenate(axis=-1, name="mixed_5b")([b0, b1, b2, bp])
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


register_backbone(
    BackboneSpec(
        name="inceptionresnetv2",
        family="inceptionresnetv2",
        builder=build_inceptionresnetv2,
        features={2: "stem_b3_ac", 4: "stem_b5_ac", 8: "block35_10_ac", 16: "block17_20_ac", 32: "conv_7b_ac"},
        channels={2: 64, 4: 192, 8: 320, 16: 1088, 32: 1536},
        default_skips=("block17_20_ac", "block35_10_ac", "stem_b5_ac", "stem_b3_ac"),
        preprocessing="tf",
        first_conv="stem_b1",
        description="Inception-ResNet-v2 ('same'-padded, as segmentation_models 1.0.1)",
    )
)
