"""Building blocks shared by several architectures: conv-bn-activation, the segmentation and classification
heads, resizing to sizes unknown until run time, the Unet decoder block and scSE attention.

Blocks that one architecture alone uses live beside it in ``decoders/<architecture>.py``. Layer names follow
segmentation_models 1.0.1 (``{name}_conv``, ``{name}_bn``, ``{name}_{activation}``) so that 1.0.1 weights load
by name.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from .validation import check_attention_type


def _act_name(activation) -> str:
    return activation if isinstance(activation, str) else getattr(activation, "__name__", "act")


def conv_bn_act(
    x: keras.KerasTensor,
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
    separable: bool = False,
) -> keras.KerasTensor:
    """Conv2D (no bias when followed by batch norm) -> BatchNormalization -> activation.

    ``separable=True`` uses a depthwise-separable convolution (DeepLabV3+'s ASPP and decoder).
    """
    options = dict(
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
        use_bias=not use_batchnorm,
        name=f"{name}_conv" if name else None,
    )
    if separable:
        initializers = dict(depthwise_initializer=kernel_initializer, pointwise_initializer=kernel_initializer)
        x = layers.SeparableConv2D(filters, kernel_size, **initializers, **options)(x)
    else:
        x = layers.Conv2D(filters, kernel_size, kernel_initializer=kernel_initializer, **options)(x)
    if use_batchnorm:
        x = layers.BatchNormalization(axis=-1, name=f"{name}_bn" if name else None)(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{_act_name(activation)}" if name else None)(x)
    return x


def transpose_bn_relu(x: keras.KerasTensor, filters: int, name: str, use_batchnorm: bool = True) -> keras.KerasTensor:
    """x2 upsampling by a 4x4 transposed convolution -> BatchNormalization -> ReLU (1.0.1's Unet and Linknet
    ``decoder_block_type='transpose'``): layers ``{name}_transpose``, ``{name}_bn``, ``{name}_relu``."""
    x = layers.Conv2DTranspose(
        filters, 4, strides=2, padding="same", use_bias=not use_batchnorm, name=f"{name}_transpose"
    )(x)
    if use_batchnorm:
        x = layers.BatchNormalization(axis=-1, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def segmentation_head(
    x: keras.KerasTensor,
    classes: int,
    activation,
    *,
    kernel_size: int = 3,
    name: str = "final_conv",
    upsampling: int = 1,
    upsampling_name: str = "final_upsampling",
) -> keras.KerasTensor:
    """The final convolution to ``classes`` channels, an optional bilinear x``upsampling`` and the output
    activation (float32 under mixed precision)."""
    x = layers.Conv2D(
        classes, kernel_size, padding="same", use_bias=True, kernel_initializer="glorot_uniform", name=name
    )(x)
    if upsampling > 1:
        x = ResizeByFactor(upsampling, name=upsampling_name)(x)
    act = activation if activation is not None else "linear"
    return layers.Activation(act, name=_act_name(act), dtype="float32")(x)


def classification_head(
    x: keras.KerasTensor,
    classes: int,
    pooling: str = "avg",
    dropout: float | None = None,
    activation=None,
    name: str = "aux",
) -> keras.KerasTensor:
    """SMP's auxiliary head: global pooling -> dropout -> dense -> activation (float32), output ``{name}_{act}``."""
    pool = layers.GlobalAveragePooling2D if pooling == "avg" else layers.GlobalMaxPooling2D
    x = pool(name=f"{name}_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = layers.Dense(classes, name=f"{name}_dense")(x)
    act = activation if activation is not None else "linear"
    return layers.Activation(act, name=f"{name}_{_act_name(act)}", dtype="float32")(x)


# ---- resizing to sizes known or unknown until run time ------------------------------------------------
def resize_images(x, size, interpolation: str = "bilinear"):
    """Resize channels-last ``x`` (B, H, W, C) to ``size`` = (height, width), half-pixel as ``ops.image.resize``.

    Known (integer) sizes go to ``ops.image.resize``. Sizes that are symbolic, as in TensorFlow graphs traced
    with unknown height and width (``predict`` or ``fit`` on a second image size, exports with dynamic sizes),
    are resized by gathering rows, then columns, and blending them: ``ops.image.resize`` needs known sizes there.
    """
    height, width = size
    if isinstance(height, int) and isinstance(width, int):
        return ops.image.resize(x, (height, width), interpolation=interpolation)
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"sizes unknown until run time are resized bilinear or nearest, not {interpolation!r}")
    return _resize_axis(_resize_axis(x, height, 1, interpolation), width, 2, interpolation)


def _resize_axis(x, out_size, axis: int, interpolation: str):
    in_size = ops.shape(x)[axis]
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    last = ops.cast(in_size, "int32") - 1
    centers = (ops.cast(ops.arange(out_size), "float32") + 0.5) * scale
    if interpolation == "nearest":
        return ops.take(x, ops.minimum(ops.cast(ops.floor(centers), "int32"), last), axis=axis)
    position = ops.clip(centers - 0.5, 0.0, ops.cast(last, "float32"))
    lower = ops.floor(position)
    weight = ops.cast(ops.reshape(position - lower, (-1, 1) if axis == 2 else (-1, 1, 1)), x.dtype)
    lower = ops.cast(lower, "int32")
    low, high = ops.take(x, lower, axis=axis), ops.take(x, ops.minimum(lower + 1, last), axis=axis)
    return low + (high - low) * weight


@keras.saving.register_keras_serializable(package="segmentation_models")
class ResizeToMatch(layers.Layer):
    """Resize ``inputs[0]`` to the height and width of ``inputs[1]`` (sizes may be unknown until run time)."""

    def __init__(self, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        self.interpolation = interpolation

    def call(self, inputs):
        x, reference = inputs
        static = tuple(x.shape[1:3])
        if None not in static and static == tuple(reference.shape[1:3]):
            return x
        return resize_images(x, ops.shape(reference)[1:3], interpolation=self.interpolation)

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[-1])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="segmentation_models")
class ResizeToReference(ResizeToMatch):
    """:class:`ResizeToMatch` (bilinear) under the name of the pyramid pooling cells' resizing (PSPNet and
    UPerNet's pyramid pooling), which saved models record."""


@keras.saving.register_keras_serializable(package="segmentation_models")
class ResizeByFactor(layers.Layer):
    """Resize height and width by an integer ``factor`` (bilinear, half-pixel as UpSampling2D), also when
    they are unknown when the model is built (UpSampling2D's bilinear mode needs them known on TensorFlow)."""

    def __init__(self, factor: int, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        if int(factor) < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        self.factor = int(factor)
        self.interpolation = interpolation

    def call(self, x):
        if self.factor == 1:
            return x
        shape = ops.shape(x)
        return resize_images(x, (shape[1] * self.factor, shape[2] * self.factor), self.interpolation)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else h * self.factor, None if w is None else w * self.factor, c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "interpolation": self.interpolation}


# ---- the Unet decoder block and scSE attention (Unet, Unet++, MAnet) -------------------------------------
def channel_gate(x: keras.KerasTensor, channels: int, reduced: int, name: str) -> keras.KerasTensor:
    """Squeeze & excitation gate: global average -> 1x1 conv + relu -> 1x1 conv + sigmoid, shape (B, 1, 1, C)."""
    g = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    g = conv_bn_act(g, reduced, 1, name=f"{name}_reduce", use_batchnorm=False)
    return conv_bn_act(g, channels, 1, name=f"{name}_expand", activation="sigmoid", use_batchnorm=False)


def scse_attention(x: keras.KerasTensor, name: str, reduction: int = 16) -> keras.KerasTensor:
    """Concurrent spatial and channel squeeze & excitation (Roy et al. 2018): x * cSE(x) + x * sSE(x)."""
    channels = x.shape[-1]
    channel = channel_gate(x, channels, max(1, channels // reduction), name=f"{name}_cse")
    spatial = conv_bn_act(x, 1, 1, name=f"{name}_sse", activation="sigmoid", use_batchnorm=False)
    return layers.Add(name=f"{name}_add")(
        [
            layers.Multiply(name=f"{name}_cse_scale")([x, channel]),
            layers.Multiply(name=f"{name}_sse_scale")([x, spatial]),
        ]
    )


def attention(x: keras.KerasTensor, attention_type: str | None, name: str) -> keras.KerasTensor:
    """Apply ``attention_type`` (None: identity, 'scse')."""
    check_attention_type(attention_type)
    return x if attention_type is None else scse_attention(x, name)


def decoder_block(
    x: keras.KerasTensor,
    skips: list,
    filters: int,
    name: str,
    use_batchnorm: bool = True,
    attention_type: str | None = None,
) -> keras.KerasTensor:
    """Unet decoder block: x2 nearest upsampling, concatenation with ``skips``, two 3x3 conv-bn-relu.

    Layers are ``{name}_upsampling``, ``{name}_concat``, ``{name}a_*``, ``{name}b_*`` (1.0.1's Unet names
    for ``name='decoder_stage{i}'``); attention (after the concatenation and at the end) adds
    ``{name}_attention1_*`` / ``{name}_attention2_*``.
    """
    skips = [s for s in (skips or []) if s is not None]
    x = layers.UpSampling2D(size=2, name=f"{name}_upsampling")(x)
    if skips:
        x = layers.Concatenate(axis=-1, name=f"{name}_concat")([x, *skips])
        x = attention(x, attention_type, f"{name}_attention1")
    x = conv_bn_act(x, filters, 3, name=f"{name}a", use_batchnorm=use_batchnorm)
    x = conv_bn_act(x, filters, 3, name=f"{name}b", use_batchnorm=use_batchnorm)
    return attention(x, attention_type, f"{name}_attention2")
