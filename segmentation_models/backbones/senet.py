"""Squeeze-and-excitation networks as in image-classifiers 1.0.0 (encoders of segmentation_models 1.0.1).

- ``seresnet18``/``seresnet34``: image-classifiers' pre-activation ResNet (see `resnet`) with a channel
  SE block on each residual branch (the ``attention`` hook of `resnet.build_resnet`);
- ``seresnet50/101/152``, ``seresnext50/101``, ``senet154``: image-classifiers' ``SENet`` (Cadene's
  post-activation SE-ResNet / SE-ResNeXt / SENet-154 with ``torch`` preprocessing).

The originals left these layers unnamed; here every layer has a stable name (``stage2_unit1_se_conv1``),
and the published files, which carry Keras' auto-generated names, load by position
(`segmentation_models.weights.loading.assign_weights`). The original's grouped convolution (32 or 64
sliced ``Conv2D`` layers, concatenated) is one ``Conv2D(groups=...)``: loading concatenates the
per-group kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import layers

from ..validation import check_output_stride
from ..weights.registry import register_published
from .registry import register_family
from .resnet import IMAGE_CLASSIFIERS, IMAGE_CLASSIFIERS_FILES, RESNET_LAYOUT, resnet_builder, stage_units

SE_BN = dict(axis=-1, epsilon=9.999999747378752e-06)


def channel_se(x, prefix: str, reduction: int = 16):
    """image-classifiers' ``ChannelSE``: global pooling, 1x1 conv, relu, 1x1 conv, sigmoid, rescale."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=prefix + "se_pool")(x)
    s = layers.Conv2D(channels // reduction, (1, 1), kernel_initializer="he_uniform", name=prefix + "se_conv1")(s)
    s = layers.Activation("relu", name=prefix + "se_relu")(s)
    s = layers.Conv2D(channels, (1, 1), kernel_initializer="he_uniform", name=prefix + "se_conv2")(s)
    s = layers.Activation("sigmoid", name=prefix + "se_sigmoid")(s)
    return layers.Multiply(name=prefix + "se_excite")([x, s])


def resnet_se_attention(x, stage: int, block: int):
    """The ``attention`` hook of `resnet.build_resnet` for SE-ResNet-18/34."""
    return channel_se(x, f"stage{stage + 1}_unit{block + 1}_")


def _conv(x, filters, kernel, name, strides=1, groups=1, pad=0, dilation=1):
    if pad:
        x = layers.ZeroPadding2D(pad, name=name + "_pad")(x)
    return layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        groups=groups,
        dilation_rate=dilation,
        use_bias=False,
        kernel_initializer="he_uniform",
        name=name,
    )(x)


def se_bottleneck(
    x,
    filters: int,
    prefix: str,
    kind: str,
    strides: int = 1,
    groups: int = 1,
    is_first: bool = False,
    dilation: int = 1,
    reduction: int = 16,
):
    """One SENet unit: ``kind`` is 'seresnet', 'seresnext' or 'senet' (image-classifiers' three blocks)."""
    residual = x
    if kind == "seresnet":
        width, mid, conv1_strides, conv2_strides = filters // 4, filters // 4, strides, 1
    elif kind == "seresnext":
        width = (filters // 4) * 4 * groups // 64
        mid, conv1_strides, conv2_strides = width, 1, strides
    else:  # senet154
        width, mid, conv1_strides, conv2_strides = filters // 2, filters, 1, strides
    x = _conv(x, width, 1, prefix + "conv1", strides=conv1_strides)
    x = layers.BatchNormalization(name=prefix + "bn1", **SE_BN)(x)
    x = layers.Activation("relu", name=prefix + "relu1")(x)
    x = _conv(
        x,
        mid,
        3,
        prefix + "conv2",
        strides=conv2_strides,
        groups=1 if kind == "seresnet" else groups,
        pad=dilation,
        dilation=dilation,
    )
    x = layers.BatchNormalization(name=prefix + "bn2", **SE_BN)(x)
    x = layers.Activation("relu", name=prefix + "relu2")(x)
    x = _conv(x, filters, 1, prefix + "conv3")
    x = layers.BatchNormalization(name=prefix + "bn3", **SE_BN)(x)
    if strides != 1 or x.shape[-1] != residual.shape[-1]:
        if kind == "senet" and not is_first:
            residual = _conv(residual, filters, 3, prefix + "sc", strides=strides, pad=1)
        else:
            residual = _conv(residual, filters, 1, prefix + "sc", strides=strides)
        residual = layers.BatchNormalization(name=prefix + "sc_bn", **SE_BN)(residual)
    x = channel_se(x, prefix, reduction)
    x = layers.Add(name=prefix + "add")([x, residual])
    return layers.Activation("relu", name=prefix + "relu")(x)


def build_senet(
    input_tensor,
    repetitions: Sequence[int],
    kind: str,
    groups: int = 1,
    input_3x3: bool = False,
    output_stride: int = 32,
    name: str = "senet",
) -> keras.Model:
    """image-classifiers' ``SENet`` without its classifier; ``output_stride`` 8/16 dilates the last stages."""
    check_output_stride(output_stride)
    x = input_tensor
    if input_3x3:
        for i, (filters, strides) in enumerate([(64, 2), (64, 1), (128, 1)], start=1):
            x = _conv(x, filters, 3, f"conv0_{i}", strides=strides, pad=1)
            x = layers.BatchNormalization(name=f"bn0_{i}", **SE_BN)(x)
            x = layers.Activation("relu", name=f"relu0_{i}")(x)
    else:
        x = _conv(x, 64, 7, "conv0", strides=2, pad=3)
        x = layers.BatchNormalization(name="bn0", **SE_BN)(x)
        x = layers.Activation("relu", name="relu0")(x)
    x = layers.ZeroPadding2D(1, name="pooling0_pad")(x)
    x = layers.MaxPooling2D((3, 3), strides=2, name="pooling0")(x)

    for stage, unit, strides, first_dilation, _ in stage_units(repetitions, output_stride):
        # the one 3x3 conv of a unit is the strided one: it keeps the previous dilation (see `stage_units`)
        x = se_bottleneck(
            x,
            256 * 2**stage,
            f"stage{stage + 1}_unit{unit + 1}_",
            kind,
            strides=strides,
            groups=groups,
            is_first=(stage == 0 and unit == 0),
            dilation=first_dilation,
        )
    return keras.Model(input_tensor, x, name=name)


# name: (repetitions, kind, groups, 3x3 stem)
_SENETS = {
    "seresnet50": ((3, 4, 6, 3), "seresnet", 1, False),
    "seresnet101": ((3, 4, 23, 3), "seresnet", 1, False),
    "seresnet152": ((3, 8, 36, 3), "seresnet", 1, False),
    "seresnext50": ((3, 4, 6, 3), "seresnext", 32, False),
    "seresnext101": ((3, 4, 23, 3), "seresnext", 32, False),
    "senet154": ((3, 8, 36, 3), "senet", 64, True),
}


def _senet_builder(reps: Sequence[int], kind: str, groups: int, input_3x3: bool, name: str) -> Callable:
    def builder(input_tensor, output_stride: int = 32, **_):
        return build_senet(input_tensor, reps, kind, groups, input_3x3, output_stride=output_stride, name=name)

    return builder


def _senet_variant(name: str, reps: Sequence[int], kind: str, groups: int, input_3x3: bool) -> dict:
    stem = "relu0_3" if input_3x3 else "relu0"
    return dict(
        builder=_senet_builder(reps, kind, groups, input_3x3, name),
        features={2: stem, **{2 ** (s + 2): f"stage{s + 1}_unit{r}_relu" for s, r in enumerate(reps)}},
        channels={2: 128 if input_3x3 else 64, 4: 256, 8: 512, 16: 1024, 32: 2048},
        first_conv="conv0_1" if input_3x3 else "conv0",
        description=f"{name} (image-classifiers 1.0.0 SENet layout)",
    )


_SERESNETS = {"seresnet18": (2, 2, 2, 2), "seresnet34": (3, 4, 6, 3)}
register_family(
    "seresnet",
    {
        name: dict(
            builder=resnet_builder(reps, name, attention=resnet_se_attention),
            channels={2: 64, 4: 64, 8: 128, 16: 256, 32: 512},
            description=f"SE-ResNet-{name[8:]} (image-classifiers 1.0.0 layout: pre-activation ResNet + channel SE)",
        )
        for name, reps in _SERESNETS.items()
    },
    **RESNET_LAYOUT,
)
register_family(
    "senet",
    {name: _senet_variant(name, *row) for name, row in _SENETS.items()},
    preprocessing="torch",
    can_dilate=True,
)
register_published(
    IMAGE_CLASSIFIERS,
    {
        "seresnet18": "a46e5cd4114ac946ecdc58741e8d92ea",
        "seresnet34": "3348fd049f1f9ad307c070ff2b6ec4cb",
        "seresnet50": "043777781b0d5ca756474d60bf115ef1",
        "seresnet101": "1c373b0c196918713da86951d1239007",
        "seresnet152": "f58d4c1a511c7445ab9a2c2b83ee4e7b",
        "seresnext50": "b0f23d2e1cd406d67335fb92d85cc279",
        "seresnext101": "e48708cbe40071cc3356016c37f6c9c7",
        "senet154": "d854ff2cd7e6a87b05a8124cd283e0f2",
    },
    IMAGE_CLASSIFIERS_FILES,
)
