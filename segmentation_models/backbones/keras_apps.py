"""Modern backbones built by keras.applications: EfficientNetV2, MobileNetV3, ResNetV2, Xception.

Each family is keras.applications' own builder (``include_top=False, weights=None``) on our input,
so the published keras.applications ImageNet ``_notop.h5`` files (registered here, with the URLs and
hashes Keras 3 records) fit layer for layer. Those files are loaded by position, as keras.applications
does (``weights_layout="by_order"``): their stored names are Keras 2 names (``Conv/BatchNorm``) or auto
names (``conv2d_3``) that Keras 3 does not reproduce.

Layers keras.applications leaves unnamed (activations, residual adds, Xception's shortcut convolutions)
get deterministic names after the build (`name_unnamed_layers`), so feature maps are picked by names
that are the same in every session, and full-model weights saved by name reload anywhere.

Input normalisation that keras.applications puts inside the model (EfficientNetV2, MobileNetV3) is
rebuilt in front of the builder with per-channel statistics cycled over the input channels, so that
inputs with 1, 2, 4, ... channels work (`input_preprocessing`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import keras
from keras import layers

from ..weights.registry import KERAS_APPLICATIONS_URL, register_published
from .registry import by_stride, register_family

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


KERAS_3 = "keras.applications (Keras 3)"


def register_application_family(
    family: str,
    variants: Mapping[str, tuple[Callable, str, Sequence[int]]],
    files: tuple[str, Mapping[str, str]],
    describe: Callable[[str], str],
    preprocess: Callable[[str], Callable | None] = lambda name: None,
    input_padding: int = 0,
    **shared,
) -> None:
    """Register keras.applications models as backbones of ``family``, with their ImageNet files.

    ``variants``: ``{name: (constructor, feature layers at strides 2..32 separated by spaces, their channels)}``;
    ``files``: a path under `KERAS_APPLICATIONS_URL` with ``{name}``/``{variant}`` (the name after the family)
    fields, and ``{name: hash}``, as Keras 3's keras/src/applications/*.py record them; ``describe(name)``: the
    description; ``preprocess(name)``: the input normalisation keras.applications would put inside the model,
    rebuilt in front of it (None: none).
    """
    specs = {}
    for name, (constructor, features, channels) in variants.items():
        normalise = preprocess(name)
        options = {"include_preprocessing": False} if normalise else {}
        specs[name] = dict(
            builder=_keras_app_builder(constructor, name, normalise, input_padding, **options),
            features=by_stride(features),
            channels=by_stride(channels),
            description=describe(name),
        )
    register_family(family, specs, weights_layout="by_order", **shared)
    path, hashes = files
    register_published(
        KERAS_3, hashes, lambda name: KERAS_APPLICATIONS_URL + path.format(name=name, variant=name[len(family) :])
    )


_APPS = keras.applications


# ---- EfficientNetV2 ----------------------------------------------------------------------
def _efficientnetv2_preprocessing(name: str) -> Callable:
    if name[len("efficientnetv2") :].startswith("b"):  # as keras.applications: B0-B3 use ImageNet mean/std
        return lambda x: input_preprocessing(x, scale=1.0 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return lambda x: input_preprocessing(x, scale=1.0 / 128.0, offset=-1.0)


def _efficientnetv2_features(blocks: str) -> str:
    """Strides 2..16: the residual adds of the last blocks of stages 1, 2, 3 and 5 (B0's stage 1 is one block
    without residual: its projection's activation); stride 32: the head."""
    ends = [f"block{b}_add" if b != "1a" else "block1a_project_activation" for b in blocks.split()]
    return " ".join(ends) + " top_activation"


register_application_family(
    "efficientnetv2",
    {
        name: (constructor, _efficientnetv2_features(blocks), channels)
        for name, (constructor, blocks, channels) in {
            "efficientnetv2b0": (_APPS.EfficientNetV2B0, "1a 2b 3b 5e", (16, 32, 48, 112, 1280)),
            "efficientnetv2b1": (_APPS.EfficientNetV2B1, "1b 2c 3c 5f", (16, 32, 48, 112, 1280)),
            "efficientnetv2b2": (_APPS.EfficientNetV2B2, "1b 2c 3c 5f", (16, 32, 56, 120, 1408)),
            "efficientnetv2b3": (_APPS.EfficientNetV2B3, "1b 2c 3c 5g", (16, 40, 56, 136, 1536)),
            "efficientnetv2s": (_APPS.EfficientNetV2S, "1b 2d 3d 5i", (24, 48, 64, 160, 1280)),
            "efficientnetv2m": (_APPS.EfficientNetV2M, "1c 2e 3e 5n", (24, 48, 80, 176, 1280)),
            "efficientnetv2l": (_APPS.EfficientNetV2L, "1d 2g 3g 5s", (32, 64, 96, 224, 1280)),
        }.items()
    },
    (
        "efficientnet_v2/efficientnetv2-{variant}_notop.h5",
        {
            "efficientnetv2b0": "893217f2bb855e2983157299931e43ff",
            "efficientnetv2b1": "0e80663031ca32d657f9caa404b6ec37",
            "efficientnetv2b2": "1dfe2e7a5d45b6632553a8961ea609eb",
            "efficientnetv2b3": "f6abf7b5849ac99a89b50dd3fd532856",
            "efficientnetv2s": "af0682fb74e8c54910f2d4393339c070",
            "efficientnetv2m": "1b8dc055df72dde80d614482840fe342",
            "efficientnetv2l": "b0b66b5c863aef5b46e8608fe1711615",
        },
    ),
    lambda name: f"EfficientNetV2-{name[len('efficientnetv2') :].upper()} (keras.applications)",
    preprocess=_efficientnetv2_preprocessing,
    preprocessing="identity",
    first_conv="stem_conv",
    notes="normalises inside the model (images in 0..255): B0-B3 ImageNet mean/std, S/M/L to [-1, 1]",
)


# ---- MobileNetV3 -------------------------------------------------------------------------
register_application_family(
    "mobilenetv3",
    {
        "mobilenetv3small": (
            _APPS.MobileNetV3Small,
            "conv_bn_activation expanded_conv_project_bn expanded_conv_2_add expanded_conv_7_add conv_1_bn_activation",
            (16, 16, 24, 48, 576),
        ),
        "mobilenetv3large": (
            _APPS.MobileNetV3Large,
            "expanded_conv_add expanded_conv_2_add expanded_conv_5_add expanded_conv_11_add conv_1_bn_activation",
            (16, 24, 40, 112, 960),
        ),
    },
    (
        "mobilenet_v3/weights_mobilenet_v3_{variant}_224_1.0_float_no_top_v2.h5",
        {
            "mobilenetv3small": "d3e8ec802a04aa4fc771ee12a9a9b836",
            "mobilenetv3large": "07fb09a5933dd0c8eaafa16978110389",
        },
    ),
    lambda name: f"MobileNetV3-{name[11:].capitalize()} 1.0 (keras.applications)",
    preprocess=lambda name: lambda x: input_preprocessing(x, scale=1.0 / 127.5, offset=-1.0),
    preprocessing="identity",
    first_conv="conv",
    notes="scales to [-1, 1] inside the model (images in 0..255)",
)


# ---- ResNetV2 ----------------------------------------------------------------------------
def _resnetv2_features(blocks: Sequence[int]) -> str:
    """Pre-activation: a stage's map at its full resolution is the pre-activation of its last (strided) block;
    stride 2 is the stem convolution (ResNetV2 has no BN/ReLU there)."""
    stages = " ".join(f"conv{i + 2}_block{n}_preact_relu" for i, n in enumerate(blocks[:3]))
    return f"conv1_conv {stages} post_relu"


register_application_family(
    "resnetv2",
    {
        name: (constructor, _resnetv2_features(blocks), (64, 256, 512, 1024, 2048))
        for name, constructor, blocks in (
            ("resnet50v2", _APPS.ResNet50V2, (3, 4, 6, 3)),
            ("resnet101v2", _APPS.ResNet101V2, (3, 4, 23, 3)),
            ("resnet152v2", _APPS.ResNet152V2, (3, 8, 36, 3)),
        )
    },
    (
        "resnet/{name}_weights_tf_dim_ordering_tf_kernels_notop.h5",
        {
            "resnet50v2": "fac2f116257151a9d068a22e544a4917",
            "resnet101v2": "c0ed64b8031c3730f411d2eb4eea35b5",
            "resnet152v2": "ed17cf2e0169df9d443503ef94b23b33",
        },
    ),
    lambda name: f"ResNet-{name[6:-2]} v2 (pre-activation, keras.applications)",
    preprocessing="tf",
    first_conv="conv1_conv",
    notes="stride-2 map is the stem convolution's output (no BN/ReLU there in ResNetV2)",
)

# ---- Xception ----------------------------------------------------------------------------
# Xception's two stem convolutions are 'valid' (H -> H/2 - 3): a 3-pixel zero border on the input
# makes the feature maps exactly H/2 ... H/32 for H divisible by 32, so every decoder fits, with the
# published weights unchanged (the stride-2 map's pixel j is centred over input pixel 2j).
register_application_family(
    "xception",
    {
        "xception": (
            _APPS.Xception,
            "block1_conv2_act block2_pool_add block3_pool_add block12_sepconv3_bn_add block14_sepconv2_act",
            (64, 128, 256, 728, 2048),
        )
    },
    ("xception/{name}_weights_tf_dim_ordering_tf_kernels_notop.h5", {"xception": "b0042744bf5b25fce3cb969f33bebb97"}),
    lambda name: "Xception (keras.applications)",
    input_padding=3,
    preprocessing="tf",
    first_conv="block1_conv1",
    notes="input zero-padded by 3 pixels ('valid' stem) so that maps are exactly H/2 ... H/32",
)
