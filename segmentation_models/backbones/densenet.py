"""DenseNet-121/169/201 from ``keras.applications``.

Same architecture as keras-applications 1.0.8 (the encoders of segmentation_models 1.0.1, which
cannot build them on Keras 3: their stem layers are named ``conv1/conv``, and Keras 3 forbids
``/`` in names). Keras 3 names those three layers ``conv1_conv``, ``conv1_bn``, ``conv1_relu``;
`segmentation_models.weights.loading.assign_weights` maps the published files' ``conv1/...`` names.
1.0.1's feature layers were given by index (e.g. 311, 139, 51, 4 for DenseNet-121): they are the
transition convolutions ``pool4_conv``, ``pool3_conv``, ``pool2_conv`` and ``conv1_relu``.
"""

from __future__ import annotations

import keras

from .registry import BackboneSpec, register_backbone

_DENSENETS = {
    "densenet121": (keras.applications.DenseNet121, (512, 1024)),
    "densenet169": (keras.applications.DenseNet169, (640, 1664)),
    "densenet201": (keras.applications.DenseNet201, (896, 1920)),
}
DENSENET_SKIPS = ("pool4_conv", "pool3_conv", "pool2_conv", "conv1_relu")


def _densenet_builder(application, name):
    def builder(input_tensor, **_):
        return application(input_tensor=input_tensor, include_top=False, weights=None, name=name)

    return builder


for _name, (_application, (_c16, _c32)) in _DENSENETS.items():
    register_backbone(
        BackboneSpec(
            name=_name,
            family="densenet",
            builder=_densenet_builder(_application, _name),
            features={2: "conv1_relu", 4: "pool2_conv", 8: "pool3_conv", 16: "pool4_conv", 32: "relu"},
            channels={2: 64, 4: 128, 8: 256, 16: _c16, 32: _c32},
            default_skips=DENSENET_SKIPS,
            preprocessing="torch",
            first_conv="conv1_conv",
            description=f"DenseNet-{_name[8:]} (keras.applications layout)",
        )
    )
