"""ConvNeXt Tiny/Small/Base/Large: keras.applications' architecture with named stage outputs.

keras.applications' ConvNeXt closes every block with an unnamed ``inputs + x`` operation and its
stem/downsampling layers sit in nested ``Sequential`` models, so its stage outputs cannot be picked
by name. This builder makes the same layers in the same order (so the published keras.applications
``_notop.h5`` files, registered here, load by position, like keras.applications loads them) with a named ``Add`` per
block and flat stem/downsampling layers. ConvNeXt has no stride-2 feature map (its stem is a 4x4
convolution with stride 4): decoders upsample without a skip there.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from ..weights.registry import KERAS_APPLICATIONS_URL, register_published
from .keras_apps import IMAGENET_MEAN, IMAGENET_STD, KERAS_3, input_preprocessing
from .registry import register_family


@keras.saving.register_keras_serializable(package="segmentation_models")
class LayerScale(layers.Layer):
    """Per-channel learnable scale of a ConvNeXt block's residual branch (``x * gamma``)."""

    def __init__(self, init_values: float, projection_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.init_values = init_values
        self.projection_dim = projection_dim

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(self.projection_dim,),
            initializer=keras.initializers.Constant(self.init_values),
            trainable=True,
        )

    def call(self, x):
        return x * keras.ops.cast(self.gamma, x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"init_values": self.init_values, "projection_dim": self.projection_dim})
        return config


CONVNEXT_CONFIGS = {
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}


def _block(x, dim: int, name: str):
    shortcut = x
    x = layers.Conv2D(dim, 7, padding="same", groups=dim, name=f"{name}_depthwise_conv")(x)
    x = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_layernorm")(x)
    x = layers.Dense(4 * dim, name=f"{name}_pointwise_conv_1")(x)
    x = layers.Activation("gelu", name=f"{name}_gelu")(x)
    x = layers.Dense(dim, name=f"{name}_pointwise_conv_2")(x)
    x = LayerScale(1e-6, dim, name=f"{name}_layer_scale")(x)
    return layers.Add(name=f"{name}_add")([shortcut, x])


def build_convnext(input_tensor, depths, dims, name: str = "convnext") -> keras.Model:
    """ConvNeXt without its classifier (keeps keras.applications' final LayerNormalization)."""
    x = input_preprocessing(input_tensor, mean=[m * 255 for m in IMAGENET_MEAN], std=[s * 255 for s in IMAGENET_STD])
    x = layers.Conv2D(dims[0], 4, strides=4, name=f"{name}_stem_conv")(x)
    x = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_stem_layernorm")(x)
    for stage, (depth, dim) in enumerate(zip(depths, dims)):
        if stage > 0:
            x = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_downsampling_layernorm_{stage - 1}")(x)
            x = layers.Conv2D(dim, 2, strides=2, name=f"{name}_downsampling_conv_{stage - 1}")(x)
        for block in range(depth):
            x = _block(x, dim, f"{name}_stage_{stage}_block_{block}")
    x = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_head_layernorm")(x)
    return keras.Model(input_tensor, x, name=name)


def _convnext_variant(name: str, depths: Sequence[int], dims: Sequence[int]) -> dict:
    stages = {4 * 2**stage: f"{name}_stage_{stage}_block_{depths[stage] - 1}_add" for stage in range(3)}
    return dict(
        builder=lambda input_tensor, **_: build_convnext(input_tensor, depths, dims, name),
        features={**stages, 32: f"{name}_head_layernorm"},
        channels=dict(zip((4, 8, 16, 32), dims)),
        first_conv=f"{name}_stem_conv",
        description=f"ConvNeXt-{name[9:].capitalize()} (keras.applications weights)",
    )


register_family(
    "convnext",
    {f"convnext_{size}": _convnext_variant(f"convnext_{size}", *config) for size, config in CONVNEXT_CONFIGS.items()},
    preprocessing="identity",
    weights_layout="by_order",
    notes="no stride-2 map (4x4 stem with stride 4); ImageNet mean/std inside the model (images in 0..255)",
)
register_published(
    KERAS_3,
    {
        "convnext_tiny": "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
        "convnext_small": "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab",
        "convnext_base": "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45",
        "convnext_large": "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd",
    },
    KERAS_APPLICATIONS_URL + "convnext/{backbone}_notop.h5",
)
