"""Shared building blocks of every decoder (one module, no copy-pasted conv-bn-relu variants).

Layer names follow segmentation_models 1.0.1 (``{name}_conv``, ``{name}_bn``, ``{name}_{activation}``)
so that 1.0.1 weights load by name.
"""
from __future__ import annotations

import keras
from keras import layers, ops


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


def segmentation_head(x, classes: int, activation, *, kernel_size: int = 3, name: str = "final_conv",
                      upsampling: int = 1, upsampling_name: str = "final_upsampling"):
    """The final convolution to ``classes`` channels, an optional bilinear x``upsampling`` and the output
    activation (float32 under mixed precision)."""
    x = layers.Conv2D(classes, kernel_size, padding="same", use_bias=True, kernel_initializer="glorot_uniform", name=name)(x)
    if upsampling > 1:
        x = layers.UpSampling2D(upsampling, interpolation="bilinear", name=upsampling_name)(x)
    act = activation if activation is not None else "linear"
    return layers.Activation(act, name=_act_name(act), dtype="float32")(x)


# ---- pyramid pooling at any input size (PSPNet; usable by other pyramid modules) ------------------------
def _bilinear_matrix(out_size, in_size, dtype):
    """(out_size, in_size) weights of half-pixel bilinear resizing (as ``tf.image.resize``/UpSampling2D)."""
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    position = (ops.cast(ops.arange(out_size), "float32") + 0.5) * scale - 0.5
    position = ops.clip(position, 0.0, ops.cast(in_size, "float32") - 1.0)
    source = ops.cast(ops.arange(in_size), "float32")
    return ops.cast(ops.relu(1.0 - ops.abs(position[:, None] - source[None, :])), dtype)


@keras.saving.register_keras_serializable(package="segmentation_models")
class GridPooling2D(keras.layers.Layer):
    """Average or max pooling of a (B, H, W, C) map into ``bins`` x ``bins`` equal cells, for any H and W
    divisible by ``bins`` (also unknown ones). Equal to ``AveragePooling2D(H // bins)`` / ``MaxPooling2D``
    with stride = pool size, which needs sizes known when the model is built."""

    def __init__(self, bins: int, pooling: str = "avg", **kwargs):
        super().__init__(**kwargs)
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")
        self.bins = int(bins)
        self.pooling = pooling

    def call(self, inputs):
        shape = ops.shape(inputs)
        b = self.bins
        cells = ops.reshape(inputs, (-1, b, shape[1] // b, b, shape[2] // b, shape[3]))
        reduce = ops.mean if self.pooling == "avg" else ops.max
        return reduce(cells, axis=(2, 4))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bins, self.bins, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "bins": self.bins, "pooling": self.pooling}


@keras.saving.register_keras_serializable(package="segmentation_models")
class ResizeToReference(keras.layers.Layer):
    """Bilinear (half-pixel, as UpSampling2D) resizing of ``[x, reference]``'s x to the reference's height
    and width, also when they are unknown when the model is built (``ops.image.resize`` needs them known).

    Implemented as two small interpolation matrices; meant for small inputs such as pooled pyramid cells.
    """

    def call(self, inputs):
        x, reference = inputs
        shape, target = ops.shape(x), ops.shape(reference)
        rows = _bilinear_matrix(target[1], shape[1], x.dtype)
        cols = _bilinear_matrix(target[2], shape[2], x.dtype)
        return ops.einsum("Hh,bhwc,Ww->bHWc", rows, x, cols)

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


def pyramid_pooling_branch(x, bins: int, filters: int, *, name: str, pooling: str = "avg", use_batchnorm: bool = True):
    """PSP branch: pool into ``bins`` x ``bins`` cells, 1x1 conv-bn-relu, resize back to ``x``'s size.

    Layer names are 1.0.1's: ``{name}_pooling``, ``{name}_conv/_bn/_relu``, ``{name}_upsampling``.
    """
    y = GridPooling2D(bins, pooling, name=f"{name}_pooling")(x)
    y = conv_bn_act(y, filters, 1, name=name, use_batchnorm=use_batchnorm)
    return ResizeToReference(name=f"{name}_upsampling")([y, x])
