"""Shared building blocks of every decoder (one module, no copy-pasted conv-bn-relu variants).

Layer names follow segmentation_models 1.0.1 (``{name}_conv``, ``{name}_bn``, ``{name}_{activation}``)
so that 1.0.1 weights load by name.
"""
from __future__ import annotations

from keras import layers


def _act_name(activation) -> str:
    return activation if isinstance(activation, str) else getattr(activation, "__name__", "act")


def conv_bn_act(
    x,
    filters: int,
    kernel_size=3,
    *,
    name: str | None = None,
    activation="relu",
    use_batchnorm: bool = True,
    strides=1,
    padding: str = "same",
    dilation_rate=1,
    kernel_initializer: str = "he_uniform",
):
    """Conv2D (no bias when followed by batch norm) -> BatchNormalization -> activation."""
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
        use_bias=not use_batchnorm, kernel_initializer=kernel_initializer,
        name=f"{name}_conv" if name else None,
    )(x)
    if use_batchnorm:
        x = layers.BatchNormalization(axis=-1, name=f"{name}_bn" if name else None)(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{_act_name(activation)}" if name else None)(x)
    return x


def segmentation_head(x, classes: int, activation, *, kernel_size: int = 3, name: str = "final_conv"):
    """The final convolution to ``classes`` channels and the output activation (float32 under mixed precision)."""
    x = layers.Conv2D(classes, kernel_size, padding="same", use_bias=True, kernel_initializer="glorot_uniform", name=name)(x)
    act = activation if activation is not None else "linear"
    return layers.Activation(act, name=_act_name(act), dtype="float32")(x)


# ---- stochastic depth (transformer encoders) and upsampled heads (SegFormer) ---------------------
import keras  # noqa: E402


@keras.saving.register_keras_serializable(package="segmentation_models")
class StochasticDepth(layers.Layer):
    """Drop a residual branch per sample with probability ``rate`` in training (DropPath); identity otherwise."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"StochasticDepth rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (keras.ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
        mask = keras.ops.floor(keep + noise)
        return x / keep * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config


def upsampled_segmentation_head(x, classes: int, activation, upsampling: int, *, kernel_size: int = 1,
                                name: str = "final_conv"):
    """Convolution to ``classes`` channels, bilinear x``upsampling``, output activation (float32)."""
    x = layers.Conv2D(classes, kernel_size, padding="same", use_bias=True, kernel_initializer="glorot_uniform", name=name)(x)
    if upsampling > 1:
        x = layers.UpSampling2D(size=upsampling, interpolation="bilinear", name=f"{name}_upsampling")(x)
    act = activation if activation is not None else "linear"
    return layers.Activation(act, name=_act_name(act), dtype="float32")(x)
