"""FLOPs per image of a built model: multiply-adds of convolution and dense layers, times two.

Bias additions, batch normalisation, activations, pooling, resizing and element-wise ops are not counted
(they are memory-bound and small next to the convolutions). The counters work on Keras 3 models (ours and
segmentation_models 1.0.1 running on tf.keras = Keras 3) and on torch modules (SMP), so every contender's
count comes from its own graph.
"""

from __future__ import annotations

import math


def _prod(values) -> int:
    return int(math.prod(int(v) for v in values))


def _spatial_and_channels(shape, data_format: str):
    """(spatial dims, channels) of a batched shape."""
    shape = tuple(shape)[1:]
    if data_format == "channels_first":
        return shape[1:], shape[0]
    return shape[:-1], shape[-1]


def keras_layer_macs(layer) -> int:
    """Multiply-adds per image of one Keras layer (0 for layers that are not conv/dense)."""
    kind = type(layer).__name__
    if kind not in (
        "Conv1D",
        "Conv2D",
        "Conv3D",
        "Conv2DTranspose",
        "Conv1DTranspose",
        "Conv3DTranspose",
        "DepthwiseConv2D",
        "DepthwiseConv1D",
        "SeparableConv2D",
        "SeparableConv1D",
        "Dense",
    ):
        return 0
    in_shape, out_shape = layer.input.shape, layer.output.shape
    if kind == "Dense":
        return _prod(out_shape[1:]) * int(in_shape[-1])
    data_format = getattr(layer, "data_format", "channels_last")
    in_sp, in_c = _spatial_and_channels(in_shape, data_format)
    out_sp, out_c = _spatial_and_channels(out_shape, data_format)
    kernel = _prod(layer.kernel_size)
    if kind.startswith("DepthwiseConv"):
        return _prod(out_sp) * int(out_c) * kernel
    if kind.startswith("SeparableConv"):
        mult = int(layer.depth_multiplier)
        return _prod(out_sp) * int(in_c) * mult * kernel + _prod(out_sp) * int(in_c) * mult * int(out_c)
    groups = int(getattr(layer, "groups", 1) or 1)
    if kind.endswith("Transpose"):  # every input pixel scatters a kernel to every output channel
        return _prod(in_sp) * int(in_c) * kernel * int(out_c) // groups
    return _prod(out_sp) * int(out_c) * kernel * int(in_c) // groups


def keras_model_flops(model) -> int:
    """FLOPs (2 x multiply-adds) per image of a built Keras model; nested models are counted recursively."""
    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ in ("Functional", "Model", "Sequential"):
            total += keras_model_flops(layer)
        else:
            total += 2 * keras_layer_macs(layer)
    return total


def torch_model_flops(module, example) -> int:
    """FLOPs (2 x multiply-adds) per image of a torch module, from one forward pass on ``example``."""
    import torch

    batch = int(example.shape[0])
    total = [0]

    def conv_hook(mod, inputs, output):
        kernel = _prod(mod.kernel_size) * (mod.in_channels // mod.groups)
        if isinstance(mod, torch.nn.modules.conv._ConvTransposeNd):
            total[0] += inputs[0].numel() // batch * _prod(mod.kernel_size) * (mod.out_channels // mod.groups)
        else:
            total[0] += output.numel() // batch * kernel

    def linear_hook(mod, inputs, output):
        total[0] += output.numel() // batch * mod.in_features

    handles = []
    for mod in module.modules():
        if isinstance(mod, torch.nn.modules.conv._ConvNd):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, torch.nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(example)
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return 2 * total[0]
