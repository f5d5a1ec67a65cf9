"""VGG-16/19 with the layer names of keras.applications (so its ImageNet ``.h5`` files, registered here, load)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from ..weights.registry import KERAS_APPLICATIONS_URL, register_published
from .registry import register_family


def build_vgg(input_tensor, convs_per_block: Sequence[int], name: str = "vgg") -> keras.Model:
    """VGG without its classifier: five conv blocks, each closed by a 2x2 max pooling."""
    x = input_tensor
    for block, n_convs in enumerate(convs_per_block, start=1):
        filters = min(64 * 2 ** (block - 1), 512)
        for conv in range(1, n_convs + 1):
            x = layers.Conv2D(filters, (3, 3), activation="relu", padding="same", name=f"block{block}_conv{conv}")(x)
        x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)
    return keras.Model(input_tensor, x, name=name)


def _vgg_variant(name: str, convs_per_block: Sequence[int]) -> dict:
    last = [f"block{b}_conv{n}" for b, n in enumerate(convs_per_block, start=1)]
    return dict(
        builder=lambda input_tensor, **_: build_vgg(input_tensor, convs_per_block, name=name),
        features={**{2**i: layer for i, layer in enumerate(last)}, 32: "block5_pool"},
        description=f"VGG-{name[3:]} (keras.applications layout)",
    )


register_family(
    "vgg",
    {name: _vgg_variant(name, convs) for name, convs in {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}.items()},
    channels={1: 64, 2: 128, 4: 256, 8: 512, 16: 512, 32: 512},
    preprocessing="caffe",
    first_conv="block1_conv1",
)
register_published(
    "keras-applications",
    {"vgg16": "6d6bbae143d832006294945121d1f1fc", "vgg19": "253f8cb515780f3b799900260a226db6"},
    KERAS_APPLICATIONS_URL + "{backbone}/{backbone}_weights_tf_dim_ordering_tf_kernels_notop.h5",
)
