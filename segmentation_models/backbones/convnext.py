"""ConvNeXt Tiny/Small/Base/Large: keras.applications' architecture with named stage outputs.

keras.applications' ConvNeXt closes every block with an unnamed ``inputs + x`` operation and its
stem/downsampling layers sit in nested ``Sequential`` models, so its stage outputs cannot be picked
by name. This builder makes the same layers in the same order (so the published keras.applications
``_notop.h5`` files load by position, like keras.applications loads them) with a named ``Add`` per
block and flat stem/downsampling layers. ConvNeXt has no stride-2 feature map (its stem is a 4x4
convolution with stride 4): decoders upsample without a skip there.
"""

from __future__ import annotations

import keras
from keras import layers

from .keras_apps import IMAGENET_MEAN, IMAGENET_STD, input_preprocessing
from .registry import BackboneSpec, register_backbone


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


for _variant, (_depths, _dims) in CONVNEXT_CONFIGS.items():
    _name = f"convnext_{_variant}"
    _features = {
        4: f"{_name}_stage_0_block_{_depths[0] - 1}_add",
        8: f"{_name}_stage_1_block_{_depths[1] - 1}_add",
        16: f"{_name}_stage_2_block_{_depths[2] - 1}_add",
        32: f"{_name}_head_layernorm",
    }
    register_backbone(
        BackboneSpec(
            name=_name,
            family="convnext",
            builder=lambda input_tensor, _d=_depths, _c=_dims, _n=_name, **_: build_convnext(input_tensor, _d, _c, _n),
            features=_features,
            channels=dict(zip((4, 8, 16, 32), _dims)),
            default_skips=tuple(_features[s] for s in (16, 8, 4)),
            preprocessing="identity",
            first_conv=f"{_name}_stem_conv",
            description=f"ConvNeXt-{_variant.capitalize()} (keras.applications weights)",
            weights_layout="by_order",
            notes="no stride-2 map (4x4 stem with stride 4); ImageNet mean/std inside the model (images in 0..255)",
        )
    )
