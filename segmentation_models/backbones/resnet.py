"""ResNet-18..152 as in image-classifiers 1.0.0 (the encoders of segmentation_models 1.0.1).

The architecture and the layer names are those of image-classifiers, including the ``bn_data``
input normalisation, so that its published ImageNet ``.h5`` files (registered here, with the md5s image-classifiers
recorded) and the weights of models saved with segmentation_models 1.0.1 load by layer name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import keras
from keras import layers

from ..validation import check_output_stride
from ..weights.registry import IMAGE_CLASSIFIERS_URL, register_published
from .registry import register_family

BN_PARAMS = dict(axis=-1, momentum=0.99, epsilon=2e-5, center=True, scale=True)
CONV_PARAMS = dict(kernel_initializer="he_uniform", use_bias=False, padding="valid")


def _names(stage: int, block: int) -> tuple[str, str, str, str]:
    base = f"stage{stage + 1}_unit{block + 1}_"
    return base + "conv", base + "bn", base + "relu", base + "sc"


def _pad_conv(x, filters, kernel, strides, name, dilation=1):
    """Explicit zero padding + 'valid' convolution (image-classifiers style, keeps the names)."""
    pad = dilation * (kernel // 2)
    if pad:
        x = layers.ZeroPadding2D(padding=(pad, pad), name=name + "_pad")(x)
    return layers.Conv2D(filters, (kernel, kernel), strides=strides, dilation_rate=dilation, name=name, **CONV_PARAMS)(
        x
    )


def residual_conv_block(
    x, filters, stage, block, strides=1, cut="pre", attention=None, dilation=1, first_dilation=None
):
    """Pre-activation basic block (ResNet-18/34).

    ``first_dilation`` (default ``dilation``) is the dilation of the first 3x3 conv: in a dilated network the
    conv that had the stage's stride keeps the previous dilation and every conv after it gets ``dilation``.
    """
    conv_name, bn_name, relu_name, sc_name = _names(stage, block)
    shortcut = x
    x = layers.BatchNormalization(name=bn_name + "1", **BN_PARAMS)(x)
    x = layers.Activation("relu", name=relu_name + "1")(x)
    if cut == "post":
        shortcut = layers.Conv2D(filters, (1, 1), strides=strides, name=sc_name, **CONV_PARAMS)(x)
    x = _pad_conv(x, filters, 3, strides, conv_name + "1", first_dilation or dilation)
    x = layers.BatchNormalization(name=bn_name + "2", **BN_PARAMS)(x)
    x = layers.Activation("relu", name=relu_name + "2")(x)
    x = _pad_conv(x, filters, 3, 1, conv_name + "2", dilation)
    if attention is not None:
        x = attention(x, stage, block)
    return layers.Add(name=f"stage{stage + 1}_unit{block + 1}_add")([x, shortcut])


def residual_bottleneck_block(
    x, filters, stage, block, strides=1, cut="pre", attention=None, dilation=1, first_dilation=None
):
    """Pre-activation bottleneck block (ResNet-50/101/152); ``first_dilation`` is that of its (strided) 3x3 conv."""
    conv_name, bn_name, relu_name, sc_name = _names(stage, block)
    shortcut = x
    x = layers.BatchNormalization(name=bn_name + "1", **BN_PARAMS)(x)
    x = layers.Activation("relu", name=relu_name + "1")(x)
    if cut == "post":
        shortcut = layers.Conv2D(filters * 4, (1, 1), strides=strides, name=sc_name, **CONV_PARAMS)(x)
    x = layers.Conv2D(filters, (1, 1), name=conv_name + "1", **CONV_PARAMS)(x)
    x = layers.BatchNormalization(name=bn_name + "2", **BN_PARAMS)(x)
    x = layers.Activation("relu", name=relu_name + "2")(x)
    x = _pad_conv(x, filters, 3, strides, conv_name + "2", first_dilation or dilation)
    x = layers.BatchNormalization(name=bn_name + "3", **BN_PARAMS)(x)
    x = layers.Activation("relu", name=relu_name + "3")(x)
    x = layers.Conv2D(filters * 4, (1, 1), name=conv_name + "3", **CONV_PARAMS)(x)
    if attention is not None:
        x = attention(x, stage, block)
    return layers.Add(name=f"stage{stage + 1}_unit{block + 1}_add")([x, shortcut])


def image_classifiers_stem(input_tensor, conv_params: Mapping[str, object]):
    """image-classifiers' ResNet/ResNeXt stem: ``bn_data`` input norm, 7x7/2 ``conv0``, BN, relu, 3x3/2 max pooling."""
    x = layers.BatchNormalization(name="bn_data", **dict(BN_PARAMS, scale=False))(input_tensor)
    x = layers.ZeroPadding2D(padding=(3, 3), name="conv0_pad")(x)
    x = layers.Conv2D(64, (7, 7), strides=(2, 2), name="conv0", **conv_params)(x)
    x = layers.BatchNormalization(name="bn0", **BN_PARAMS)(x)
    x = layers.Activation("relu", name="relu0")(x)
    x = layers.ZeroPadding2D(padding=(1, 1), name="pooling0_pad")(x)
    return layers.MaxPooling2D((3, 3), strides=(2, 2), padding="valid", name="pooling0")(x)


def stage_units(repetitions: Sequence[int], output_stride: int) -> Iterator[tuple[int, int, int, int, int]]:
    """``(stage, unit, strides, first_dilation, dilation)`` of each residual unit after a stride-4 stem.

    The first unit of each stage after the first has stride 2 until ``output_stride`` is reached, then stride 1
    and twice the dilation. The conv that had the stride keeps the previous dilation (``first_dilation``), every
    later conv gets the new one (as torchvision): the dilated output then equals the undilated one on its grid.
    """
    stride, dilation = 4, 1
    for stage, reps in enumerate(repetitions):
        for unit in range(reps):
            first_dilation, strides = dilation, 1
            if unit == 0 and stage > 0 and stride >= output_stride:
                dilation *= 2
            elif unit == 0 and stage > 0:
                strides, stride = 2, stride * 2
            yield stage, unit, strides, first_dilation, dilation


def build_resnet(
    input_tensor,
    repetitions: Sequence[int],
    block: Callable,
    attention: Callable | None = None,
    output_stride: int = 32,
    name: str = "resnet",
) -> keras.Model:
    """Build the image-classifiers ResNet without its classifier on ``input_tensor``.

    ``output_stride`` 16 or 8 replaces the strides of the last stages by dilation (DeepLab).
    """
    check_output_stride(output_stride)
    x = image_classifiers_stem(input_tensor, CONV_PARAMS)
    for stage, unit, strides, first_dilation, dilation in stage_units(repetitions, output_stride):
        x = block(
            x,
            64 * 2**stage,
            stage,
            unit,
            strides=strides,
            cut="post" if unit == 0 else "pre",
            attention=attention,
            dilation=dilation,
            first_dilation=first_dilation,
        )
    x = layers.BatchNormalization(name="bn1", **BN_PARAMS)(x)
    x = layers.Activation("relu", name="relu1")(x)
    return keras.Model(input_tensor, x, name=name)


def resnet_builder(repetitions: Sequence[int], name: str, block: Callable = residual_conv_block, **options) -> Callable:
    """``builder(input_tensor, output_stride=32)`` of one image-classifiers ResNet (``options``: `build_resnet`'s)."""

    def builder(input_tensor, output_stride: int = 32, **_):
        return build_resnet(input_tensor, repetitions, block, output_stride=output_stride, name=name, **options)

    return builder


# The layout image-classifiers' ResNets, SE-ResNet-18/34 and ResNeXts share: features, input norm, dilation.
RESNET_LAYOUT = dict(
    features={2: "relu0", 4: "stage2_unit1_relu1", 8: "stage3_unit1_relu1", 16: "stage4_unit1_relu1", 32: "relu1"},
    preprocessing="identity",
    first_conv="conv0",
    input_channel_layers=("bn_data",),
    can_dilate=True,
)
IMAGE_CLASSIFIERS = "image-classifiers 1.0.0"
# image-classifiers 1.0.0's ImageNet files (no top); the families register them with the md5s it recorded
IMAGE_CLASSIFIERS_FILES = IMAGE_CLASSIFIERS_URL + "{backbone}_imagenet_1000_no_top.h5"


_RESNETS = {  # name: (repetitions, block, bottleneck expansion)
    "resnet18": ((2, 2, 2, 2), residual_conv_block, 1),
    "resnet34": ((3, 4, 6, 3), residual_conv_block, 1),
    "resnet50": ((3, 4, 6, 3), residual_bottleneck_block, 4),
    "resnet101": ((3, 4, 23, 3), residual_bottleneck_block, 4),
    "resnet152": ((3, 8, 36, 3), residual_bottleneck_block, 4),
}
register_family(
    "resnet",
    {
        name: dict(
            builder=resnet_builder(reps, name, block),
            channels={2: 64, **{4 * 2**i: 64 * 2**i * expansion for i in range(4)}},
            description=f"ResNet-{name[6:]} (image-classifiers 1.0.0 layout, pre-activation, bn_data input norm)",
        )
        for name, (reps, block, expansion) in _RESNETS.items()
    },
    **RESNET_LAYOUT,
)
register_published(
    IMAGE_CLASSIFIERS,
    {
        "resnet18": "318e3ac0cd98d51e917526c9f62f0b50",
        "resnet34": "8caaa0ad39d927cb8ba5385bf945d582",
        "resnet50": "db3b217156506944570ac220086f09b6",
        "resnet101": "1016e7663980d5597a4e224d915c342d",
        "resnet152": "5867b94098df4640918941115db93734",
    },
    IMAGE_CLASSIFIERS_FILES,
)
register_published(
    IMAGE_CLASSIFIERS,
    {"resnet152": "25ab66dec217cb774a27d0f3659cafb3"},
    IMAGE_CLASSIFIERS_URL + "resnet152_imagenet11k_11221_no_top.h5",
    name="imagenet11k",
)
