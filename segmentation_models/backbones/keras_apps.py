"""Modern backbones built by keras.applications: EfficientNetV2, MobileNetV3, ResNetV2, Xception.

Each family is keras.applications' own builder (``include_top=False, weights=None``) on our input,
so the published keras.applications ImageNet ``_notop.h5`` files fit layer for layer. Those files are
loaded by position, as keras.applications does (``weights_layout="by_order"``): their stored names are
Keras 2 names (``Conv/BatchNorm``) or auto names (``conv2d_3``) that Keras 3 does not reproduce.

Layers keras.applications leaves unnamed (activations, residual adds, Xception's shortcut convolutions)
get deterministic names after the build (`name_unnamed_layers`), so feature maps are picked by names
that are the same in every session, and full-model weights saved by name reload anywhere.

Input normalisation that keras.applications puts inside the model (EfficientNetV2, MobileNetV3) is
rebuilt in front of the builder with per-channel statistics cycled over the input channels, so that
inputs with 1, 2, 4, ... channels work (`input_preprocessing`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import keras
from keras import layers

from .registry import BackboneSpec, register_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---- shared helpers ----------------------------------------------------------------------
def _snake(class_name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _is_auto_named(op) -> bool:
    return re.fullmatch(rf"{_snake(type(op).__name__)}(_\d+)?", op.name) is not None


def _producers(op) -> list:
    nodes = getattr(op, "_inbound_nodes", [])
    if not nodes:
        return []
    return [t._keras_history.operation for t in nodes[0].input_tensors if hasattr(t, "_keras_history")]


def _named_anchor(op) -> str | None:
    """The nearest upstream operation with an explicit (or already assigned) name."""
    seen, frontier = set(), _producers(op)
    while frontier:
        candidate = frontier.pop(0)
        if id(candidate) in seen:
            continue
        seen.add(id(candidate))
        if isinstance(candidate, keras.layers.InputLayer) or not _is_auto_named(candidate):
            return candidate.name
        frontier.extend(_producers(candidate))
    return None


def name_unnamed_layers(model: keras.Model) -> keras.Model:
    """Give auto-named layers (``re_lu_7``, ``add_3``, ``conv2d_2``) names derived from the nearest
    explicitly named layer upstream, e.g. ``conv_bn_activation`` or ``block2_pool_add``.

    The result does not depend on what was built before in the session. Returns ``model``.
    """
    taken = {layer.name for layer in model.layers}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or not _is_auto_named(layer):
            continue
        anchor = _named_anchor(layer) or model.name
        base = f"{anchor}_{_snake(type(layer).__name__)}"
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.discard(layer.name)
        layer.name = name
        taken.add(name)
    return model


def input_preprocessing(
    x, scale: float = 1.0, offset: float = 0.0, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
):
    """In-model input normalisation ``((x * scale + offset) - mean) / std`` with the per-channel
    ``mean``/``std`` cycled over the input's channels (ImageNet statistics for RGB)."""
    channels = x.shape[-1]
    if scale != 1.0 or offset != 0.0:
        x = layers.Rescaling(scale=scale, offset=offset, name="input_rescaling")(x)
    if mean is not None:
        cycled_mean = [float(mean[i % len(mean)]) for i in range(channels)]
        cycled_var = [float(std[i % len(std)]) ** 2 for i in range(channels)]
        x = layers.Normalization(mean=cycled_mean, variance=cycled_var, name="input_normalization")(x)
    return x


def _keras_app_builder(
    constructor: Callable, name: str, preprocess: Callable | None = None, input_padding: int = 0, **app_kwargs
) -> Callable:
    def builder(input_tensor, output_stride: int = 32, **_):
        x = input_tensor
        if preprocess is not None:
            x = preprocess(x)
        if input_padding:
            x = layers.ZeroPadding2D(padding=input_padding, name="input_pad")(x)
        model = constructor(include_top=False, weights=None, input_tensor=x, **app_kwargs)
        model = keras.Model(input_tensor, model.output, name=name)
        return name_unnamed_layers(model)

    return builder


def _skips(features: dict) -> tuple:
    return tuple(features[s] for s in (16, 8, 4, 2) if s in features)


# ---- EfficientNetV2 ----------------------------------------------------------------------
_APPS = keras.applications
_EFFICIENTNETV2 = {
    # name: (constructor, features, channels)
    "efficientnetv2b0": (
        _APPS.EfficientNetV2B0,
        ("block1a_project_activation", "block2b_add", "block3b_add", "block5e_add"),
        (16, 32, 48, 112, 1280),
    ),
    "efficientnetv2b1": (
        _APPS.EfficientNetV2B1,
        ("block1b_add", "block2c_add", "block3c_add", "block5f_add"),
        (16, 32, 48, 112, 1280),
    ),
    "efficientnetv2b2": (
        _APPS.EfficientNetV2B2,
        ("block1b_add", "block2c_add", "block3c_add", "block5f_add"),
        (16, 32, 56, 120, 1408),
    ),
    "efficientnetv2b3": (
        _APPS.EfficientNetV2B3,
        ("block1b_add", "block2c_add", "block3c_add", "block5g_add"),
        (16, 40, 56, 136, 1536),
    ),
    "efficientnetv2s": (
        _APPS.EfficientNetV2S,
        ("block1b_add", "block2d_add", "block3d_add", "block5i_add"),
        (24, 48, 64, 160, 1280),
    ),
    "efficientnetv2m": (
        _APPS.EfficientNetV2M,
        ("block1c_add", "block2e_add", "block3e_add", "block5n_add"),
        (24, 48, 80, 176, 1280),
    ),
    "efficientnetv2l": (
        _APPS.EfficientNetV2L,
        ("block1d_add", "block2g_add", "block3g_add", "block5s_add"),
        (32, 64, 96, 224, 1280),
    ),
}


def _efficientnetv2_preprocessing(name: str) -> Callable:
    if name[len("efficientnetv2") :].startswith("b"):  # as keras.applications: B0-B3 use ImageNet mean/std
        return lambda x: input_preprocessing(x, scale=1.0 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return lambda x: input_preprocessing(x, scale=1.0 / 128.0, offset=-1.0)


for _name, (_ctor, _feats, _chans) in _EFFICIENTNETV2.items():
    _features = dict(zip((2, 4, 8, 16, 32), _feats + ("top_activation",)))
    register_backbone(
        BackboneSpec(
            name=_name,
            family="efficientnetv2",
            builder=_keras_app_builder(_ctor, _name, _efficientnetv2_preprocessing(_name), include_preprocessing=False),
            features=_features,
            channels=dict(zip((2, 4, 8, 16, 32), _chans)),
            default_skips=_skips(_features),
            preprocessing="identity",
            first_conv="stem_conv",
            description=f"EfficientNetV2-{_name[len('efficientnetv2') :].upper()} (keras.applications)",
            weights_layout="by_order",
            notes="normalises inside the model (images in 0..255): B0-B3 ImageNet mean/std, S/M/L to [-1, 1]",
        )
    )


# ---- MobileNetV3 -------------------------------------------------------------------------
def _mobilenetv3_preprocessing(x):
    return input_preprocessing(x, scale=1.0 / 127.5, offset=-1.0)


_MOBILENETV3 = {
    "mobilenetv3small": (
        _APPS.MobileNetV3Small,
        ("conv_bn_activation", "expanded_conv_project_bn", "expanded_conv_2_add", "expanded_conv_7_add"),
        (16, 16, 24, 48, 576),
    ),
    "mobilenetv3large": (
        _APPS.MobileNetV3Large,
        ("expanded_conv_add", "expanded_conv_2_add", "expanded_conv_5_add", "expanded_conv_11_add"),
        (16, 24, 40, 112, 960),
    ),
}

for _name, (_ctor, _feats, _chans) in _MOBILENETV3.items():
    _features = dict(zip((2, 4, 8, 16, 32), _feats + ("conv_1_bn_activation",)))
    register_backbone(
        BackboneSpec(
            name=_name,
            family="mobilenetv3",
            builder=_keras_app_builder(_ctor, _name, _mobilenetv3_preprocessing, include_preprocessing=False),
            features=_features,
            channels=dict(zip((2, 4, 8, 16, 32), _chans)),
            default_skips=_skips(_features),
            preprocessing="identity",
            first_conv="conv",
            description=f"MobileNetV3-{_name[11:].capitalize()} 1.0 (keras.applications)",
            weights_layout="by_order",
            notes="scales to [-1, 1] inside the model (images in 0..255)",
        )
    )


# ---- ResNetV2 ----------------------------------------------------------------------------
_RESNETV2 = {
    "resnet50v2": (_APPS.ResNet50V2, (3, 4, 6, 3)),
    "resnet101v2": (_APPS.ResNet101V2, (3, 4, 23, 3)),
    "resnet152v2": (_APPS.ResNet152V2, (3, 8, 36, 3)),
}

for _name, (_ctor, _blocks) in _RESNETV2.items():
    # pre-activation: a stage's map at its full resolution is the pre-activation of its last
    # (strided) block; stride 2 is the stem convolution (ResNetV2 has no BN/ReLU there)
    _features = {
        2: "conv1_conv",
        4: f"conv2_block{_blocks[0]}_preact_relu",
        8: f"conv3_block{_blocks[1]}_preact_relu",
        16: f"conv4_block{_blocks[2]}_preact_relu",
        32: "post_relu",
    }
    register_backbone(
        BackboneSpec(
            name=_name,
            family="resnetv2",
            builder=_keras_app_builder(_ctor, _name),
            features=_features,
            channels={2: 64, 4: 256, 8: 512, 16: 1024, 32: 2048},
            default_skips=_skips(_features),
            preprocessing="tf",
            first_conv="conv1_conv",
            description=f"ResNet-{_name[6:-2]} v2 (pre-activation, keras.applications)",
            weights_layout="by_order",
            notes="stride-2 map is the stem convolution's output (no BN/ReLU there in ResNetV2)",
        )
    )


# ---- Xception ----------------------------------------------------------------------------
# Xception's two stem convolutions are 'valid' (H -> H/2 - 3): a 3-pixel zero border on the input
# makes the feature maps exactly H/2 ... H/32 for H divisible by 32, so every decoder fits, with the
# published weights unchanged (the stride-2 map's pixel j is centred over input pixel 2j).
_XCEPTION_FEATURES = {
    2: "block1_conv2_act",
    4: "block2_pool_add",
    8: "block3_pool_add",
    16: "block12_sepconv3_bn_add",
    32: "block14_sepconv2_act",
}
register_backbone(
    BackboneSpec(
        name="xception",
        family="xception",
        builder=_keras_app_builder(_APPS.Xception, "xception", input_padding=3),
        features=_XCEPTION_FEATURES,
        channels={2: 64, 4: 128, 8: 256, 16: 728, 32: 2048},
        default_skips=_skips(_XCEPTION_FEATURES),
        preprocessing="tf",
        first_conv="block1_conv1",
        description="Xception (keras.applications)",
        weights_layout="by_order",
        notes="input zero-padded by 3 pixels ('valid' stem) so that maps are exactly H/2 ... H/32",
    )
)
