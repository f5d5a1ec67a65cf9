"""VGG-16/19 with the layer names of keras.applications (so its ImageNet ``.h5`` files load)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from .registry import BackboneSpec, register_backbone


def build_vgg(input_tensor, convs_per_block: Sequence[int], name: str = "vgg") -> keras.Model:
    """VGG without its classifier: five conv blocks, each closed by a 2x2 max pooling."""
    x = input_tensor
    for block, n_convs in enumerate(convs_per_block, start=1):
        filters = min(64 * 2 ** (block - 1), 512)
        for conv in range(1, n_convs + 1):
            x = layers.Conv2D(filters, (3, 3), activation="relu", padding="same", name=f"block{block}_conv{conv}")(x)
        x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)
    return keras.Model(input_tensor, x, name=name)


_VGGS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}

for _name, _convs in _VGGS.items():
    _last = [f"block{b}_conv{n}" for b, n in enumerate(_convs, start=1)]
    register_backbone(
        BackboneSpec(
            name=_name,
            family="vgg",
            builder=lambda input_tensor, _c=_convs, _n=_name, **_: build_vgg(input_tensor, _c, name=_n),
            features={1: _last[0], 2: _last[1], 4: _last[2], 8: _last[3], 16: _last[4], 32: "block5_pool"},
            channels={1: 64, 2: 128, 4: 256, 8: 512, 16: 512, 32: 512},
            default_skips=tuple(reversed(_last))[:5],
            preprocessing="caffe",
            first_conv="block1_conv1",
            description=f"VGG-{_name[3:]} (keras.applications layout)",
        )
    )
