"""Faster Keras kernels for the PyTorch backend, for the package's models (see ``segmentation_models.accel``).

Keras 3's torch backend runs every channels-last ``Conv2D`` through two full copies of its input
(``permute(...).contiguous()`` to NCHW, then ``.contiguous(channels_last)`` back to the layout oneDNN
wants), and a training-mode ``BatchNormalization`` through about ten separate elementwise and reduction
passes (E[x^2] - E[x]^2 moments, then subtract/multiply/add). Measured on a 2-core CPU, Keras' ResNet-50
at 256x256, batch 8: a third of inference time was those copies.

Inside the package's models these run instead, all with the same mathematics:

- ``conv`` (also used by depthwise and separable convolutions): a channels-last input is handed to
  ``torch.nn.functional.conv2d`` as a zero-copy NCHW view in channels-last memory, and the output is
  viewed back as NHWC, so no activation is copied; a kernel parameter's storage is switched once to
  (O, H, W, I) order, so its OIHW channels-last view needs no copy per call and none is kept for the
  backward pass; other kernels are cached in torch's layout per tensor and version without autograd;
- ``moments``: one ``torch.var_mean`` pass (also more accurate than E[x^2] - E[x]^2);
- ``batch_normalization``: one ``addcmul`` pass over x (x * scale' + shift'; in inference, scale' and shift' are
  cached per version of the layer's variables);
- ``keras.layers.UpSampling2D`` with nearest interpolation (4D channels-last): one
  ``torch.nn.functional.interpolate`` kernel instead of two ``repeat`` copies, and a backward pass of views
  and adds in NHWC (torch's transposes the gradient to NCHW first);
- ``keras.layers.BatchNormalization`` in training mode on 4D channels-last inputs: one fused
  ``torch.native_batch_norm`` forward and backward; the moving statistics get the same update as in
  Keras (biased batch variance, ``momentum``), in place outside stateless calls;
- pooling (``max_pool``, ``average_pool``, adaptive pooling) and ``conv_transpose``: Keras copies the
  input to contiguous NCHW first; here it gets the same zero-copy channels-last view as ``conv``;
  non-overlapping average pooling (stride = pool size, no padding) in training keeps only its input's shape
  for the backward pass, not the input (:func:`_block_average_pool`);
- ``scatter`` (``keras.ops.scatter``, which Keras' confusion matrix and so ``MeanIoU``/``OneHotMeanIoU``
  use): one ``index_put_(accumulate=True)`` instead of a Python loop over every index (a 256x256 batch of 8
  is 524288 iterations: ~6 s per training step of the CLI's ``mean_iou`` metric);
- a BatchNormalization without scale on an input that needs no gradient (1.0.1's ResNets normalise the image
  so: ``bn_data``), in training: the convolution after it computes ``conv(x_hat) + conv(beta)`` instead of
  ``conv(x_hat + beta)``, so its backward pass makes the input gradient of one beta-filled image instead of the
  whole batch (see :func:`_mark_center_split`; ~65 ms of a 256x256 batch of 8 on 2 cores).

Anything outside these fast paths (channels_first, 1D/3D convolutions, masks, renorm, synchronized batch
norm, other axes) goes to Keras' own implementation, as does every call outside a package model.
"""

from __future__ import annotations

import functools
import threading
import weakref

import keras
import torch
from keras.src.backend.common.stateless_scope import in_stateless_scope
from keras.src.backend.torch import nn as torch_nn

from . import recompute
from ._patches import original

# Padding of a skipped ZeroPadding2D that the next convolution/max-pooling kernel applies itself (see graph._schedule).
_FUSED = threading.local()
_RELAID: weakref.WeakSet = weakref.WeakSet()  # kernels stored in torch's order (restore_layouts puts them back)
_WEIGHT_CACHE: dict = {}
_BN_CACHE: dict = {}

convert = torch_nn.convert_to_tensor
standardize_data_format = torch_nn.backend.standardize_data_format
apply_same_padding = torch_nn._apply_same_padding
channels_last = torch.channels_last


def _store_in_torch_order(kernel) -> None:
    """Store a 4D HWIO kernel parameter in (O, H, W, I) memory order (once), so that torch's OIHW channels-last
    view of it is free: no copy per call, none kept for the backward pass; gradients take the same layout, and so
    do mixed-precision casts of it. Shape, values and Keras' variable are unchanged."""
    if kernel.ndim == 4 and not kernel.permute(3, 2, 0, 1).is_contiguous(memory_format=torch.channels_last):
        with torch.no_grad():
            kernel.data = kernel.data.permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)
        _RELAID.add(kernel)


def _take_fused_padding() -> tuple[int, int] | None:
    """The (rows, columns) padding handed over by the graph executor for this kernel call, cleared on read."""
    padding = getattr(_FUSED, "padding", None)
    _FUSED.padding = None
    return padding


def _cached_on_versions(cache: dict, key, tensors, compute):
    """``compute()``, cached under ``key`` while each of ``tensors`` (None entries allowed) is the same object at
    the same version (torch counts in-place writes: Keras' assign, optimizer steps); an entry goes when the first
    tensor is collected."""
    versions = tuple(None if t is None else t._version for t in tensors)
    entry = cache.get(key)
    if (
        entry is not None
        and entry[1] == versions
        and all((r is None) if t is None else (r is not None and r() is t) for r, t in zip(entry[0], tensors))
    ):
        return entry[2]
    value = compute()
    try:
        refs = tuple(None if t is None else weakref.ref(t) for t in tensors)
        if entry is None:  # once per key: a stale entry is replaced under the same key
            weakref.finalize(next(t for t in tensors if t is not None), cache.pop, key, None)
    except TypeError:  # pragma: no cover - tensors without weak references
        return value
    cache[key] = (refs, versions, value)
    return value


def _bn_scale_shift(mean, variance, gamma, beta, epsilon):
    """BatchNormalization as x * scale + shift: scale = gamma / sqrt(variance + epsilon), shift = beta - mean * scale
    (gamma/beta None: the layer has no scale/center)."""
    scale = torch.rsqrt(variance + epsilon)
    if gamma is not None:
        scale = scale * gamma
    shift = -mean * scale
    return scale, (shift if beta is None else shift + beta)


def _mark_center_split(y, x_hat, beta) -> None:
    """Note on ``y`` = BatchNormalization(scale=False) of an input with no gradient that it is ``x_hat + beta``
    (``x_hat``: the normalised input, an NCHW view of channels-last memory).

    1.0.1's ResNets normalise the image with such a layer (``bn_data``), so the first convolution's backward pass
    computes a full input gradient (batch x 3 x H x W through a 7x7 kernel: ~80 ms of a 256x256 batch of 8 on 2
    cores) only for beta's three values. The convolution, being linear, can take ``conv(x_hat) + conv(beta)``
    instead (see ``convolve``): the same output and gradients, with the input gradient of one beta-filled image.
    """
    y._sm_center_split = (x_hat.permute(0, 2, 3, 1), beta, y._version)


def _center_split(inputs):
    """``(x_hat, beta)`` when ``inputs`` is an unchanged output marked by :func:`_mark_center_split` and autograd
    records; else None."""
    split = getattr(inputs, "_sm_center_split", None)
    if split is None or split[2] != inputs._version or not torch.is_grad_enabled():
        return None
    return split[:2]


def _batch_norm_output(x, mean, inv_std, gamma, beta):
    """What ``torch.native_batch_norm`` in training returns for a channels-last ``x``, from its saved statistics."""
    scale = inv_std if gamma is None else inv_std * gamma
    shift = -mean * scale
    if beta is not None:
        shift = shift + beta
    return torch.addcmul(shift, x, scale)  # channels last: (C,) broadcasts over the last axis


def _training_batch_norm(x, gamma, beta, epsilon: float):
    """``torch.native_batch_norm`` in training of ``x``, an NCHW view of NHWC memory: (output, batch mean, inverse
    standard deviation), the output in the same memory layout.

    torch's channels-last kernel is slow for 2 to 7 channels: an image's 3 channels take 20 ms for a 256x256 batch
    of 8 on 2 cores (1, 8, 16, 32 or 64 channels: 0.7-2.6 ms). Where no input gradient is needed (1.0.1's ResNets
    normalise the image so: ``bn_data``), the statistics come from a contiguous NCHW copy (1.9 ms) and the output
    from one ``addcmul`` over the NHWC memory (0.7 ms); gradients of gamma and beta flow through that addcmul.
    """
    if x.requires_grad or not 1 < x.shape[1] < 8 or x.dtype != torch.float32:
        return torch.native_batch_norm(x, gamma, beta, None, None, True, 0.0, epsilon)
    with torch.no_grad():
        _, mean, inv_std = torch.native_batch_norm(x.contiguous(), None, None, None, None, True, 0.0, epsilon)
    y = _batch_norm_output(x.permute(0, 2, 3, 1), mean, inv_std, gamma, beta)
    return y.permute(0, 3, 1, 2), mean, inv_std


@functools.cache
def _nearest_upsampling():
    """Nearest upsampling of an NHWC tensor by integer factors, as a ``torch.autograd.Function``.

    Forward: torch's ``interpolate`` on the channels-last view (the same values as Keras' two ``repeat``s).
    Backward: the sum of the ``fh * fw`` gradient positions of each input pixel, as views and adds in NHWC.
    torch's own backward first copies the gradient to contiguous NCHW, which for a Unet decoder's upsampling
    (its gradient is a channel slice of the Concatenate's) is a full transpose: 73 ms against 3 ms for a
    (8, 64, 64, 64) input on 2 cores.
    """

    class NearestUpsampling(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, fh, fw):
            ctx.factors = (fh, fw)
            y = torch.nn.functional.interpolate(
                x.permute(0, 3, 1, 2), scale_factor=(float(fh), float(fw)), mode="nearest"
            )
            return y.permute(0, 2, 3, 1)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            fh, fw = ctx.factors
            b, h, w, c = grad.shape
            g = grad.reshape(b, h // fh, fh, w // fw, fw, c)  # a view, also of a channel slice
            rows = g[:, :, 0]
            for i in range(1, fh):
                rows = rows + g[:, :, i]
            out = rows[:, :, :, 0]
            for j in range(1, fw):
                out = out + rows[:, :, :, j]
            if fh == fw == 1:
                out = out.clone()
            return out, None, None

    return NearestUpsampling


@functools.cache
def _block_average_pool():
    """Non-overlapping average pooling of an NHWC tensor (stride = pool size, no padding), as a
    ``torch.autograd.Function`` that keeps only the input's shape for the backward pass (torch's avg_pool2d
    keeps the input itself: SegFormer's 256-channel stride-2 map, 134 MB at 256x256, batch 8).

    Forward: torch's ``avg_pool2d`` on the channels-last view. Backward: each output gradient / (fh * fw) spread
    over its block (zeros on the rows and columns that pooling drops when a size is not divisible).
    """

    class BlockAveragePool(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, fh, fw):
            ctx.factors, ctx.size = (fh, fw), tuple(x.shape[1:3])
            y = torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), kernel_size=(fh, fw), stride=(fh, fw))
            return y.permute(0, 2, 3, 1)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            (fh, fw), (h, w) = ctx.factors, ctx.size
            b, oh, ow, c = grad.shape
            g = (grad / (fh * fw))[:, :, None, :, None, :].expand(b, oh, fh, ow, fw, c).reshape(b, oh * fh, ow * fw, c)
            if (oh * fh, ow * fw) != (h, w):
                g = torch.nn.functional.pad(g, (0, 0, 0, w - ow * fw, 0, h - oh * fh))
            return g, None, None

    return BlockAveragePool


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def torch_weight(kernel):
    """HWIO kernel -> OIHW channels-last weight; cached (per tensor and version) when autograd is off."""
    if isinstance(kernel, torch.nn.Parameter):
        _store_in_torch_order(kernel)
        return kernel.permute(3, 2, 0, 1)
    weight = kernel.permute(3, 2, 0, 1)
    if (torch.is_grad_enabled() and kernel.requires_grad) or weight.is_contiguous(memory_format=channels_last):
        # a view: the conv keeps the tensor itself, not a copy (a mixed-precision cast of a parameter keeps
        # its (O, H, W, I) memory order, so its view is already in torch's layout)
        return weight
    return _cached_on_versions(
        _WEIGHT_CACHE,
        id(kernel),
        (kernel,),
        lambda: kernel.detach().permute(3, 2, 0, 1).contiguous(memory_format=channels_last),
    )


def zero_pad(x, rows_cols):
    """Zero-pad the two spatial axes of an NHWC tensor (what the skipped ZeroPadding2D would have done)."""
    (rows, cols) = rows_cols
    return torch.nn.functional.pad(x, (0, 0, cols, cols, rows, rows))


def convolve(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1, bias=None):
    """Keras' ``conv`` on the zero-copy channels-last view; ``bias`` (per output channel): added by the
    convolution kernel itself (the folded BatchNormalization shift, see :func:`_fold_conv_bn`)."""
    inputs = convert(inputs)
    kernel = convert(kernel)
    fast = inputs.ndim == 4 and standardize_data_format(data_format) == "channels_last"
    fused = _take_fused_padding()
    if fused is not None and not (fast and padding == "valid"):  # pragma: no cover - never fused so
        inputs, fused = zero_pad(inputs, fused), None

    def keras_conv(inputs):
        y = original("conv")(inputs, kernel, strides, padding, data_format, dilation_rate)
        return y if bias is None else y + bias

    if not fast:
        return keras_conv(inputs)
    strides = _pair(strides)
    dilation_rate = _pair(dilation_rate)
    x = inputs.permute(0, 3, 1, 2)  # NCHW view of NHWC memory = channels_last: no copy
    if not x.is_contiguous(memory_format=channels_last):
        x = x.contiguous(memory_format=channels_last)
    weight = torch_weight(kernel)
    if weight.device.type == "cpu" and weight.dtype not in (torch.float32, torch.bfloat16):
        # no oneDNN kernel: torch's slow_conv2d, whose backward rejects the channels-last weight view of a
        # single-output-channel kernel ("grad_weight must be contiguous", float64 training of a Unet)
        weight = weight.contiguous()
    groups = x.shape[1] // weight.shape[1]
    if x.shape[1] != groups * weight.shape[1]:  # Keras raises its own error (shapes as the layer saw them)
        return keras_conv(inputs if fused is None else zero_pad(inputs, fused))
    pad = 0 if fused is None else fused
    split = _center_split(inputs)
    if split is not None:  # conv(x_hat + beta) = conv(x_hat) + conv(beta): no input gradient over the batch
        x = split[0].permute(0, 3, 1, 2)
        shift = split[1].reshape(1, 1, 1, -1).expand(1, *inputs.shape[1:]).contiguous().permute(0, 3, 1, 2)
        if padding == "same":
            (x, _), (shift, pad) = (
                apply_same_padding(t, weight.shape[2:], strides, "channels_first", "conv", dilation_rate)
                for t in (x, shift)
            )
        options = dict(stride=strides, padding=pad, dilation=dilation_rate, groups=groups)
        y = torch.nn.functional.conv2d(x, weight, bias=bias, **options).permute(0, 2, 3, 1)
        # Added in the NHWC view: the backward pass then sums the gradient over the batch in memory order
        # (0.7 ms at 8x128x128x64), not over the channels-last NCHW view (17 ms).
        return y.add_(torch.nn.functional.conv2d(shift, weight, **options).permute(0, 2, 3, 1))
    if padding == "same":
        x, pad = apply_same_padding(x, weight.shape[2:], strides, "channels_first", "conv", dilation_rate)
    y = torch.nn.functional.conv2d(
        x, weight, bias=bias, stride=strides, padding=pad, dilation=dilation_rate, groups=groups
    )
    return y.permute(0, 2, 3, 1)


def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    return convolve(inputs, kernel, strides, padding, data_format, dilation_rate)


def moments(x, axes, keepdims=False, synchronized=False):
    if synchronized:
        return original("moments")(x, axes, keepdims, synchronized)
    x = convert(x)
    half = x.dtype == torch.float16
    if half:  # float16 statistics overflow: compute in float32 (as Keras does)
        x = x.float()
    variance, mean = torch.var_mean(x, dim=tuple(axes), correction=0, keepdim=keepdims)
    if half:
        limit = torch.finfo(torch.float16).max
        mean, variance = mean.clamp(-limit, limit).half(), variance.clamp(-limit, limit).half()
    return mean, variance


def batch_normalization(x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3):
    x = convert(x)
    params = tuple(None if t is None else convert(t) for t in (mean, variance, scale, offset))
    shape = [1] * x.ndim
    shape[axis] = params[0].shape[0]

    # Inference on the layer's own variables: x * inv + shift with (inv, shift) cached per variable versions
    # (five small ops and their Python per call otherwise: ~7% of an EfficientNet's batch-1 latency).
    def factors():
        inv, shift = _bn_scale_shift(*params, epsilon)
        return inv.reshape(shape), shift.reshape(shape)

    if torch.is_grad_enabled() or not all(p is None or isinstance(p, torch.nn.Parameter) for p in params):
        inv, shift = factors()
    else:
        inv, shift = _cached_on_versions(_BN_CACHE, (*(id(p) for p in params), epsilon, tuple(shape)), params, factors)
    return torch.addcmul(shift, x, inv)


def bn_call(self, inputs, training=None, mask=None):
    if not (training and self.trainable) or mask is not None or self.renorm or self.synchronized:
        return original("bn_call")(self, inputs, training=training, mask=mask)
    x = convert(inputs)
    if x.ndim != 4 or self.axis not in (3, -1):
        return original("bn_call")(self, inputs, training=training, mask=mask)
    # Half-precision inputs stay half: torch's kernel takes float32 scale/offset with them and accumulates
    # the statistics in float32 (as Keras, which upcasts the input first: a float32 copy of every BN input
    # that autograd would then keep for the backward pass).
    param_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    x = x.permute(0, 3, 1, 2)  # NCHW view of NHWC memory (channels_last): no copy
    gamma = convert(self.gamma).to(param_dtype) if self.scale else None
    beta = convert(self.beta).to(param_dtype) if self.center else None
    center_only = gamma is None and beta is not None and beta.requires_grad and not x.requires_grad
    if center_only and beta.dtype == x.dtype:  # x_hat kept apart for the next convolution (_mark_center_split)
        x_hat, batch_mean, inv_std = _training_batch_norm(x, None, None, self.epsilon)
        y = x_hat + beta.reshape(1, -1, 1, 1)
    else:
        x_hat = None
        y, batch_mean, inv_std = _training_batch_norm(x, gamma, beta, self.epsilon)
    with torch.no_grad():
        batch_variance = inv_std.pow(-2).sub_(self.epsilon)  # biased batch variance, as keras.ops.moments
        m = self.momentum
        if in_stateless_scope():  # stateless calls record new values instead of mutating
            self.moving_mean.assign(self.moving_mean * m + batch_mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + batch_variance * (1.0 - m))
        else:  # in place: no temporaries between the activations on the allocator's heap
            self.moving_mean.value.lerp_(batch_mean.to(self.moving_mean.value.dtype), 1.0 - m)
            self.moving_variance.value.lerp_(batch_variance.to(self.moving_variance.value.dtype), 1.0 - m)
    y = keras.ops.cast(y.permute(0, 2, 3, 1), self.compute_dtype)
    if x_hat is not None and y.dtype == beta.dtype:
        _mark_center_split(y, x_hat, beta)
    if y.dtype == torch.float32 and recompute.recording():
        saved = (convert(inputs), batch_mean, inv_std, gamma, beta)
        recompute._register_recipe(y, recompute._Recipe(_batch_norm_output, saved, y))
    return y


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    fused = _take_fused_padding()
    if fused is None:
        return original("max_pool")(inputs, pool_size, strides, padding, data_format)
    # A skipped ZeroPadding2D before this pooling (its input is >= 0, see _schedule): torch's own padding
    # (-inf) then gives the same maximum, and no padded copy is made or kept for the backward pass.
    pool_size = _pair(pool_size)
    strides = pool_size if strides is None else _pair(strides)
    x = spatial_inputs(convert(inputs))
    y = torch.nn.functional.max_pool2d(x, kernel_size=pool_size, stride=strides, padding=fused)
    return y.permute(0, 2, 3, 1)


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    # Non-overlapping 2D average pooling (stride = pool size, no padding: SegFormer's stride-2 map): torch's
    # avg_pool2d keeps its whole input for the backward pass, which needs its shape only.
    x = convert(inputs)
    pool_size = _pair(pool_size)
    if (
        x.ndim != 4
        or padding != "valid"
        or (strides is not None and _pair(strides) != pool_size)
        or standardize_data_format(data_format) != "channels_last"
        or not x.requires_grad
    ):
        return original("average_pool")(inputs, pool_size, strides, padding, data_format)
    return _block_average_pool().apply(x, *pool_size)


def spatial_inputs(inputs):
    """NHWC -> NCHW as a view in channels-last memory (Keras copies to contiguous NCHW for pooling)."""
    if inputs.ndim != 4:
        return original("transpose_spatial_inputs")(inputs)
    x = inputs.permute(0, 3, 1, 2)
    return x if x.is_contiguous(memory_format=channels_last) else x.contiguous(memory_format=channels_last)


def resize_images(self, x, height_factor, width_factor, data_format, interpolation="nearest"):
    x = convert(x)
    if interpolation != "nearest" or data_format != "channels_last" or x.ndim != 4:
        return original("resize_images")(self, x, height_factor, width_factor, data_format, interpolation)
    return _nearest_upsampling().apply(x, int(height_factor), int(width_factor))


def scatter(indices, values, shape):
    indices = convert(indices).long()
    values = convert(values)
    depth = indices.shape[-1]
    out = torch.zeros(tuple(shape), dtype=values.dtype, device=values.device)
    indices = indices.reshape(-1, depth)
    values = values.reshape((-1, *tuple(shape)[depth:]))
    return out.index_put_(tuple(indices.t()), values, accumulate=True)  # duplicates add, as in Keras


# name -> (module, class or None, attribute): what is replaced. Entries this Keras version lacks are skipped.
TARGET_PATHS = {
    "conv": ("keras.src.backend.torch.nn", None, "conv"),
    "moments": ("keras.src.backend.torch.nn", None, "moments"),
    "batch_normalization": ("keras.src.backend.torch.nn", None, "batch_normalization"),
    "max_pool": ("keras.src.backend.torch.nn", None, "max_pool"),
    "average_pool": ("keras.src.backend.torch.nn", None, "average_pool"),
    "transpose_spatial_inputs": ("keras.src.backend.torch.nn", None, "_transpose_spatial_inputs"),
    "scatter": ("keras.src.backend.torch.core", None, "scatter"),
    "bn_call": ("keras.src.layers.normalization.batch_normalization", "BatchNormalization", "call"),
    "resize_images": ("keras.src.layers.reshaping.up_sampling2d", "UpSampling2D", "_resize_images"),
}
REPLACEMENTS = {
    "conv": conv,
    "moments": moments,
    "batch_normalization": batch_normalization,
    "max_pool": max_pool,
    "average_pool": average_pool,
    "transpose_spatial_inputs": spatial_inputs,
    "scatter": scatter,
    "bn_call": bn_call,
    "resize_images": resize_images,
}


def restore_layouts() -> None:
    """Kernel parameters back in Keras' own (HWIO contiguous) memory order."""
    for kernel in list(_RELAID):
        with torch.no_grad():
            kernel.data = kernel.data.contiguous()
    _RELAID.clear()
