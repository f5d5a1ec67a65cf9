"""Faster Keras kernels for the PyTorch backend, installed when segmentation_models is imported.

Keras 3's torch backend runs every channels-last ``Conv2D`` through two full copies of its input
(``permute(...).contiguous()`` to NCHW, then ``.contiguous(channels_last)`` back to the layout oneDNN
wants), and a training-mode ``BatchNormalization`` through about ten separate elementwise and reduction
passes (E[x^2] - E[x]^2 moments, then subtract/multiply/add). Measured on a 2-core CPU, Keras' ResNet-50
at 256x256, batch 8: a third of inference time was those copies.

This module replaces three things, all with the same mathematics:

- ``conv`` (also used by depthwise and separable convolutions): a channels-last input is handed to
  ``torch.nn.functional.conv2d`` as a zero-copy NCHW view in channels-last memory, and the output is
  viewed back as NHWC, so no activation is copied; without autograd (inference) the kernel in torch's
  layout is cached per weight tensor and version, so batch-1 calls do not copy every weight each time;
- ``moments``: one ``torch.var_mean`` pass (also more accurate than E[x^2] - E[x]^2);
- ``batch_normalization``: one ``addcmul`` pass over x (x * scale' + shift');
- ``keras.layers.UpSampling2D`` with nearest interpolation (4D channels-last): one
  ``torch.nn.functional.interpolate`` kernel instead of two ``repeat`` copies;
- ``keras.layers.BatchNormalization`` in training mode on 4D channels-last inputs: one fused
  ``torch.native_batch_norm`` forward and backward; the moving statistics get the same update as in
  Keras (biased batch variance, ``momentum``).

- ``scatter`` (``keras.ops.scatter``, which Keras' confusion matrix and so ``MeanIoU``/``OneHotMeanIoU``
  use): one ``index_put_(accumulate=True)`` instead of a Python loop over every index (a 256x256 batch of 8
  is 524288 iterations: ~6 s per training step of the CLI's ``mean_iou`` metric);

And one change to graph execution: Keras runs a functional model by keeping every intermediate tensor in
a dictionary until the call returns, so an eager (torch) forward pass holds all activations at once, also
in inference. :func:`_run_through_graph` runs the same nodes in the same order and drops each tensor after
its last consumer: inference then holds only the live activations, and training only what autograd saves.

Anything outside those fast paths (channels_first, 1D/3D convolutions, masks, renorm, synchronized batch
norm, other axes) goes to Keras' own implementation. Set ``SM_TORCH_FAST_OPS=0`` before import, or call
:func:`uninstall`, to run Keras' kernels unchanged. Other backends are not touched.
"""
from __future__ import annotations

import logging
import os
import weakref

logger = logging.getLogger("segmentation_models")

_ORIGINAL: dict = {}


def _truthy(value: str | None) -> bool:
    return str(value).strip().lower() not in {"0", "false", "no", "off", ""}


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

        targets = _targets()
        originals = {name: getattr(owner, attr) for name, (owner, attr) in targets.items()}
        apply_same_padding = torch_nn._apply_same_padding
    except (ImportError, AttributeError) as err:  # pragma: no cover - depends on the Keras version
        logger.debug("segmentation_models: torch fast kernels not installed (%s)", err)
        return False

    original_conv = originals["conv"]
    original_bn_call = originals["bn_call"]
    convert = torch_nn.convert_to_tensor
    standardize_data_format = torch_nn.backend.standardize_data_format
    channels_last = torch.channels_last

    weight_cache: dict = {}

    def torch_weight(kernel):
        """HWIO kernel -> OIHW channels-last weight; cached (per tensor and version) when autograd is off."""
        if torch.is_grad_enabled() and kernel.requires_grad:
            return kernel.permute(3, 2, 0, 1).contiguous(memory_format=channels_last)
        key = id(kernel)
        entry = weight_cache.get(key)
        if entry is not None and entry[0]() is kernel and entry[1] == kernel._version:
            return entry[2]
        weight = kernel.detach().permute(3, 2, 0, 1).contiguous(memory_format=channels_last)
        try:
            ref = weakref.ref(kernel, lambda _, key=key: weight_cache.pop(key, None))
        except TypeError:  # pragma: no cover - tensors without weak references
            return weight
        weight_cache[key] = (ref, kernel._version, weight)
        return weight

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        inputs = convert(inputs)
        kernel = convert(kernel)
        if inputs.ndim != 4 or standardize_data_format(data_format) != "channels_last":
            return original_conv(inputs, kernel, strides, padding, data_format, dilation_rate)
        strides = _pair(strides)
        dilation_rate = _pair(dilation_rate)
        x = inputs.permute(0, 3, 1, 2)  # NCHW view of NHWC memory = channels_last: no copy
        if not x.is_contiguous(memory_format=channels_last):
            x = x.contiguous(memory_format=channels_last)
        weight = torch_weight(kernel)
        groups = x.shape[1] // weight.shape[1]
        if x.shape[1] != groups * weight.shape[1]:
            return original_conv(inputs, kernel, strides, padding, data_format, dilation_rate)
        pad = 0
        if padding == "same":
            x, pad = apply_same_padding(x, weight.shape[2:], strides, "channels_first", "conv", dilation_rate)
        y = torch.nn.functional.conv2d(x, weight, stride=strides, padding=pad, dilation=dilation_rate, groups=groups)
        return y.permute(0, 2, 3, 1)

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
        mean = convert(mean)
        inv = torch.rsqrt(convert(variance) + epsilon)
        if scale is not None:
            inv = inv * convert(scale)
        shift = -mean * inv
        if offset is not None:
            shift = shift + convert(offset)
        shape = [1] * x.ndim
        shape[axis] = mean.shape[0]
        return torch.addcmul(shift.reshape(shape), x, inv.reshape(shape))

    def bn_call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm or self.synchronized:
            return original_bn_call(self, inputs, training=training, mask=mask)
        x = convert(inputs)
        if x.ndim != 4 or self.axis not in (3, -1):
            return original_bn_call(self, inputs, training=training, mask=mask)
        if x.dtype in (torch.float16, torch.bfloat16):  # statistics in float32, as Keras does
            x = x.float()
        x = x.permute(0, 3, 1, 2)  # NCHW view of NHWC memory (channels_last): no copy
        gamma = convert(self.gamma).to(x.dtype) if self.scale else None
        beta = convert(self.beta).to(x.dtype) if self.center else None
        y, batch_mean, inv_std = torch.native_batch_norm(x, gamma, beta, None, None, True, 0.0, self.epsilon)
        with torch.no_grad():
            batch_variance = inv_std.pow(-2) - self.epsilon  # biased batch variance, as keras.ops.moments
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + batch_mean * (1.0 - m))
            self.moving_variance.assign(
                self.moving_variance * m + batch_variance * (1.0 - m)
            )
        return keras.ops.cast(y.permute(0, 2, 3, 1), self.compute_dtype)

    original_resize = originals["resize_images"]

    def resize_images(self, x, height_factor, width_factor, data_format, interpolation="nearest"):
        x = convert(x)
        if interpolation != "nearest" or data_format != "channels_last" or x.ndim != 4:
            return original_resize(self, x, height_factor, width_factor, data_format, interpolation)
        y = torch.nn.functional.interpolate(
            x.permute(0, 3, 1, 2), scale_factor=(float(height_factor), float(width_factor)), mode="nearest"
        )  # integer factors: the same values as Keras' two `repeat`s
        return y.permute(0, 2, 3, 1)

    original_run = originals["run_through_graph"]

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

    replacements = {"conv": conv, "moments": moments, "batch_normalization": batch_normalization,
                    "scatter": scatter, "bn_call": bn_call, "resize_images": resize_images,
                    "run_through_graph": run_through_graph}
    for name, (owner, attr) in targets.items():
        setattr(owner, attr, replacements[name])
    _ORIGINAL.update(originals)
    logger.debug("segmentation_models: torch fast kernels installed")
    return True


def _targets() -> dict:
    """What is replaced: name -> (module or class, attribute)."""
    from keras.src.backend.torch import core as torch_core
    from keras.src.backend.torch import nn as torch_nn
    from keras.src.layers.normalization.batch_normalization import BatchNormalization
    from keras.src.layers.reshaping.up_sampling2d import UpSampling2D
    from keras.src.ops.function import Function

    return {"conv": (torch_nn, "conv"), "moments": (torch_nn, "moments"),
            "batch_normalization": (torch_nn, "batch_normalization"), "scatter": (torch_core, "scatter"),
            "bn_call": (BatchNormalization, "call"), "resize_images": (UpSampling2D, "_resize_images"),
            "run_through_graph": (Function, "_run_through_graph")}


def uninstall() -> None:
    """Put Keras' own torch-backend kernels back."""
    if not installed():
        return
    for name, (owner, attr) in _targets().items():
        setattr(owner, attr, _ORIGINAL[name])
    _ORIGINAL.clear()


_SCHEDULES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _schedule(function) -> list | None:
    """The nodes a call executes, in Keras' order, each with the tensor ids to drop after it (cached).

    None when the graph is not the plain kind this handles (then Keras' own execution runs).
    """
    try:
        return _SCHEDULES[function]
    except KeyError:
        pass
    except TypeError:  # pragma: no cover - not weak-referenceable
        return None
    try:
        available = {id(x) for x in function.inputs}
        steps, last_use = [], {}
        for depth in sorted(function._nodes_by_depth, reverse=True):
            for node in function._nodes_by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                if any(id(x) not in available for x in node.input_tensors):
                    continue  # not computable from the inputs: Keras skips it too
                for x in node.input_tensors:
                    last_use[id(x)] = len(steps)
                available.update(id(x) for x in node.outputs)
                steps.append([node, []])
        keep = {id(x) for x in function.outputs}
        for tensor_id, step in last_use.items():
            if tensor_id not in keep:
                steps[step][1].append(tensor_id)
        schedule = [(node, tuple(drop)) for node, drop in steps]
    except AttributeError:  # pragma: no cover - another Keras graph structure
        schedule = None
    _SCHEDULES[function] = schedule
    return schedule


def _run_through_graph(function, original, inputs, operation_fn):
    """Keras' ``Function._run_through_graph`` (no ``call_fn``), dropping each tensor after its last use."""
    from keras import tree

    schedule = _schedule(function)
    if schedule is None:
        return original(function, inputs, operation_fn=operation_fn)
    tensor_dict = {id(x): y for x, y in zip(function.inputs, tree.flatten(inputs))}
    lookup = getattr(function, "_get_operation_for_node", None)
    for node, drop in schedule:
        args, kwargs = node.arguments.fill_in(tensor_dict)
        op = operation_fn(lookup(node) if lookup is not None else node.operation)
        outputs = op(*args, **kwargs)
        del args, kwargs
        for x, y in zip(node.outputs, tree.flatten(outputs)):
            tensor_dict[id(x)] = y
        del outputs
        for tensor_id in drop:
            tensor_dict.pop(tensor_id, None)
    missing = [i for i, x in enumerate(function.outputs) if id(x) not in tensor_dict]
    if missing:  # let Keras raise its own error message
        return original(function, inputs, operation_fn=operation_fn)
    return tree.pack_sequence_as(function._outputs_struct, [tensor_dict[id(x)] for x in function.outputs])


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def install_from_env() -> bool:
    """Install unless ``SM_TORCH_FAST_OPS`` is set to 0/false/no/off."""
    if not _truthy(os.environ.get("SM_TORCH_FAST_OPS", "1")):
        return False
    return install()
