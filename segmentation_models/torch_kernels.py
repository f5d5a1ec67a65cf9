"""Faster Keras kernels for the PyTorch backend, installed when segmentation_models is imported.

Keras 3's torch backend runs every channels-last ``Conv2D`` through two full copies of its input
(``permute(...).contiguous()`` to NCHW, then ``.contiguous(channels_last)`` back to the layout oneDNN
wants), and a training-mode ``BatchNormalization`` through about ten separate elementwise and reduction
passes (E[x^2] - E[x]^2 moments, then subtract/multiply/add). Measured on a 2-core CPU, Keras' ResNet-50
at 256x256, batch 8: a third of inference time was those copies.

This module replaces these, all with the same mathematics:

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
- Keras' torch ``Adam``/``AdamW`` step: in place and in chunks, instead of four parameter-sized
  temporaries per step (~400 MB for a Unet-resnet34, which the allocator then keeps);
- ``scatter`` (``keras.ops.scatter``, which Keras' confusion matrix and so ``MeanIoU``/``OneHotMeanIoU``
  use): one ``index_put_(accumulate=True)`` instead of a Python loop over every index (a 256x256 batch of 8
  is 524288 iterations: ~6 s per training step of the CLI's ``mean_iou`` metric);
- the torch trainer's ``train_step``: last step's gradients are released before the forward pass (Keras
  releases them after it, so a parameter-sized set of tensors stays alive through the step's peak);
- a BatchNormalization without scale on an input that needs no gradient (1.0.1's ResNets normalise the image
  so: ``bn_data``), in training: the convolution after it computes ``conv(x_hat) + conv(beta)`` instead of
  ``conv(x_hat + beta)``, so its backward pass makes the input gradient of one beta-filled image instead of the
  whole batch (see :func:`_mark_center_split`; ~65 ms of a 256x256 batch of 8 on 2 cores);

And changes to graph execution: Keras runs a functional model by keeping every intermediate tensor in
a dictionary until the call returns, so an eager (torch) forward pass holds all activations at once, also
in inference. :func:`_run_through_graph` runs the same nodes in the same order and drops each tensor after
its last consumer: inference then holds only the live activations, and training only what autograd saves.
It also fuses a symmetric ``ZeroPadding2D`` into the convolution or max pooling that is its only consumer
(1.0.1's ResNets pad before every 3x3 convolution): the kernel pads internally, so the padded copy is
neither made nor kept for the backward pass (see :func:`_fusable_padding` for the exact conditions). And it
calls built-in layers and this package's stateless ones (float32, or mixed precision in a model of the same
policy) through ``layer.call`` directly when ``Layer.__call__`` would change nothing (see :func:`_direct_call`):
~0.1 ms of Python per layer, a quarter of a batch-1 forward pass; each node's arguments are gathered by a
precomputed filler instead of Keras' tree mapping (see :func:`_argument_filler`). A ReLU whose
input is a fresh tensor with no other use (after BatchNormalization, a convolution, Add or Concatenate)
overwrites it, as ``ReLU(inplace=True)`` does in SMP (see :func:`_fresh_output`). In float32 inference (autograd
off, not training), a Conv2D/DepthwiseConv2D without activation whose only consumer is a BatchNormalization runs
as one convolution with the BN folded into its kernel and bias, cached per variable version (see
:func:`_conv_bn_pairs`): one pass over the activation less, the same result to float32 rounding.

In a training forward pass (float32, autograd on, no saved-tensor hooks of the caller's), the tensors that
autograd would keep but that are a few elementwise passes away from what it keeps anyway are saved as recipes
and recomputed in the backward pass (see :class:`_Recipe`): BatchNormalization outputs, relu/swish/relu6/sigmoid
of them, UpSampling2D and Concatenate of those. Autograd then keeps 56-60% fewer activation bytes in a
Unet-resnet34/efficientnetb0 at 256x256, batch 8 (748 -> 298 MB, 1343 -> 585 MB), and the training peak drops to
SMP's level or below; the recomputation costs 4-7% of a step. On by default; ``SM_TORCH_RECOMPUTE=0`` (read
per call) keeps them. A recomputed tensor may differ in the last bit, so layers whose gradient compares saved
values (a max reduction) keep what they save (see :func:`_takes_recipes`).

Anything outside those fast paths (channels_first, 1D/3D convolutions, masks, renorm, synchronized batch
norm, other axes) goes to Keras' own implementation, and so does everything while ``torch.compile`` traces
(Keras' ``jit_compile=True``). Set ``SM_TORCH_FAST_OPS=0`` before import, or call
:func:`uninstall`, to run Keras' kernels unchanged. Other backends are not touched.
"""
from __future__ import annotations

import functools
import logging
import threading
import weakref

from ._patching import resolve_targets, restore

logger = logging.getLogger("segmentation_models")

_ORIGINAL: dict = {}
_KERNELS: dict = {}  # the installed kernels the graph executor calls itself ("convolve")
# Padding of a skipped ZeroPadding2D that the next convolution/max-pooling kernel applies itself (see _schedule).
_FUSED = threading.local()


def _store_in_torch_order(kernel) -> None:
    """Store a 4D HWIO kernel parameter in (O, H, W, I) memory order (once), so that torch's OIHW channels-last
    view of it is free: no copy per call, none kept for the backward pass; gradients take the same layout, and so
    do mixed-precision casts of it. Shape, values and Keras' variable are unchanged."""
    import torch

    if kernel.ndim == 4 and not kernel.permute(3, 2, 0, 1).is_contiguous(memory_format=torch.channels_last):
        with torch.no_grad():
            kernel.data = kernel.data.permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)


def _take_fused_padding() -> tuple[int, int] | None:
    """The (rows, columns) padding handed over by the graph executor for this kernel call, cleared on read."""
    padding = getattr(_FUSED, "padding", None)
    _FUSED.padding = None
    return padding


def installed() -> bool:
    """True while the fast kernels replace Keras' torch-backend ones."""
    return bool(_ORIGINAL)


def install() -> bool:
    """Replace Keras' torch-backend kernels listed in the module docstring; returns True if installed.

    A no-op on other backends, when already installed, or when this Keras version lacks the functions
    patched (logged at debug level; Keras' own kernels then stay).
    """
    import keras

    if keras.backend.backend() != "torch" or installed():
        return installed()
    try:
        import torch
        from keras.src.backend.torch import nn as torch_nn

        from keras.src.backend.common.stateless_scope import in_stateless_scope

        targets = _targets()
        originals = {name: getattr(owner, attr) for name, (owner, attr) in targets.items()}
        apply_same_padding = torch_nn._apply_same_padding
    except (ImportError, AttributeError) as err:  # pragma: no cover - depends on the Keras version
        logger.debug("segmentation_models: torch fast kernels not installed (%s)", err)
        return False
    if not targets:  # pragma: no cover - depends on the Keras version
        return False

    original_conv = originals.get("conv")
    original_bn_call = originals.get("bn_call")
    convert = torch_nn.convert_to_tensor
    standardize_data_format = torch_nn.backend.standardize_data_format
    channels_last = torch.channels_last

    weight_cache: dict = {}
    bn_cache: dict = {}

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
        return _cached_on_versions(weight_cache, id(kernel), (kernel,),
                                   lambda: kernel.detach().permute(3, 2, 0, 1).contiguous(memory_format=channels_last))

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
            y = original_conv(inputs, kernel, strides, padding, data_format, dilation_rate)
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
                (x, _), (shift, pad) = (apply_same_padding(t, weight.shape[2:], strides, "channels_first", "conv",
                                                           dilation_rate) for t in (x, shift))
            options = dict(stride=strides, padding=pad, dilation=dilation_rate, groups=groups)
            y = torch.nn.functional.conv2d(x, weight, bias=bias, **options).permute(0, 2, 3, 1)
            # Added in the NHWC view: the backward pass then sums the gradient over the batch in memory order
            # (0.7 ms at 8x128x128x64), not over the channels-last NCHW view (17 ms).
            return y.add_(torch.nn.functional.conv2d(shift, weight, **options).permute(0, 2, 3, 1))
        if padding == "same":
            x, pad = apply_same_padding(x, weight.shape[2:], strides, "channels_first", "conv", dilation_rate)
        y = torch.nn.functional.conv2d(x, weight, bias=bias, stride=strides, padding=pad, dilation=dilation_rate,
                                       groups=groups)
        return y.permute(0, 2, 3, 1)

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        return convolve(inputs, kernel, strides, padding, data_format, dilation_rate)

    def moments(x, axes, keepdims=False, synchronized=False):
        if synchronized:
            return originals["moments"](x, axes, keepdims, synchronized)
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
            inv, shift = _cached_on_versions(bn_cache, (*(id(p) for p in params), epsilon, tuple(shape)), params,
                                             factors)
        return torch.addcmul(shift, x, inv)

    def bn_call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm or self.synchronized:
            return original_bn_call(self, inputs, training=training, mask=mask)
        x = convert(inputs)
        if x.ndim != 4 or self.axis not in (3, -1):
            return original_bn_call(self, inputs, training=training, mask=mask)
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
        if y.dtype == torch.float32 and getattr(_RECOMPUTE, "registry", None) is not None:
            _register_recipe(y, _Recipe(_batch_norm_output, (convert(inputs), batch_mean, inv_std, gamma, beta), y))
        return y

    original_max_pool = originals.get("max_pool")

    def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
        fused = _take_fused_padding()
        if fused is None:
            return original_max_pool(inputs, pool_size, strides, padding, data_format)
        # A skipped ZeroPadding2D before this pooling (its input is >= 0, see _schedule): torch's own padding
        # (-inf) then gives the same maximum, and no padded copy is made or kept for the backward pass.
        pool_size = _pair(pool_size)
        strides = pool_size if strides is None else _pair(strides)
        x = spatial_inputs(convert(inputs))
        y = torch.nn.functional.max_pool2d(x, kernel_size=pool_size, stride=strides, padding=fused)
        return y.permute(0, 2, 3, 1)

    original_average_pool = originals.get("average_pool")

    def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
        # Non-overlapping 2D average pooling (stride = pool size, no padding: SegFormer's stride-2 map): torch's
        # avg_pool2d keeps its whole input for the backward pass, which needs its shape only.
        x = convert(inputs)
        pool_size = _pair(pool_size)
        if (x.ndim != 4 or padding != "valid" or (strides is not None and _pair(strides) != pool_size)
                or standardize_data_format(data_format) != "channels_last" or not x.requires_grad):
            return original_average_pool(inputs, pool_size, strides, padding, data_format)
        return _block_average_pool().apply(x, *pool_size)

    original_transpose = originals.get("transpose_spatial_inputs")

    def spatial_inputs(inputs):
        """NHWC -> NCHW as a view in channels-last memory (Keras copies to contiguous NCHW for pooling)."""
        if inputs.ndim != 4:
            return original_transpose(inputs)
        x = inputs.permute(0, 3, 1, 2)
        return x if x.is_contiguous(memory_format=channels_last) else x.contiguous(memory_format=channels_last)

    original_adam = originals.get("adam_update")

    def adam_update(self, grads, variables, learning_rate):
        """Keras' Adam step, in place and in chunks of at most _ADAM_CHUNK elements.

        Keras' own step makes four full-size temporaries per call (m * alpha, sqrt(v), + eps, the quotient):
        4x the parameter memory at once (~400 MB for a Unet-resnet34), which the allocator then keeps. This
        one makes one temporary the size of a chunk; the update is the same to float32 rounding.
        """
        if self.amsgrad or not variables:
            return original_adam(self, grads, variables, learning_rate)
        ops = keras.ops
        params = [v.value for v in variables]
        dtype = params[0].dtype
        step = ops.cast(self.iterations + 1, dtype)
        beta_1_power = ops.power(ops.cast(self.beta_1, dtype), step)
        beta_2_power = ops.power(ops.cast(self.beta_2, dtype), step)
        alpha = ops.cast(learning_rate, dtype) * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m_all = [self._momentums[self._get_variable_index(v)].value for v in variables]
        v_all = [self._velocities[self._get_variable_index(v)].value for v in variables]
        for p, m, v in zip(params, m_all, v_all):
            if m.stride() != p.stride():  # the moments in the parameter's memory layout (see torch_weight)
                m.data = torch.empty_like(p).copy_(m)
                v.data = torch.empty_like(p).copy_(v)
        for chunk in _chunks([p.numel() for p in params], _ADAM_CHUNK):
            p, g = [params[i] for i in chunk], [grads[i] for i in chunk]
            m, v = [m_all[i] for i in chunk], [v_all[i] for i in chunk]
            torch._foreach_mul_(m, self.beta_1)
            torch._foreach_add_(m, g, alpha=1 - self.beta_1)
            torch._foreach_mul_(v, self.beta_2)
            torch._foreach_addcmul_(v, g, g, value=1 - self.beta_2)
            denominator = torch._foreach_sqrt(v)
            torch._foreach_add_(denominator, self.epsilon)
            torch._foreach_div_(denominator, alpha)
            torch._foreach_addcdiv_(p, m, denominator, value=-1.0)  # p -= alpha * m / (sqrt(v) + eps)
            del denominator

    original_resize = originals.get("resize_images")

    def resize_images(self, x, height_factor, width_factor, data_format, interpolation="nearest"):
        x = convert(x)
        if interpolation != "nearest" or data_format != "channels_last" or x.ndim != 4:
            return original_resize(self, x, height_factor, width_factor, data_format, interpolation)
        return _nearest_upsampling().apply(x, int(height_factor), int(width_factor))

    original_run = originals.get("run_through_graph")

    def run_through_graph(self, inputs, operation_fn=lambda op: op, call_fn=None):
        if call_fn is not None:  # symbolic passes (graph checks, output specs): Keras' own
            return original_run(self, inputs, operation_fn=operation_fn, call_fn=call_fn)
        return _run_through_graph(self, original_run, inputs, operation_fn)

    def scatter(indices, values, shape):
        indices = convert(indices).long()
        values = convert(values)
        depth = indices.shape[-1]
        out = torch.zeros(tuple(shape), dtype=values.dtype, device=values.device)
        indices = indices.reshape(-1, depth)
        values = values.reshape((-1, *tuple(shape)[depth:]))
        return out.index_put_(tuple(indices.t()), values, accumulate=True)  # duplicates add, as in Keras

    original_train_step = originals.get("train_step")

    def train_step(self, data):
        """Keras' train step, with the previous step's gradients released before the forward pass.

        Keras calls ``zero_grad()`` after the forward pass, so last step's gradients (the size of the
        parameters, ~100 MB for a Unet-resnet34) stay alive through it, at the peak of the step's memory.
        """
        self.zero_grad()
        return original_train_step(self, data)

    replacements = {"conv": conv, "train_step": train_step, "moments": moments,
                    "batch_normalization": batch_normalization, "scatter": scatter, "bn_call": bn_call,
                    "resize_images": resize_images, "run_through_graph": run_through_graph, "max_pool": max_pool,
                    "average_pool": average_pool,
                    "transpose_spatial_inputs": spatial_inputs, "adam_update": adam_update}
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)

    def outside_compile(name):
        """The replacement in eager runs; Keras' own while torch.compile traces (``jit_compile=True``): the
        compiler fuses that graph itself, and parameter re-layouts or in-place views do not trace."""
        fast, original = replacements[name], originals[name]

        @functools.wraps(fast)
        def run(*args, **kwargs):
            return original(*args, **kwargs) if compiling() else fast(*args, **kwargs)

        return run

    for name, (owner, attr) in targets.items():
        setattr(owner, attr, outside_compile(name))
    _ORIGINAL.update(originals)
    _KERNELS["convolve"] = convolve
    logger.debug("segmentation_models: torch fast kernels installed")
    return True


# name -> (module, class or None, attribute): what is replaced. Entries this Keras version lacks are skipped.
_TARGET_PATHS = {
    "conv": ("keras.src.backend.torch.nn", None, "conv"),
    "moments": ("keras.src.backend.torch.nn", None, "moments"),
    "batch_normalization": ("keras.src.backend.torch.nn", None, "batch_normalization"),
    "max_pool": ("keras.src.backend.torch.nn", None, "max_pool"),
    "average_pool": ("keras.src.backend.torch.nn", None, "average_pool"),
    "transpose_spatial_inputs": ("keras.src.backend.torch.nn", None, "_transpose_spatial_inputs"),
    "scatter": ("keras.src.backend.torch.core", None, "scatter"),
    "bn_call": ("keras.src.layers.normalization.batch_normalization", "BatchNormalization", "call"),
    "resize_images": ("keras.src.layers.reshaping.up_sampling2d", "UpSampling2D", "_resize_images"),
    "run_through_graph": ("keras.src.ops.function", "Function", "_run_through_graph"),
    "adam_update": ("keras.src.backend.torch.optimizers.torch_adam", "Adam", "_parallel_update_step"),
    "train_step": ("keras.src.backend.torch.trainer", "TorchTrainer", "train_step"),
}


def _targets() -> dict:
    """What is replaced and is present in this Keras version: name -> (module or class, attribute)."""
    return resolve_targets(_TARGET_PATHS)


def uninstall() -> None:
    """Put Keras' own torch-backend kernels back."""
    if not installed():
        return
    restore(_TARGET_PATHS, _ORIGINAL)
    _KERNELS.clear()


_SCHEDULES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _schedule(function) -> list | None:
    """The nodes a call executes, in Keras' order, each as ``(node, tensor ids to drop after it, fusion)`` (cached).

    ``fusion`` is None for a plain step, ``"skip"`` for a ZeroPadding2D whose only consumer pads itself,
    ``(padding, pad_node)`` for that consumer (see :func:`_fusable_padding`), ``"relu_"`` for a ReLU
    that may overwrite its input (see :func:`_fresh_output`), and ``"folded"`` for a BatchNormalization that
    inference folds into the convolution before it (see :func:`_conv_bn_pairs`). None when the graph is not the
    plain kind this handles (then Keras' own execution runs).
    """
    try:
        return _SCHEDULES[function]
    except KeyError:
        pass
    except TypeError:  # pragma: no cover - not weak-referenceable
        return None
    try:
        available = {id(x) for x in function.inputs}
        steps, last_use, consumers = [], {}, {}
        for depth in sorted(function._nodes_by_depth, reverse=True):
            for node in function._nodes_by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                if any(id(x) not in available for x in node.input_tensors):
                    continue  # not computable from the inputs: Keras skips it too
                for x in node.input_tensors:
                    last_use[id(x)] = len(steps)
                    consumers.setdefault(id(x), []).append(len(steps))
                available.update(id(x) for x in node.outputs)
                steps.append([node, [], None])
        keep = {id(x) for x in function.outputs}
        for tensor_id, step in last_use.items():
            if tensor_id not in keep:
                steps[step][1].append(tensor_id)
        inputs = {id(x) for x in function.inputs}
        for step in steps:
            node = step[0]
            if len(node.outputs) != 1 or id(node.outputs[0]) in keep:
                continue
            users = consumers.get(id(node.outputs[0]), [])
            if len(users) == 1:
                padding = _fusable_padding(node, steps[users[0]][0])
                if padding is not None:
                    step[2] = "skip"
                    steps[users[0]][2] = (padding, node)
        for step in steps:
            node = step[0]
            if step[2] is None and _is_plain_relu(node.operation) and len(node.input_tensors) == 1:
                source = node.input_tensors[0]
                if (id(source) not in keep and id(source) not in inputs
                        and len(consumers.get(id(source), [])) == 1 and _fresh_output(source)):
                    step[2] = "relu_"
        _FOLDS[function] = _conv_bn_pairs(steps, keep, consumers)
        schedule = [(node, tuple(drop), fusion, _direct_candidate(node)) for node, drop, fusion in steps]
        _FILLERS[function] = [_argument_filler(node.arguments) for node, _, _ in steps]
        _kernels_in_torch_order(steps)
    except AttributeError:  # pragma: no cover - another Keras graph structure
        schedule = None
    _SCHEDULES[function] = schedule
    return schedule


_FOLDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # function -> {id(conv node): BN node}
_FILLERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # function -> [argument filler per step]


def _argument_filler(arguments):
    """A function ``tensor_dict -> (args, kwargs)`` doing what ``arguments.fill_in`` does, for a node whose
    positional arguments are tensors, lists/tuples of tensors or constants and whose keyword arguments hold no
    tensors; ``arguments.fill_in`` itself otherwise.

    Keras records ``mask=None``/``training=None`` among a layer's keyword arguments, which sends ``fill_in`` down
    its general path (two ``tree.map_structure`` passes): ~25 us per node, ~2 ms of a batch-1 PAN-resnet34
    forward on 2 CPU cores.
    """
    from keras import KerasTensor

    if getattr(arguments, "_single_positional_tensor", None) is not None:
        return arguments.fill_in  # Keras' own fast path
    args, kwargs = getattr(arguments, "args", None), getattr(arguments, "kwargs", None)
    if type(args) is not tuple or type(kwargs) is not dict:  # pragma: no cover - another Keras' structure
        return arguments.fill_in
    if any(isinstance(value, (KerasTensor, list, tuple, dict)) for value in kwargs.values()):
        return arguments.fill_in
    plan = []
    for arg in args:
        if isinstance(arg, KerasTensor):
            plan.append((0, id(arg)))
        elif type(arg) in (list, tuple) and all(isinstance(x, KerasTensor) for x in arg):
            plan.append((1, type(arg), tuple(id(x) for x in arg)))
        elif isinstance(arg, (list, tuple, dict, set)):
            return arguments.fill_in
        else:
            plan.append((2, arg))
    plan = tuple(plan)

    def fill(tensor_dict):
        get = tensor_dict.get
        filled = tuple(get(item[1]) if item[0] == 0
                       else item[1](get(i) for i in item[2]) if item[0] == 1
                       else item[1] for item in plan)
        return filled, dict(kwargs)

    return fill



_FOLD_CACHE: dict = {}  # id(conv layer) -> (weak refs, versions, (folded kernel, shift))


def _cached_on_versions(cache: dict, key, tensors, compute):
    """``compute()``, cached under ``key`` while each of ``tensors`` (None entries allowed) is the same object at
    the same version (torch counts in-place writes: Keras' assign, optimizer steps); an entry goes when the first
    tensor is collected."""
    versions = tuple(None if t is None else t._version for t in tensors)
    entry = cache.get(key)
    if (entry is not None and entry[1] == versions
            and all((r is None) if t is None else (r is not None and r() is t) for r, t in zip(entry[0], tensors))):
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
    import torch

    scale = torch.rsqrt(variance + epsilon)
    if gamma is not None:
        scale = scale * gamma
    shift = -mean * scale
    return scale, (shift if beta is None else shift + beta)


def _conv_bn_pairs(steps, keep, consumers) -> dict:
    """Conv2D/DepthwiseConv2D (channels-last, no activation) whose only consumer is a BatchNormalization over
    the last axis: in inference the executor runs them as one convolution with the BN folded into its kernel
    and bias (:func:`_fold_conv_bn`) and marks the BN step ``"folded"``. ``{id(conv node): BN node}``."""
    from keras import layers

    producer = {id(step[0].outputs[0]): step for step in steps if len(step[0].outputs) == 1}
    pairs = {}
    for step in steps:
        bn = step[0]
        layer = bn.operation
        if (type(layer) is not layers.BatchNormalization or step[2] is not None or len(bn.input_tensors) != 1
                or layer.axis not in (-1, 3) or getattr(layer, "renorm", False) or not _direct_candidate(bn)):
            continue
        source = bn.input_tensors[0]
        conv_step = producer.get(id(source))
        if conv_step is None or id(source) in keep or len(consumers.get(id(source), [])) != 1:
            continue
        conv = conv_step[0].operation
        if (type(conv) in (layers.Conv2D, layers.DepthwiseConv2D) and conv.data_format == "channels_last"
                and len(source.shape) == 4 and getattr(conv.activation, "__name__", None) == "linear"
                and _direct_candidate(conv_step[0]) and (conv_step[2] is None or isinstance(conv_step[2], tuple))):
            pairs[id(conv_step[0])] = bn
            step[2] = "folded"
    return pairs


def _folded_factors(conv, bn):
    """(kernel, bias) of ``conv`` followed by ``bn`` in inference, cached per version of their variables:
    kernel * scale and (bias - mean) * scale + beta with scale = gamma / sqrt(moving variance + epsilon); the
    kernel in torch's layout (its HWIO view), so the convolution uses it without a copy."""
    import torch

    variables = [conv.kernel, conv.bias if conv.use_bias else None, bn.gamma if bn.scale else None,
                 bn.beta if bn.center else None, bn.moving_mean, bn.moving_variance]
    tensors = [None if v is None else v.value for v in variables]
    if not all(t is None or isinstance(t, torch.nn.Parameter) for t in tensors):
        return None
    def fold():
        kernel, bias, gamma, beta, mean, variance = tensors
        with torch.no_grad():
            scale, shift = _bn_scale_shift(mean, variance, gamma, beta, bn.epsilon)
            if bias is not None:
                shift = shift + bias * scale
            if type(conv).__name__ == "DepthwiseConv2D":  # (H, W, C, M): output channel c * M + m
                h, w, c, m = kernel.shape
                folded = (kernel * scale.reshape(c, m)).reshape(h, w, 1, c * m)
            else:  # (H, W, I, O)
                folded = kernel * scale
            folded = folded.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last).permute(2, 3, 1, 0)
        return folded, shift

    return _cached_on_versions(_FOLD_CACHE, id(conv), tensors, fold)


def _fold_conv_bn(conv, bn, args, fusion):
    """The output of ``bn(conv(x))`` in inference as one convolution (see :func:`_conv_bn_pairs`); None when this
    call must run the two layers (mixed precision, LoRA, quantization, anything :func:`_direct_call_allowed`
    refuses)."""
    convolve = _KERNELS.get("convolve")
    if (convolve is None or len(args) != 1 or getattr(conv, "lora_enabled", False)
            or conv.compute_dtype != "float32" or bn.compute_dtype != "float32"
            or not _direct_call_allowed(conv, args) or not bn.built):
        return None
    factors = _folded_factors(conv, bn)
    if factors is None:
        return None
    if isinstance(fusion, tuple):
        _FUSED.padding = fusion[0]
    try:
        return convolve(args[0], factors[0], conv.strides, conv.padding, conv.data_format, conv.dilation_rate,
                        bias=factors[1])
    finally:
        _FUSED.padding = None


def _kernels_in_torch_order(steps) -> None:
    """Conv2D kernels stored in torch's order before the first call (:func:`_store_in_torch_order`): under mixed
    precision the convolution only sees a cast copy of the parameter, which then needs no re-layout per call."""
    import torch
    from keras import layers

    if "conv" not in _ORIGINAL:
        return
    for node, *_ in steps:
        if type(node.operation) is layers.Conv2D and node.operation.built:
            kernel = getattr(node.operation.kernel, "_value", None)  # `.value` is a cast copy under autocast
            if isinstance(kernel, torch.nn.Parameter):
                _store_in_torch_order(kernel)


def _fusable_padding(pad_node, consumer) -> tuple[int, int] | None:
    """(rows, columns) when ``consumer`` can apply ``pad_node``'s zero padding inside its own kernel, else None.

    1.0.1's ResNets (and DenseNets) put an explicit ``ZeroPadding2D`` before every 3x3 convolution and before
    the stem's max pooling. On torch each is a full copy of the activation that the next layer also keeps for
    its backward pass; torch's convolution and pooling kernels pad internally at no cost. Fused: a symmetric
    channels-last ``ZeroPadding2D`` whose one consumer is a 'valid' ``Conv2D``/``DepthwiseConv2D`` (exact
    classes, which run one convolution), or a 'valid' ``MaxPooling2D`` whose input is a ReLU output (>= 0, so
    torch's -inf padding gives the same maximum) with padding at most half the pool size.
    """
    from keras import layers

    pad = pad_node.operation
    op = consumer.operation
    if type(pad) is not layers.ZeroPadding2D or pad.data_format != "channels_last":
        return None
    (top, bottom), (left, right) = pad.padding
    if top != bottom or left != right or len(consumer.input_tensors) != 1 or consumer.arguments.kwargs:
        return None
    if getattr(op, "data_format", None) != "channels_last" or getattr(op, "padding", None) != "valid":
        return None
    if type(op) in (layers.Conv2D, layers.DepthwiseConv2D) and "conv" in _ORIGINAL:
        return top, left
    within_pool = type(op) is layers.MaxPooling2D and top <= op.pool_size[0] // 2 and left <= op.pool_size[1] // 2
    if within_pool and "max_pool" in _ORIGINAL and _is_plain_relu(pad_node.input_tensors[0]._keras_history.operation):
        return top, left
    return None


def _is_plain_relu(op) -> bool:
    """Whether ``op`` is a built-in layer computing exactly max(x, 0)."""
    from keras import activations, layers

    return (type(op) is layers.Activation and op.activation is activations.relu) or (
        type(op) is layers.ReLU and op.max_value is None and not op.negative_slope and not op.threshold)


def _fresh_output(tensor) -> bool:
    """Whether ``tensor`` comes from a layer whose output is a new tensor that its backward pass does not use.

    Then a ReLU that is its only consumer may overwrite it (``torch.relu_``, as SMP's and timm's
    ``ReLU(inplace=True)``): one activation-sized allocation fewer per ReLU, and fewer holes between the
    activations that autograd keeps, which the allocator otherwise holds on to. BatchNormalization's
    (fused training kernel: ``torch.native_batch_norm`` keeps its input, not its output; inference: one
    ``addcmul``), Add's, Concatenate's and a Conv2D's/DepthwiseConv2D's without activation (convolution
    keeps its input and kernel) qualify. How a view is overwritten is decided per call (_relu_in_place).
    """
    from keras import activations, layers

    op = tensor._keras_history.operation
    if type(op) is layers.BatchNormalization:
        return "bn_call" in _ORIGINAL and "batch_normalization" in _ORIGINAL
    if type(op) in (layers.Add, layers.Concatenate):
        return True
    return type(op) in (layers.Conv2D, layers.DepthwiseConv2D) and op.activation is activations.linear


_DIRECT_CLASSES: tuple = ()


def _direct_candidate(node) -> bool:
    """Whether ``node`` is a stateless built-in layer that may skip ``Layer.__call__`` (see _direct_call)."""
    global _DIRECT_CLASSES
    if not _DIRECT_CLASSES:
        from keras import layers

        from . import blocks
        from .decoders import common

        _DIRECT_CLASSES = (layers.Conv2D, layers.DepthwiseConv2D, layers.BatchNormalization, layers.Activation,
                           layers.ReLU, layers.Add, layers.Multiply, layers.Concatenate, layers.UpSampling2D,
                           layers.MaxPooling2D, layers.AveragePooling2D, layers.ZeroPadding2D,
                           layers.GlobalAveragePooling2D, layers.Reshape, layers.Dropout,
                           # this package's stateless layers (no weights, masks or training argument)
                           blocks.GridPooling2D, blocks.AdaptiveAveragePooling, blocks.ResizeToReference,
                           blocks.ResizeToMatch, blocks.ResizeByFactor, common.PadToMultiple, common.CropToInput)
    kwargs = node.arguments.kwargs  # Keras records mask=None (and training=None) for layers that take them
    return type(node.operation) in _DIRECT_CLASSES and all(
        key in ("mask", "training") and value is None for key, value in kwargs.items())


def _direct_calls_context():
    """``(training, autocast dtype)`` from the active Keras call context and autocast scope (mixed precision:
    the model's), or False when calls must go through Keras: under a distribution, or outside a call context
    (then Keras' ``__call__`` would resolve things this does not).
    """
    from keras.src.backend.common import global_state
    from keras.src.backend.common.variables import get_autocast_scope

    context = global_state.get_global_attribute("current_call_ctx")
    if context is None:
        return False
    from keras.src.distribution import distribution_lib

    if distribution_lib.distribution() is not None:
        return False
    scope = get_autocast_scope()
    return context.get_value("training"), None if scope is None else scope.dtype


def _direct_call_allowed(layer, args, autocast_dtype=None) -> bool:
    """The per-call conditions: no quantization/remat/activity loss; the autocast scope that ``Layer.__call__``
    would run ``call`` under is the active one (float32 layers, or a mixed-precision layer inside a model of
    the same policy); plain inputs already in the layer's input dtype (else Keras casts them)."""
    import torch

    if (getattr(layer, "quantization_mode", None) is not None or layer._remat_mode
            or layer.activity_regularizer is not None or not layer.built):
        return False
    compute = layer.compute_dtype
    if autocast_dtype is None:
        if compute != layer.variable_dtype:
            return False
    elif not (layer.autocast and compute == autocast_dtype):
        return False
    want = getattr(torch, layer.input_dtype, None)
    tensors = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
    return all(type(x) is torch.Tensor and x.dtype is want and getattr(x, "_keras_mask", None) is None
               for x in tensors)


def _direct_call(layer, training):
    """``layer.call`` with the training flag Keras would resolve, without ``Layer.__call__``'s bookkeeping.

    For the built-in layers of :func:`_direct_candidate` called eagerly on tensors of their input dtype
    without masks, under the autocast scope they would get anyway (see :func:`_direct_call_allowed`),
    ``Layer.__call__`` (input conversion, input spec, build, call context, masks, autocast, distribution,
    activity regularizer) changes nothing but costs ~0.1 ms per layer: ~20 ms of a 65 ms batch-1 forward
    of a Unet-resnet34 at 256x256 on 2 cores.
    """
    if training is not None and layer._call_has_training_arg:
        return lambda *args, **kwargs: layer.call(*args, **{**kwargs, "training": training})
    return layer.call


def _relu_in_place(args, layer, direct, training):
    """The output of a ReLU step marked ``"relu_"`` by :func:`_schedule`, its input overwritten; None when this
    call must run the layer instead.

    The fast kernels return channels-last views (``base.permute(0, 2, 3, 1)``). Under autograd an in-place
    op on a view makes the backward pass copy the whole base gradient twice, so the ReLU overwrites the base
    and a new view of it is returned.
    """
    if not direct or training is False or not _direct_call_allowed(layer, args, training[1]):
        return None
    import torch

    x = args[0]
    base = x._base
    if base is None or not (x.requires_grad and torch.is_grad_enabled()):
        return torch.relu_(x)
    if base.ndim == 4 and x.storage_offset() == base.storage_offset():
        view = base.permute(0, 2, 3, 1)
        if x.shape == view.shape and x.stride() == view.stride():
            return torch.relu_(base).permute(0, 2, 3, 1)
    return None


# Training forward passes: BatchNormalization outputs (and activations of them) that autograd would keep are saved
# as recipes and recomputed in the backward pass (see _Recipe). {storage data_ptr: (weakref, version, recipe)}.
_RECOMPUTE = threading.local()


class _Recipe:
    """How to recompute, in the backward pass, a float32 tensor that autograd would keep from a training forward
    pass: ``function(*args)``, each argument a tensor or another recipe.

    Autograd keeps the input of each BatchNormalization (for its own gradient) and also the tensors after it:
    the ReLU's output (for the ReLU's gradient) and the same tensor again as the next convolution's input (for
    the kernel gradient), or for swish its input and output; in a Unet decoder, the convolution's input that
    upsamples and concatenates such tensors. Each is a few elementwise passes away from the BN inputs that are
    kept anyway (``addcmul`` with this step's batch statistics, an activation, a nearest upsampling, a
    concatenation). Saved as recipes, they take no memory between the forward and the backward pass, which
    lowers the peak of a training step. A recipe's tensor is computed once, when the first saved view of it is
    unpacked, and shared by the others until the last is released (a recipe inside another one is computed
    again rather than kept that long); float32 rounding may differ from the forward pass in the last bit (fused
    multiply-add), nothing else, so only layers whose gradient is continuous in what they save get recipes
    (:func:`_takes_recipes`).
    """

    __slots__ = ("function", "args", "in_place", "shape", "stride", "dtype", "device", "value", "__weakref__")

    def __init__(self, function, args: tuple, like, in_place=None):
        self.function, self.args, self.in_place = function, args, in_place  # in_place: overwrites one fresh input
        self.shape, self.stride, self.dtype, self.device = like.shape, like.stride(), like.dtype, like.device
        self.value = None

    def compute(self, keep: bool = True):
        """The tensor, in the memory layout of the tensor it stands for; computed without autograd, kept while
        the recipe lives."""
        if self.value is not None:
            return self.value
        import torch

        with torch.no_grad():
            args = self.args
            if self.in_place is not None and type(args[0]) is _Recipe and args[0].value is None:
                value = self.in_place(args[0].compute(keep=False))  # a fresh tensor, used by nothing else
            else:
                value = self.function(*(a.compute(keep=False) if type(a) is _Recipe else a for a in args))
            if not _same_layout(value, self.stride):
                value = torch.empty_strided(self.shape, self.stride, dtype=value.dtype, device=value.device).copy_(value)
        if keep:
            self.value = value
        return value


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
    import torch

    split = getattr(inputs, "_sm_center_split", None)
    if split is None or split[2] != inputs._version or not torch.is_grad_enabled():
        return None
    return split[:2]


def _dense_strides(shape, stride) -> bool:
    """Whether a tensor of this shape and stride covers its memory exactly once (any order of the axes)."""
    expected = 1
    for size, step in sorted(zip(shape, stride), key=lambda pair: pair[1]):
        if size == 1:
            continue
        if step != expected:
            return False
        expected *= size
    return True


def _same_layout(tensor, stride) -> bool:
    """Whether ``tensor`` has ``stride`` on every axis longer than 1 (and starts its memory)."""
    return tensor.storage_offset() == 0 and all(
        size == 1 or a == b for size, a, b in zip(tensor.shape, tensor.stride(), stride))


def _batch_norm_output(x, mean, inv_std, gamma, beta):
    """What ``torch.native_batch_norm`` in training returns for a channels-last ``x``, from its saved statistics."""
    import torch

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
    import torch

    if x.requires_grad or not 1 < x.shape[1] < 8 or x.dtype != torch.float32:
        return torch.native_batch_norm(x, gamma, beta, None, None, True, 0.0, epsilon)
    with torch.no_grad():
        _, mean, inv_std = torch.native_batch_norm(x.contiguous(), None, None, None, None, True, 0.0, epsilon)
    y = _batch_norm_output(x.permute(0, 2, 3, 1), mean, inv_std, gamma, beta)
    return y.permute(0, 3, 1, 2), mean, inv_std


def _recompute_activations() -> dict:
    """{Keras activation function: (the torch function it runs, its in-place form)} that :class:`_Recipe` can
    recompute."""
    import torch
    from keras import activations

    functional = torch.nn.functional
    return {activations.relu: (torch.relu, torch.relu_),
            activations.silu: (functional.silu, functools.partial(functional.silu, inplace=True)),
            activations.relu6: (functional.relu6, functools.partial(functional.relu6, inplace=True)),
            activations.sigmoid: (torch.sigmoid, torch.sigmoid_)}


_RECIPE_SAFE_CLASSES: tuple = ()


def _takes_recipes(op) -> bool:
    """Whether ``op``'s backward pass may use recomputed versions of the tensors it saves.

    A recomputed tensor can differ from the forward pass's in the last bit (see :class:`_Recipe`). That is
    harmless for a gradient that depends on the saved values continuously (convolutions, products,
    normalizations, activations, resizes, average pools), but not for one that compares them with a saved
    result: a max reduction (GlobalMaxPooling2D, GridPooling2D(pooling="max"), a user's ``ops.max``) routes
    its gradient to the inputs equal to the saved maximum, and with none equal it divides by zero (NaN
    weights after one step). So only Keras layers known to be continuous, nested functional models (their
    layers are checked one by one) and this package's layers that declare ``takes_recipes`` qualify; every
    other layer runs with the tensors it saves kept as they are (see _run_through_graph).
    """
    global _RECIPE_SAFE_CLASSES
    from keras import layers

    if not _RECIPE_SAFE_CLASSES:
        from keras.src.models.functional import Functional

        _RECIPE_SAFE_CLASSES = (
            layers.Conv1D, layers.Conv2D, layers.Conv3D, layers.DepthwiseConv2D, layers.SeparableConv2D,
            layers.Conv2DTranspose, layers.Dense, layers.EinsumDense, layers.BatchNormalization,
            layers.LayerNormalization, layers.GroupNormalization, layers.ReLU, layers.Softmax, layers.Add,
            layers.Subtract, layers.Multiply, layers.Average, layers.Concatenate, layers.UpSampling2D,
            layers.MaxPooling2D, layers.AveragePooling2D, layers.GlobalAveragePooling2D, layers.ZeroPadding2D,
            layers.Cropping2D, layers.Reshape, layers.Permute, layers.Flatten, layers.Dropout,
            layers.SpatialDropout2D, layers.Identity, layers.Resizing, Functional)  # MaxPooling2D: by indices
    kind = type(op)
    if kind is layers.Activation:  # the built-in activations; a function of the user's may reduce
        return getattr(op.activation, "__module__", "").startswith("keras.")
    return kind in _RECIPE_SAFE_CLASSES or getattr(op, "takes_recipes", False) is True


def _keep_saved(tensor):
    """saved_tensors_hooks pack/unpack that keeps a tensor as it is (above the recompute scope's hooks)."""
    return tensor


def _keeping_saved(call):
    """``call`` with the tensors that autograd saves during it kept as they are (not as recipes)."""
    import torch

    def keeping(*args, **kwargs):
        with torch.autograd.graph.saved_tensors_hooks(_keep_saved, _keep_saved):
            return call(*args, **kwargs)

    return keeping


def _register_recipe(tensor, recipe, version: int | None = None) -> None:
    """Save ``tensor`` as ``recipe`` wherever autograd keeps it during this forward pass, at its current version
    (or at ``version``: what an in-place step will make it; the step's own saved result is packed then)."""
    registry = getattr(_RECOMPUTE, "registry", None)
    if registry is None or recipe is None:
        return
    storage = tensor.untyped_storage()
    if (tensor.storage_offset() != 0 or tensor.shape != recipe.shape or not _dense_strides(tensor.shape, tensor.stride())
            or storage.nbytes() != tensor.numel() * tensor.element_size()):
        return  # only a tensor that is its whole storage, so that every view of the storage is one of it
    owner = tensor if tensor._base is None else tensor._base
    key = storage.data_ptr()
    entry = registry.get(key)
    if entry is None or entry[0]() is not owner:
        entry = registry[key] = (weakref.ref(owner), {})
    entry[1][tensor._version if version is None else version] = recipe


def _registered_recipe(tensor):
    """The recipe of ``tensor`` at its current version, else None."""
    registry = getattr(_RECOMPUTE, "registry", None)
    if not registry:
        return None
    entry = registry.get(tensor.untyped_storage().data_ptr())
    if entry is None or entry[0]() is None:
        return None
    recipe = entry[1].get(tensor._version)
    return recipe if recipe is not None and tensor.dtype == recipe.dtype and tensor.device == recipe.device else None


def _forget_recipe(tensor, version: int) -> None:
    """Drop what :func:`_register_recipe` recorded for ``tensor`` at ``version``."""
    entry = _RECOMPUTE.registry.get(tensor.untyped_storage().data_ptr())
    if entry is not None:
        entry[1].pop(version, None)


def _pack_saved(tensor):
    """saved_tensors_hooks pack: a registered tensor (or a view of one) as (recipe, its view), others as they are."""
    recipe = _registered_recipe(tensor)
    if recipe is None:
        return tensor
    return recipe, tuple(tensor.shape), tensor.stride(), tensor.storage_offset()


def _unpack_saved(packed):
    if not isinstance(packed, tuple):
        return packed
    recipe, shape, stride, offset = packed
    return recipe.compute().as_strided(shape, stride, offset)


def _step_recipe(op, args, outputs):
    """The recipe of a step's float32 output, when it is a recomputable function of recipes (see
    :class:`_Recipe`): an activation (:func:`_recompute_activations`) or a Concatenate of registered tensors,
    an upsampling (UpSampling2D, ResizeByFactor) of a registered tensor or of any other (then kept: a quarter
    of the output at factor 2)."""
    import torch
    from keras import layers

    from .blocks import ResizeByFactor

    if not args or type(outputs) is not torch.Tensor or outputs.dtype != torch.float32 or not all(
            type(a) is torch.Tensor for a in (args[0] if type(op) is layers.Concatenate else args)):
        return None
    kind = type(op)
    if kind is layers.Concatenate and len(args) == 1:
        sources = [_registered_recipe(a) for a in args[0]]
        if all(sources):
            return _Recipe(lambda *parts: op.call(list(parts)), tuple(sources), outputs)
        return None
    if len(args) != 1:
        return None
    if kind is layers.UpSampling2D or kind is ResizeByFactor:
        return _Recipe(op.call, (_registered_recipe(args[0]) or args[0],), outputs)
    functions = (_RECOMPUTE.activations.get(op.activation) if kind is layers.Activation
                 else _RECOMPUTE.activations[_RECOMPUTE.relu] if _is_plain_relu(op) else None)
    source = None if functions is None else _registered_recipe(args[0])
    return None if source is None else _Recipe(functions[0], (source,), outputs, in_place=functions[1])


def _recompute_scope(training):
    """A saved_tensors_hooks context that saves registered tensors as recipes (see :class:`_Recipe`), for the
    outermost training forward pass with autograd on, outside any mixed-precision autocast and any saved-tensor
    hooks of the caller's, unless ``SM_TORCH_RECOMPUTE=0`` (read per call); None otherwise."""
    import torch

    from .allocator import switched_on

    if (training is False or not training[0] or training[1] is not None or not torch.is_grad_enabled()
            or getattr(_RECOMPUTE, "registry", None) is not None or not switched_on("SM_TORCH_RECOMPUTE", default="1")):
        return None
    autograd = torch._C._autograd
    try:  # hooks of the caller's (torch.autograd.graph.save_on_cpu, checkpointing) are left to work alone
        if autograd._top_saved_tensors_default_hooks(False) is not None or not autograd._saved_tensors_hooks_is_enabled():
            return None
    except (AttributeError, TypeError):  # pragma: no cover - another torch version: keep everything
        return None
    if not hasattr(_RECOMPUTE, "activations"):
        from keras import activations

        _RECOMPUTE.activations = _recompute_activations()
        _RECOMPUTE.relu = activations.relu
    return torch.autograd.graph.saved_tensors_hooks(_pack_saved, _unpack_saved)



def bytes_kept_for_backward(call, recompute: bool = True) -> int:
    """Bytes of the distinct storages that autograd keeps for the backward pass of ``call()`` (a training forward
    pass through this module's graph executor; parameters included), with BatchNormalization outputs saved as
    recipes (``recompute``, the default) or kept. A diagnostic (benchmarks/ab.py, the tests); the output is
    discarded."""
    import os

    kept, pack = {}, _pack_saved
    flag = os.environ.get("SM_TORCH_RECOMPUTE")

    def counting_pack(tensor):
        packed = pack(tensor) if recompute else tensor
        if type(packed) is not tuple:
            storage = tensor.untyped_storage()
            kept[storage.data_ptr()] = storage.nbytes()
        return packed

    globals()["_pack_saved"] = counting_pack  # what the recompute scope opens with, looked up per call
    os.environ["SM_TORCH_RECOMPUTE"] = "1"
    try:
        call()
    finally:
        globals()["_pack_saved"] = pack
        if flag is None:
            os.environ.pop("SM_TORCH_RECOMPUTE")
        else:
            os.environ["SM_TORCH_RECOMPUTE"] = flag
    return sum(kept.values())

def _run_through_graph(function, original, inputs, operation_fn):
    """Keras' ``Function._run_through_graph`` (no ``call_fn``), dropping each tensor after its last use."""
    import torch
    from keras import tree

    schedule = _schedule(function)
    if schedule is None:
        recording = getattr(_RECOMPUTE, "registry", None) is not None  # Keras' executor: its layers go unchecked
        return (_keeping_saved(original) if recording else original)(function, inputs, operation_fn=operation_fn)
    tensor_dict = {id(x): y for x, y in zip(function.inputs, tree.flatten(inputs))}
    lookup = getattr(function, "_get_operation_for_node", None)

    def operation(node):
        return operation_fn(lookup(node) if lookup is not None else node.operation)

    training = _direct_calls_context()
    fillers = _FILLERS[function]  # made with the schedule
    folds = _FOLDS.get(function)
    if folds and not (training is not False and not training[0] and training[1] is None
                      and not torch.is_grad_enabled()):
        folds = None  # BN folding: inference on float32 only
    folded = set()
    scope = _recompute_scope(training)
    if scope is not None:  # the outermost training forward pass: BN outputs saved as recipes
        _RECOMPUTE.registry = {}
        scope.__enter__()
    recording = getattr(_RECOMPUTE, "registry", None) is not None
    try:
        for (node, drop, fusion, direct), fill in zip(schedule, fillers):
            args, kwargs = fill(tensor_dict)
            pending = None
            if recording and fusion == "relu_" and type(args[0]) is torch.Tensor:
                # relu_ saves its result at the input's next version: what it will be is registered first
                pending = args[0]._version + 1
                _register_recipe(args[0], _step_recipe(node.operation, args, args[0]), version=pending)
            if fusion == "skip":  # the consumer pads inside its kernel: pass the unpadded tensor on
                outputs = args[0]
            elif fusion == "relu_" and (overwritten := _relu_in_place(args, node.operation, direct, training)) is not None:
                outputs = overwritten  # the input's only use (see _fresh_output)
            elif fusion == "folded" and id(node.input_tensors[0]) in folded:
                outputs = args[0]  # already normalized by the folded convolution
            elif (folds and id(node) in folds
                  and (result := _fold_conv_bn(node.operation, folds[id(node)].operation, args, fusion)) is not None):
                outputs = result
                folded.add(id(node.outputs[0]))
            else:
                if direct and training is not False and _direct_call_allowed(node.operation, args, training[1]):
                    call = _direct_call(node.operation, training[0])
                else:
                    call = operation(node)
                if recording and not _takes_recipes(node.operation):
                    call = _keeping_saved(call)
                if not isinstance(fusion, tuple):
                    outputs = call(*args, **kwargs)
                else:
                    _FUSED.padding = fusion[0]
                    try:
                        outputs = call(*args, **kwargs)
                    finally:
                        missed = _take_fused_padding() is not None
                    if missed:  # pragma: no cover - the layer did not reach a fused kernel: pad for real and rerun
                        outputs = operation(node)(operation(fusion[1])(args[0]), **kwargs)
            if pending is not None and args[0]._version != pending:
                _forget_recipe(args[0], pending)  # not overwritten after all (the ReLU ran as a layer)
                pending = None
            if recording and pending is None:
                _register_recipe(outputs, _step_recipe(node.operation, args, outputs))
            del args, kwargs
            for x, y in zip(node.outputs, tree.flatten(outputs)):
                tensor_dict[id(x)] = y
            del outputs
            for tensor_id in drop:
                tensor_dict.pop(tensor_id, None)
    finally:
        if scope is not None:
            scope.__exit__(None, None, None)
            _RECOMPUTE.registry = None
    missing = [i for i, x in enumerate(function.outputs) if id(x) not in tensor_dict]
    if missing:  # let Keras raise its own error message
        return original(function, inputs, operation_fn=operation_fn)
    return tree.pack_sequence_as(function._outputs_struct, [tensor_dict[id(x)] for x in function.outputs])


_ADAM_CHUNK = 1 << 22  # elements (16 MB of float32) per in-place Adam pass


def _chunks(sizes: list[int], limit: int) -> list[list[int]]:
    """Consecutive index groups whose sizes add up to at most ``limit`` (a larger single item: alone)."""
    groups, current, total = [], [], 0
    for i, size in enumerate(sizes):
        if current and total + size > limit:
            groups.append(current)
            current, total = [], 0
        current.append(i)
        total += size
    if current:
        groups.append(current)
    return groups


@functools.lru_cache(maxsize=None)
def _nearest_upsampling():
    """Nearest upsampling of an NHWC tensor by integer factors, as a ``torch.autograd.Function``.

    Forward: torch's ``interpolate`` on the channels-last view (the same values as Keras' two ``repeat``s).
    Backward: the sum of the ``fh * fw`` gradient positions of each input pixel, as views and adds in NHWC.
    torch's own backward first copies the gradient to contiguous NCHW, which for a Unet decoder's upsampling
    (its gradient is a channel slice of the Concatenate's) is a full transpose: 73 ms against 3 ms for a
    (8, 64, 64, 64) input on 2 cores.
    """
    import torch

    class NearestUpsampling(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, fh, fw):
            ctx.factors = (fh, fw)
            y = torch.nn.functional.interpolate(x.permute(0, 3, 1, 2), scale_factor=(float(fh), float(fw)),
                                                mode="nearest")
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


@functools.lru_cache(maxsize=None)
def _block_average_pool():
    """Non-overlapping average pooling of an NHWC tensor (stride = pool size, no padding), as a
    ``torch.autograd.Function`` that keeps only the input's shape for the backward pass (torch's avg_pool2d
    keeps the input itself: SegFormer's 256-channel stride-2 map, 134 MB at 256x256, batch 8).

    Forward: torch's ``avg_pool2d`` on the channels-last view. Backward: each output gradient / (fh * fw) spread
    over its block (zeros on the rows and columns that pooling drops when a size is not divisible).
    """
    import torch

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


def install_from_env() -> bool:
    """Install unless ``SM_TORCH_FAST_OPS`` is set to 0/false/no/off."""
    from .allocator import switched_on

    if not switched_on("SM_TORCH_FAST_OPS"):
        return False
    return install()
