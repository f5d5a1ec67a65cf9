"""MobileNet (v1) and MobileNetV2 (alpha 1.0) from ``keras.applications``.

Keras 3's builders have the weighted layers of keras-applications 1.0.8 (the encoders of
segmentation_models 1.0.1) with the same names, shapes and order; 1.0.8's first-convolution
zero padding (``conv1_pad``/``Conv1_pad``, no weights) is a 'same' convolution in Keras 3, which
is the same computation for the even input sizes these encoders accept (multiples of 32).
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from ..weights.registry import register_published
from .registry import by_stride, register_family


def _builder(application: Callable, name: str) -> Callable:
    """keras.applications' ``application`` (alpha 1.0) without its classifier, as a backbone builder."""

    def builder(input_tensor, **_):
        return application(input_tensor=input_tensor, include_top=False, weights=None, name=name)

    return builder


build_mobilenet = _builder(keras.applications.MobileNet, "mobilenet")
build_mobilenetv2 = _builder(keras.applications.MobileNetV2, "mobilenetv2")

register_family(
    "mobilenet",
    {
        "mobilenet": dict(
            builder=build_mobilenet,
            features=by_stride("conv_pw_1_relu conv_pw_3_relu conv_pw_5_relu conv_pw_11_relu conv_pw_13_relu"),
            channels=by_stride((64, 128, 256, 512, 1024)),
            first_conv="conv1",
            description="MobileNet v1, alpha 1.0 (keras.applications layout)",
        ),
        "mobilenetv2": dict(
            family="mobilenetv2",
            builder=build_mobilenetv2,
            features=by_stride(
                "block_1_expand_relu block_3_expand_relu block_6_expand_relu block_13_expand_relu out_relu"
            ),
            channels=by_stride((96, 144, 192, 576, 1280)),
            # SMP (torchvision's MobileNetV2) taps the output of the last block at each stride
            smp_features=by_stride("expanded_conv_project_BN block_2_add block_5_add block_12_add out_relu"),
            smp_channels=by_stride((16, 24, 32, 96, 1280)),
            first_conv="Conv1",
            description="MobileNetV2, alpha 1.0 (keras.applications layout)",
        ),
    },
    preprocessing="tf",
)
# The URLs keras-applications 1.0.8 used; it recorded no hash, these md5s are the ones published with mirrors
# of the same files.
register_published(
    "keras-applications 1.0.8",
    {"mobilenet": "725ccbd03d61d7ced5b5c4cd17e7d527"},
    "https://github.com/fchollet/deep-learning-models/releases/download/v0.6/mobilenet_1_0_224_tf_no_top.h5",
)
register_published(
    "keras-applications 1.0.8",
    {"mobilenetv2": "f1a68526548f7541cda07e19ba6c85f4"},
    "https://github.com/JonathanCMitchell/mobilenet_v2_keras/releases/download/v1.1/"
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
)
