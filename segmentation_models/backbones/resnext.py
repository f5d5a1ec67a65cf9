"""ResNeXt-50/101 (32x4d) as in image-classifiers 1.0.0 (encoders of segmentation_models 1.0.1).

Same layer names as image-classifiers (``bn_data``, ``conv0``, ``stage1_unit1_conv1``, ``..._sc_bn``);
the grouped 3x3 convolution, which image-classifiers built from 32 unnamed sliced ``Conv2D`` layers,
is one ``Conv2D(groups=32)`` named ``stageX_unitY_conv2``. Published files (auto-generated names for
those per-group convolutions) load by position with the per-group kernels concatenated
(`segmentation_models.weights.loading.assign_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from ..validation import check_output_stride
from .registry import BackboneSpec, register_backbone

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
    x = layers.BatchNormalization(name="bn_data", **dict(BN_PARAMS, scale=False))(input_tensor)
    x = layers.ZeroPadding2D(padding=(3, 3), name="conv0_pad")(x)
    x = layers.Conv2D(64, (7, 7), strides=(2, 2), name="conv0", **CONV_PARAMS)(x)
    x = layers.BatchNormalization(name="bn0", **BN_PARAMS)(x)
    x = layers.Activation("relu", name="relu0")(x)
    x = layers.ZeroPadding2D(padding=(1, 1), name="pooling0_pad")(x)
    x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="valid", name="pooling0")(x)
    current_stride, dilation = 4, 1
    for stage, reps in enumerate(repetitions):
        filters = 128 * 2**stage
        for block in range(reps):
            strides = 2 if (block == 0 and stage > 0) else 1
            block_dilation = dilation
            if strides == 2 and current_stride >= output_stride:
                strides, dilation = 1, dilation * 2
            elif strides == 2:
                current_stride *= 2
            x = resnext_block(
                x, filters, stage, block, strides=strides, dilation=block_dilation if block == 0 else dilation
            )
    return keras.Model(input_tensor, x, name=name)


for _name, _reps in {"resnext50": (3, 4, 6, 3), "resnext101": (3, 4, 23, 3)}.items():
    register_backbone(
        BackboneSpec(
            name=_name,
            family="resnext",
            builder=lambda input_tensor, output_stride=32, _r=_reps, _n=_name, **_: build_resnext(
                input_tensor, _r, output_stride=output_stride, name=_n
            ),
            features={
                2: "relu0",
                4: "stage2_unit1_relu1",
                8: "stage3_unit1_relu1",
                16: "stage4_unit1_relu1",
                32: f"stage4_unit{_reps[-1]}_relu",
            },
            channels={2: 64, 4: 256, 8: 512, 16: 1024, 32: 2048},
            default_skips=("stage4_unit1_relu1", "stage3_unit1_relu1", "stage2_unit1_relu1", "relu0"),
            preprocessing="identity",
            first_conv="conv0",
            input_channel_layers=("bn_data",),
            can_dilate=True,
            description=f"ResNeXt-{_name[7:]} 32x4d (image-classifiers 1.0.0 layout)",
        )
    )
