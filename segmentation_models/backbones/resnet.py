"""ResNet-18..152 as in image-classifiers 1.0.0 (the encoders of segmentation_models 1.0.1).

The architecture and the layer names are those of image-classifiers, including the ``bn_data``
input normalisation, so that its published ImageNet ``.h5`` files and the weights of models saved
with segmentation_models 1.0.1 load by layer name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import layers

from ..validation import check_output_stride
from .registry import BackboneSpec, register_backbone

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
    x = layers.BatchNormalization(name="bn_data", **dict(BN_PARAMS, scale=False))(input_tensor)
    x = layers.ZeroPadding2D(padding=(3, 3), name="conv0_pad")(x)
    x = layers.Conv2D(64, (7, 7), strides=(2, 2), name="conv0", **CONV_PARAMS)(x)
    x = layers.BatchNormalization(name="bn0", **BN_PARAMS)(x)
    x = layers.Activation("relu", name="relu0")(x)
    x = layers.ZeroPadding2D(padding=(1, 1), name="pooling0_pad")(x)
    x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="valid", name="pooling0")(x)

    current_stride, dilation = 4, 1
    for stage, reps in enumerate(repetitions):
        filters = 64 * 2**stage
        for unit in range(reps):
            if unit == 0 and stage > 0:
                if current_stride >= output_stride:
                    strides, dilation = 1, dilation * 2
                else:
                    strides = 2
                    current_stride *= 2
            else:
                strides = 1
            # the conv that had the stride keeps the previous stage's dilation, every later conv gets the new
            # one (as torchvision): the dilated output then equals the undilated one on its sampling grid
            first_dilation = (
                max(1, dilation // 2) if (unit == 0 and strides == 1 and stage > 0 and dilation > 1) else dilation
            )
            cut = "post" if unit == 0 else "pre"
            x = block(
                x,
                filters,
                stage,
                unit,
                strides=strides,
                cut=cut,
                attention=attention,
                dilation=dilation,
                first_dilation=first_dilation,
            )

    x = layers.BatchNormalization(name="bn1", **BN_PARAMS)(x)
    x = layers.Activation("relu", name="relu1")(x)
    return keras.Model(input_tensor, x, name=name)


RESNET_FEATURES = {2: "relu0", 4: "stage2_unit1_relu1", 8: "stage3_unit1_relu1", 16: "stage4_unit1_relu1", 32: "relu1"}
RESNET_SKIPS = ("stage4_unit1_relu1", "stage3_unit1_relu1", "stage2_unit1_relu1", "relu0")

_RESNETS = {
    "resnet18": ((2, 2, 2, 2), residual_conv_block, 1),
    "resnet34": ((3, 4, 6, 3), residual_conv_block, 1),
    "resnet50": ((3, 4, 6, 3), residual_bottleneck_block, 4),
    "resnet101": ((3, 4, 23, 3), residual_bottleneck_block, 4),
    "resnet152": ((3, 8, 36, 3), residual_bottleneck_block, 4),
}


def _resnet_builder(repetitions, block, name):
    def builder(input_tensor, output_stride: int = 32, **_):
        return build_resnet(input_tensor, repetitions, block, output_stride=output_stride, name=name)

    return builder


for _name, (_reps, _block, _expansion) in _RESNETS.items():
    register_backbone(
        BackboneSpec(
            name=_name,
            family="resnet",
            builder=_resnet_builder(_reps, _block, _name),
            features=RESNET_FEATURES,
            channels={2: 64, 4: 64 * _expansion, 8: 128 * _expansion, 16: 256 * _expansion, 32: 512 * _expansion},
            default_skips=RESNET_SKIPS,
            preprocessing="identity",
            first_conv="conv0",
            input_channel_layers=("bn_data",),
            can_dilate=True,
            description=f"ResNet-{_name[6:]} (image-classifiers 1.0.0 layout, pre-activation, bn_data input norm)",
        )
    )
