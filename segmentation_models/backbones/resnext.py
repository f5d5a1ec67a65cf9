"""ResNeXt-50/101 (32x4d) as in image-classifiers 1.0.0 (encoders of segmentation_models 1.0.1).

Same layer names as image-classifiers (``bn_data``, ``conv0``, ``stage1_unit1_conv1``, ``..._sc_bn``);
the grouped 3x3 convolution, which image-classifiers built from 32 unnamed sliced ``Conv2D`` layers,
is one ``Conv2D(groups=32)`` named ``stageX_unitY_conv2``. Published files (auto-generated names for
those per-group convolutions) load by position with the per-group kernels concatenated
(`segmentation_models.weights.loading.assign_weights`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import layers

from ..validation import check_output_stride
from ..weights.registry import register_published
from .registry import register_family
from .resnet import IMAGE_CLASSIFIERS, IMAGE_CLASSIFIERS_FILES, RESNET_LAYOUT, image_classifiers_stem, stage_units

BN_PARAMS = dict(axis=-1, momentum=0.99, epsilon=2e-5, center=True, scale=True)
CONV_PARAMS = dict(kernel_initializer="glorot_uniform", use_bias=False, padding="valid")


def resnext_block(x, filters: int, stage: int, block: int, strides: int = 1, groups: int = 32, dilation: int = 1):
    """image-classifiers' ResNeXt ``conv_block`` (first unit of a stage) or ``identity_block``."""
    base = f"stage{stage + 1}_unit{block + 1}_"
    shortcut = x
    y = layers.Conv2D(filters, (1, 1), name=base + "conv1", **CONV_PARAMS)(x)
    y = layers.BatchNormalization(name=base + "bn1", **BN_PARAMS)(y)
    y = layers.Activation("relu", name=base + "relu1")(y)
    y = layers.ZeroPadding2D(padding=(dilation, dilation), name=base + "conv2_pad")(y)
    y = layers.Conv2D(
        filters, (3, 3), strides=strides, groups=groups, dilation_rate=dilation, name=base + "conv2", **CONV_PARAMS
    )(y)
    y = layers.BatchNormalization(name=base + "bn2", **BN_PARAMS)(y)
    y = layers.Activation("relu", name=base + "relu2")(y)
    y = layers.Conv2D(filters * 2, (1, 1), name=base + "conv3", **CONV_PARAMS)(y)
    y = layers.BatchNormalization(name=base + "bn3", **BN_PARAMS)(y)
    if block == 0:
        shortcut = layers.Conv2D(filters * 2, (1, 1), name=base + "sc", strides=strides, **CONV_PARAMS)(x)
        shortcut = layers.BatchNormalization(name=base + "sc_bn", **BN_PARAMS)(shortcut)
    y = layers.Add(name=base + "add")([y, shortcut])
    return layers.Activation("relu", name=base + "relu")(y)


def build_resnext(
    input_tensor, repetitions: Sequence[int], output_stride: int = 32, name: str = "resnext"
) -> keras.Model:
    """ResNeXt without its classifier; ``output_stride`` 8/16 replaces the last strides by dilation."""
    check_output_stride(output_stride)
    x = image_classifiers_stem(input_tensor, CONV_PARAMS)
    for stage, block, strides, first_dilation, _ in stage_units(repetitions, output_stride):
        # the one 3x3 conv of a unit is the strided one: it keeps the previous dilation (see `stage_units`)
        x = resnext_block(x, 128 * 2**stage, stage, block, strides=strides, dilation=first_dilation)
    return keras.Model(input_tensor, x, name=name)


def _resnext_builder(repetitions: Sequence[int], name: str) -> Callable:
    def builder(input_tensor, output_stride: int = 32, **_):
        return build_resnext(input_tensor, repetitions, output_stride=output_stride, name=name)

    return builder


_RESNEXTS = {"resnext50": (3, 4, 6, 3), "resnext101": (3, 4, 23, 3)}
register_family(
    "resnext",
    {
        name: dict(
            builder=_resnext_builder(reps, name),
            features={**RESNET_LAYOUT["features"], 32: f"stage4_unit{reps[-1]}_relu"},
            description=f"ResNeXt-{name[7:]} 32x4d (image-classifiers 1.0.0 layout)",
        )
        for name, reps in _RESNEXTS.items()
    },
    channels={2: 64, 4: 256, 8: 512, 16: 1024, 32: 2048},
    **RESNET_LAYOUT,
)
register_published(
    IMAGE_CLASSIFIERS,
    {"resnext50": "7ade5c8aac9194af79b1724229bdaa50", "resnext101": "91fe0126320e49f6ee607a0719828c7e"},
    IMAGE_CLASSIFIERS_FILES,
)
