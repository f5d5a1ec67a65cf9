"""DenseNet-121/169/201 from ``keras.applications``.

Same architecture as keras-applications 1.0.8 (the encoders of segmentation_models 1.0.1, which
cannot build them on Keras 3: their stem layers are named ``conv1/conv``, and Keras 3 forbids
``/`` in names). Keras 3 names those three layers ``conv1_conv``, ``conv1_bn``, ``conv1_relu``;
`segmentation_models.weights.loading.assign_weights` maps the published files' ``conv1/...`` names.
1.0.1's feature layers were given by index (e.g. 311, 139, 51, 4 for DenseNet-121): they are the
transition convolutions ``pool4_conv``, ``pool3_conv``, ``pool2_conv`` and ``conv1_relu``.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from ..weights.registry import register_published
from .registry import register_family

_DENSENETS = {  # name: (constructor, channels at strides 16 and 32, md5 of keras-applications 1.0.8's file)
    "densenet121": (keras.applications.DenseNet121, (512, 1024), "30ee3e1110167f948a6b9946edeeb738"),
    "densenet169": (keras.applications.DenseNet169, (640, 1664), "b8c4d4c20dd625c148057b9ff1c1176b"),
    "densenet201": (keras.applications.DenseNet201, (896, 1920), "c13680b51ded0fb44dff2d8f86ac8bb1"),
}


def _densenet_builder(application: Callable, name: str) -> Callable:
    def builder(input_tensor, **_):
        return application(input_tensor=input_tensor, include_top=False, weights=None, name=name)

    return builder


register_family(
    "densenet",
    {
        name: dict(
            builder=_densenet_builder(application, name),
            channels={2: 64, 4: 128, 8: 256, 16: c16, 32: c32},
            description=f"DenseNet-{name[8:]} (keras.applications layout)",
        )
        for name, (application, (c16, c32), _) in _DENSENETS.items()
    },
    features={2: "conv1_relu", 4: "pool2_conv", 8: "pool3_conv", 16: "pool4_conv", 32: "relu"},
    preprocessing="torch",
    first_conv="conv1_conv",
)
register_published(
    "keras-applications 1.0.8",
    {name: md5 for name, (_, _, md5) in _DENSENETS.items()},
    "https://github.com/keras-team/keras-applications/releases/download/densenet/"
    "{backbone}_weights_tf_dim_ordering_tf_kernels_notop.h5",
)
