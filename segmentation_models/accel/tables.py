"""What the torch graph executor knows about layers, kept here so that the layers themselves carry nothing of it:
which layers it may call directly, which may take recomputed saved tensors, which are plain ReLUs."""

from __future__ import annotations

import functools


@functools.cache
def direct_classes() -> tuple:
    """Stateless layers (no weights of their own state, masks or training argument) whose ``call`` the executor
    may run without ``Layer.__call__`` (see ``graph._direct_call``)."""
    from keras import layers

    from ..blocks import ResizeByFactor, ResizeToMatch, ResizeToReference
    from ..decoders.common import CropToInput, PadToMultiple
    from ..decoders.pspnet import GridPooling2D
    from ..decoders.upernet import AdaptiveAveragePooling

    return (
        layers.Conv2D,
        layers.DepthwiseConv2D,
        layers.BatchNormalization,
        layers.Activation,
        layers.ReLU,
        layers.Add,
        layers.Multiply,
        layers.Concatenate,
        layers.UpSampling2D,
        layers.MaxPooling2D,
        layers.AveragePooling2D,
        layers.ZeroPadding2D,
        layers.GlobalAveragePooling2D,
        layers.Reshape,
        layers.Dropout,
        GridPooling2D,
        AdaptiveAveragePooling,
        ResizeToReference,
        ResizeToMatch,
        ResizeByFactor,
        PadToMultiple,
        CropToInput,
    )


@functools.cache
def _recipe_safe() -> dict:
    """{layer class: None (always) or a predicate on the layer}: layers whose backward pass is continuous in the
    tensors they save, so that recomputed ones (equal to the last bit or nearly) give the same gradient."""
    from keras import layers
    from keras.src.models.functional import Functional

    from ..backbones.convnext import LayerScale
    from ..backbones.inception import ScaledResidual
    from ..backbones.mit import SpatialReductionAttention, StochasticDepth
    from ..blocks import ResizeByFactor, ResizeToMatch, ResizeToReference
    from ..decoders.common import CropToInput, PadToMultiple
    from ..decoders.manet import PositionAttention
    from ..decoders.pspnet import GridPooling2D
    from ..decoders.upernet import AdaptiveAveragePooling

    keras_classes = (
        layers.Conv1D,
        layers.Conv2D,
        layers.Conv3D,
        layers.DepthwiseConv2D,
        layers.SeparableConv2D,
        layers.Conv2DTranspose,
        layers.Dense,
        layers.EinsumDense,
        layers.BatchNormalization,
        layers.LayerNormalization,
        layers.GroupNormalization,
        layers.ReLU,
        layers.Softmax,
        layers.Add,
        layers.Subtract,
        layers.Multiply,
        layers.Average,
        layers.Concatenate,
        layers.UpSampling2D,
        layers.MaxPooling2D,
        layers.AveragePooling2D,
        layers.GlobalAveragePooling2D,
        layers.ZeroPadding2D,
        layers.Cropping2D,
        layers.Reshape,
        layers.Permute,
        layers.Flatten,
        layers.Dropout,
        layers.SpatialDropout2D,
        layers.Identity,
        layers.Resizing,
        Functional,
    )  # MaxPooling2D: by indices
    package_classes = (
        AdaptiveAveragePooling,
        ResizeToMatch,
        ResizeToReference,
        PositionAttention,
        StochasticDepth,
        ResizeByFactor,
        PadToMultiple,
        CropToInput,
        LayerScale,
        ScaledResidual,
        SpatialReductionAttention,
    )
    table = dict.fromkeys(keras_classes + package_classes)
    table[GridPooling2D] = lambda op: op.pooling == "avg"  # a max compares its inputs with the saved result
    # the built-in activations; a function of the user's may reduce
    table[layers.Activation] = lambda op: getattr(op.activation, "__module__", "").startswith("keras.")
    return table


def takes_recipes(op) -> bool:
    """Whether ``op``'s backward pass may use recomputed versions of the tensors it saves.

    A recomputed tensor can differ from the forward pass's in the last bit. That is harmless for a gradient that
    depends on the saved values continuously (convolutions, products, normalizations, activations, resizes, average
    pools), but not for one that compares them with a saved result: a max reduction (GlobalMaxPooling2D,
    GridPooling2D(pooling="max"), a user's ``ops.max``) routes its gradient to the inputs equal to the saved maximum,
    and with none equal it divides by zero (NaN weights after one step). So only the layers of the table qualify.
    """
    table = _recipe_safe()
    kind = type(op)
    if kind not in table:
        return False
    check = table[kind]
    return check is None or bool(check(op))


def upsampling_classes() -> tuple:
    """Layers that upsample one input by integer factors (recomputable from it)."""
    from keras import layers

    from ..blocks import ResizeByFactor

    return (layers.UpSampling2D, ResizeByFactor)


def is_plain_relu(op) -> bool:
    """Whether ``op`` is a built-in layer computing exactly max(x, 0)."""
    from keras import activations, layers

    return (type(op) is layers.Activation and op.activation is activations.relu) or (
        type(op) is layers.ReLU and op.max_value is None and not op.negative_slope and not op.threshold
    )
