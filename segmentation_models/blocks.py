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
    separable: bool = False,
):
    """Conv2D (no bias when followed by batch norm) -> BatchNormalization -> activation.

    ``separable=True`` uses a depthwise-separable convolution (DeepLabV3+'s ASPP and decoder).
    """
    if separable:
        x = layers.SeparableConv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            dilation_rate=dilation_rate,
            use_bias=not use_batchnorm,
            depthwise_initializer=kernel_initializer,
            pointwise_initializer=kernel_initializer,
            name=f"{name}_conv" if name else None,
        )(x)
    else:
        x = layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            dilation_rate=dilation_rate,
            use_bias=not use_batchnorm,
            kernel_initializer=kernel_initializer,
            name=f"{name}_conv" if name else None,
        )(x)
    if use_batchnorm:
        x = layers.BatchNormalization(axis=-1, name=f"{name}_bn" if name else None)(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{_act_name(activation)}" if name else None)(x)
    return x


def segmentation_head(
    x,
    classes: int,
    activation,
    *,
    kernel_size: int = 3,
    name: str = "final_conv",
    upsampling: int = 1,
    upsampling_name: str = "final_upsampling",
):
    """The final convolution to ``classes`` channels, an optional bilinear x``upsampling`` and the output
    activation (float32 under mixed precision)."""
    x = layers.Conv2D(
        classes, kernel_size, padding="same", use_bias=True, kernel_initializer="glorot_uniform", name=name
    )(x)
    if upsampling > 1:
        x = ResizeByFactor(upsampling, name=upsampling_name)(x)
    act = activation if activation is not None else "linear"
    return layers.Activation(act, name=_act_name(act), dtype="float32")(x)


# ---- resizing to sizes known or unknown until run time, pyramid pooling at any input size (PSPNet) --------
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


def _adaptive_pool_matrix(out_size: int, in_size, dtype):
    """(out_size, in_size) averaging weights of adaptive average pooling (PyTorch's rule: cell i covers
    rows floor(i * in / out) .. ceil((i + 1) * in / out) - 1), valid also when in_size < out_size."""
    cell = ops.cast(ops.arange(out_size), "float32")
    n, m = ops.cast(in_size, "float32"), float(out_size)
    start, end = ops.floor(cell * n / m), ops.ceil((cell + 1.0) * n / m)
    source = ops.cast(ops.arange(in_size), "float32")
    inside = ops.cast(ops.logical_and(source[None, :] >= start[:, None], source[None, :] < end[:, None]), "float32")
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


def pyramid_pooling_branch(x, bins: int, filters: int, *, name: str, pooling: str = "avg", use_batchnorm: bool = True):
    """PSP branch: pool into ``bins`` x ``bins`` cells, 1x1 conv-bn-relu, resize back to ``x``'s size.

    Layer names are 1.0.1's: ``{name}_pooling``, ``{name}_conv/_bn/_relu``, ``{name}_upsampling``.
    """
    y = GridPooling2D(bins, pooling, name=f"{name}_pooling")(x)
    y = conv_bn_act(y, filters, 1, name=name, use_batchnorm=use_batchnorm)
    return ResizeToReference(name=f"{name}_upsampling")([y, x])


# ==============================================================================================

# Blocks of segmentation_models_pytorch's decoders (Unet++, MAnet, PAN, DeepLabV3/V3+, UPerNet):
# resizing to another tensor's size, the Unet decoder block, scSE attention, ASPP, pyramid pooling,
# MAnet's PAB/MFAB, PAN's FPA/GAU and the auxiliary classification head.
# =====================================================================================================

ATTENTION_TYPES = (None, "scse")
AUX_POOLINGS = ("avg", "max")


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


def check_attention_type(attention_type) -> None:
    if attention_type not in ATTENTION_TYPES:
        raise ValueError(
            f"decoder_attention_type must be None or 'scse' (concurrent spatial and channel squeeze & "
            f"excitation), got {attention_type!r}"
        )


def channel_gate(x, channels: int, reduced: int, name: str):
    """Squeeze & excitation gate: global average -> 1x1 conv + relu -> 1x1 conv + sigmoid, shape (B, 1, 1, C)."""
    g = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    g = conv_bn_act(g, reduced, 1, name=f"{name}_reduce", use_batchnorm=False)
    return conv_bn_act(g, channels, 1, name=f"{name}_expand", activation="sigmoid", use_batchnorm=False)


def scse_attention(x, name: str, reduction: int = 16):
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


def attention(x, attention_type, name: str):
    """Apply ``attention_type`` (None: identity, 'scse')."""
    check_attention_type(attention_type)
    return x if attention_type is None else scse_attention(x, name)


def decoder_block(x, skips, filters: int, name: str, use_batchnorm: bool = True, attention_type=None):
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


def aspp(
    x, filters: int, atrous_rates=(12, 24, 36), separable: bool = False, dropout: float | None = 0.5, name: str = "aspp"
):
    """Atrous spatial pyramid pooling (DeepLabV3): 1x1, three dilated 3x3 and an image-pooling branch."""
    branches = [conv_bn_act(x, filters, 1, name=f"{name}_branch0")]
    for i, rate in enumerate(atrous_rates, start=1):
        branches.append(conv_bn_act(x, filters, 3, name=f"{name}_branch{i}", dilation_rate=rate, separable=separable))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_image_pool")(x)
    pooled = conv_bn_act(pooled, filters, 1, name=f"{name}_image")
    branches.append(ResizeToMatch(name=f"{name}_image_resize")([pooled, x]))
    y = layers.Concatenate(axis=-1, name=f"{name}_concat")(branches)
    y = conv_bn_act(y, filters, 1, name=f"{name}_project")
    if dropout:
        y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
    return y


def pyramid_pooling(x, filters: int, bins=(1, 2, 3, 6), use_batchnorm: bool = True, name: str = "psp"):
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


@keras.saving.register_keras_serializable(package="segmentation_models")
class PositionAttention(layers.Layer):
    """MAnet's position-wise attention over all H*W positions: inputs (query, key, value), NHWC.

    As segmentation_models_pytorch: the softmax runs over the whole (HW x HW) map of each image, and the
    (HW, C) result is laid out in channels-first order before it returns to NHWC.
    """

    def call(self, inputs):
        query, key, value = inputs
        shape = ops.shape(value)
        batch, height, width, channels = shape[0], shape[1], shape[2], value.shape[-1]
        q = ops.reshape(query, (batch, -1, query.shape[-1]))
        k = ops.reshape(key, (batch, -1, key.shape[-1]))
        v = ops.reshape(value, (batch, -1, channels))
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1)))
        positions = ops.shape(scores)[1]
        weights = ops.reshape(ops.softmax(ops.reshape(scores, (batch, -1)), axis=-1), (batch, positions, positions))
        out = ops.reshape(ops.matmul(weights, v), (batch, channels, height, width))
        return ops.transpose(out, (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[2])


def position_attention_block(x, pab_channels: int = 64, name: str = "pab"):
    """MAnet's PAB: x + position attention (1x1 query/key, 3x3 value), then a 3x3 conv."""
    channels = x.shape[-1]
    plain = dict(use_batchnorm=False, activation=None)
    query = conv_bn_act(x, pab_channels, 1, name=f"{name}_center", **plain)
    key = conv_bn_act(x, pab_channels, 1, name=f"{name}_top", **plain)
    value = conv_bn_act(x, channels, 3, name=f"{name}_bottom", **plain)
    y = PositionAttention(name=f"{name}_attention")([query, key, value])
    x = layers.Add(name=f"{name}_add")([x, y])
    return conv_bn_act(x, channels, 3, name=f"{name}_out", **plain)


def multiscale_fusion_block(x, skip, filters: int, name: str, use_batchnorm: bool = True, reduction: int = 16):
    """MAnet's MFAB: high-level features to the skip's channels, x2 up, gated by SE(high) + SE(skip), fused."""
    skip_channels = skip.shape[-1]
    x = conv_bn_act(x, x.shape[-1], 3, name=f"{name}_high1", use_batchnorm=use_batchnorm)
    x = conv_bn_act(x, skip_channels, 1, name=f"{name}_high2", use_batchnorm=use_batchnorm)
    x = layers.UpSampling2D(size=2, name=f"{name}_upsampling")(x)
    reduced = max(1, skip_channels // reduction)
    gate = layers.Add(name=f"{name}_gate")(
        [
            channel_gate(x, skip_channels, reduced, name=f"{name}_se_high"),
            channel_gate(skip, skip_channels, reduced, name=f"{name}_se_low"),
        ]
    )
    x = layers.Multiply(name=f"{name}_scale")([x, gate])
    x = layers.Concatenate(axis=-1, name=f"{name}_concat")([x, skip])
    x = conv_bn_act(x, filters, 3, name=f"{name}a", use_batchnorm=use_batchnorm)
    return conv_bn_act(x, filters, 3, name=f"{name}b", use_batchnorm=use_batchnorm)


def feature_pyramid_attention(x, filters: int, name: str = "fpa"):
    """PAN's FPA: a 3-level (7x7, 5x5, 3x3) single-channel pyramid gates a 1x1 projection; plus a global branch.

    Pooling is ceil-mode ('same') and every upsampling resizes to the partner tensor, so small and
    odd-sized maps work (SMP's floor sizes are the same for maps divisible by 8).
    """
    glob = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_global_pool")(x)
    glob = conv_bn_act(glob, filters, 1, name=f"{name}_global")
    glob = ResizeToMatch(name=f"{name}_global_resize")([glob, x])
    mid = conv_bn_act(x, filters, 1, name=f"{name}_mid")
    down1 = layers.MaxPooling2D(2, padding="same", name=f"{name}_down1_pool")(x)
    down1 = conv_bn_act(down1, 1, 7, name=f"{name}_down1")
    down2 = layers.MaxPooling2D(2, padding="same", name=f"{name}_down2_pool")(down1)
    down2 = conv_bn_act(down2, 1, 5, name=f"{name}_down2")
    down3 = layers.MaxPooling2D(2, padding="same", name=f"{name}_down3_pool")(down2)
    down3 = conv_bn_act(down3, 1, 3, name=f"{name}_down3a")
    down3 = conv_bn_act(down3, 1, 3, name=f"{name}_down3b")
    y = layers.Add(name=f"{name}_add2")(
        [conv_bn_act(down2, 1, 5, name=f"{name}_conv2"), ResizeToMatch(name=f"{name}_up3")([down3, down2])]
    )
    y = layers.Add(name=f"{name}_add1")(
        [conv_bn_act(down1, 1, 7, name=f"{name}_conv1"), ResizeToMatch(name=f"{name}_up2")([y, down1])]
    )
    y = ResizeToMatch(name=f"{name}_up1")([y, x])
    y = layers.Multiply(name=f"{name}_scale")([mid, y])
    return layers.Add(name=f"{name}_add")([y, glob])


def global_attention_upsample(low, high, filters: int, name: str = "gau"):
    """PAN's GAU: the high-level map upsampled to the low-level one, plus conv3x3(low) gated by high's context."""
    high_up = ResizeToMatch(name=f"{name}_resize")([high, low])
    low = conv_bn_act(low, filters, 3, name=f"{name}_low")
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_gate_pool")(high)
    gate = conv_bn_act(gate, filters, 1, name=f"{name}_gate", activation="sigmoid")
    return layers.Add(name=f"{name}_add")([high_up, layers.Multiply(name=f"{name}_scale")([low, gate])])


def classification_head(
    x, classes: int, pooling: str = "avg", dropout: float | None = None, activation=None, name: str = "aux"
):
    """SMP's auxiliary head: global pooling -> dropout -> dense -> activation (float32), output ``{name}_{act}``."""
    pool = layers.GlobalAveragePooling2D if pooling == "avg" else layers.GlobalMaxPooling2D
    x = pool(name=f"{name}_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = layers.Dense(classes, name=f"{name}_dense")(x)
    act = activation if activation is not None else "linear"
    return layers.Activation(act, name=f"{name}_{_act_name(act)}", dtype="float32")(x)


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


def segmentation_head_by_factor(
    x, classes: int, activation, upsampling: int, *, kernel_size: int = 1, name: str = "final_conv"
):
    """Convolution to ``classes`` channels, bilinear x``upsampling`` (any size, also unknown ones), output
    activation (float32 under mixed precision)."""
    x = layers.Conv2D(
        classes, kernel_size, padding="same", use_bias=True, kernel_initializer="glorot_uniform", name=name
    )(x)
    x = ResizeByFactor(upsampling, name="final_upsampling")(x)
    act = activation if activation is not None else "linear"
    return layers.Activation(act, name=_act_name(act), dtype="float32")(x)
