"""MobileNet (v1) and MobileNetV2 (alpha 1.0) from ``keras.applications``.

Keras 3's builders have the weighted layers of keras-applications 1.0.8 (the encoders of
segmentation_models 1.0.1) with the same names, shapes and order; 1.0.8's first-convolution
zero padding (``conv1_pad``/``Conv1_pad``, no weights) is a 'same' convolution in Keras 3, which
is the same computation for the even input sizes these encoders accept (multiples of 32).
"""

from __future__ import annotations

import keras

from .registry import BackboneSpec, register_backbone


def build_mobilenet(input_tensor, name: str = "mobilenet", **_) -> keras.Model:
    """MobileNet v1 (alpha 1.0) without its classifier."""
    return keras.applications.MobileNet(input_tensor=input_tensor, include_top=False, weights=None, name=name)


def build_mobilenetv2(input_tensor, name: str = "mobilenetv2", **_) -> keras.Model:
    """MobileNetV2 (alpha 1.0) without its classifier."""
    return keras.applications.MobileNetV2(input_tensor=input_tensor, include_top=False, weights=None, name=name)


register_backbone(
    BackboneSpec(
        name="mobilenet",
        family="mobilenet",
        builder=build_mobilenet,
        features={
            2: "conv_pw_1_relu",
            4: "conv_pw_3_relu",
            8: "conv_pw_5_relu",
            16: "conv_pw_11_relu",
            32: "conv_pw_13_relu",
        },
        channels={2: 64, 4: 128, 8: 256, 16: 512, 32: 1024},
        default_skips=("conv_pw_11_relu", "conv_pw_5_relu", "conv_pw_3_relu", "conv_pw_1_relu"),
        preprocessing="tf",
        first_conv="conv1",
        description="MobileNet v1, alpha 1.0 (keras.applications layout)",
    )
)

register_backbone(
    BackboneSpec(
        name="mobilenetv2",
        family="mobilenetv2",
        builder=build_mobilenetv2,
        features={
            2: "block_1_expand_relu",
            4: "block_3_expand_relu",
            8: "block_6_expand_relu",
            16: "block_13_expand_relu",
            32: "out_relu",
        },
        channels={2: 96, 4: 144, 8: 192, 16: 576, 32: 1280},
        default_skips=("block_13_expand_relu", "block_6_expand_relu", "block_3_expand_relu", "block_1_expand_relu"),
        # SMP (torchvision's MobileNetV2) taps the output of the last block at each stride
        smp_features={
            2: "expanded_conv_project_BN",
            4: "block_2_add",
            8: "block_5_add",
            16: "block_12_add",
            32: "out_relu",
        },
        smp_channels={2: 16, 4: 24, 8: 32, 16: 96, 32: 1280},
        preprocessing="tf",
        first_conv="Conv1",
        description="MobileNetV2, alpha 1.0 (keras.applications layout)",
    )
)
