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
