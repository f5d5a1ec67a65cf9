"""Registry of pretrained weight files: (backbone, weights name) -> URL, file name, hash.

Every file is the original public one with its published hash. Users add their own with
`register_weights` or with a JSON file named by the ``SM_WEIGHTS_REGISTRY`` environment variable::

    [{"backbone": "resnet34", "name": "imagenet", "url": "/data/r34.h5", "hash": "<md5 or sha256>"}]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WeightsEntry", "register_weights", "get_weights_entry", "available_weights", "REGISTRY_ENV"]

REGISTRY_ENV = "SM_WEIGHTS_REGISTRY"
WEIGHT_FORMATS = ("keras-h5", "safetensors")


@dataclass(frozen=True)
class WeightsEntry:
    """One downloadable weights file.

    ``url`` may be an http(s) URL, a ``file://`` URL or a local path. ``file_hash`` is the md5
    (32 hex digits) or sha256 (64 hex digits) of the file; ``None`` only for user entries that
    accept any content. ``format`` is ``keras-h5`` (weights keyed by layer name, as saved by
    Keras 2 / keras-applications / image-classifiers) or ``safetensors`` (converted checkpoints).
    """

    backbone: str
    name: str
    url: str
    filename: str
    file_hash: str | None
    format: str = "keras-h5"
    source: str = ""

    @property
    def hash_algorithm(self) -> str | None:
        if self.file_hash is None:
            return None
        return {32: "md5", 64: "sha256"}[len(self.file_hash)]


_WEIGHTS: dict[tuple[str, str], WeightsEntry] = {}
_loaded_env_file: str | None = None


def register_weights(
    backbone: str,
    name: str,
    url: str | os.PathLike,
    file_hash: str | None = None,
    filename: str | None = None,
    format: str = "keras-h5",
    source: str = "user",
    overwrite: bool = True,
) -> WeightsEntry:
    """Register (or replace) the weights ``name`` of ``backbone`` at ``url`` (URL or local path)."""
    url = os.fspath(url)
    if file_hash is not None:
        file_hash = file_hash.strip().lower()
        if len(file_hash) not in (32, 64) or any(c not in "0123456789abcdef" for c in file_hash):
            raise ValueError(f"file_hash must be an md5 (32 hex digits) or sha256 (64 hex digits), got {file_hash!r}")
    if format not in WEIGHT_FORMATS:
        raise ValueError(f"format must be one of {WEIGHT_FORMATS}, got {format!r}")
    if filename is None:
        filename = Path(url.split("?")[0]).name or f"{backbone}_{name}.h5"
    key = (backbone, name)
    if key in _WEIGHTS and not overwrite:
        raise ValueError(f"weights {name!r} for {backbone!r} are already registered")
    entry = WeightsEntry(backbone, name, url, filename, file_hash, format, source)
    _WEIGHTS[key] = entry
    return entry


def _load_env_registry() -> None:
    """Read the user registry file named by SM_WEIGHTS_REGISTRY (once per distinct value)."""
    global _loaded_env_file
    path = os.environ.get(REGISTRY_ENV)
    if not path or path == _loaded_env_file:
        return
    try:
        items = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{REGISTRY_ENV}={path!r} must name a readable JSON file of weight entries: {err}") from err
    if isinstance(items, dict):
        items = [items]
    for item in items:
        try:
            register_weights(
                item["backbone"],
                item.get("name", "imagenet"),
                item["url"],
                item.get("hash"),
                item.get("filename"),
                item.get("format", "keras-h5"),
                source=f"{REGISTRY_ENV}:{path}",
            )
        except KeyError as err:
            raise ValueError(
                f"{path}: each entry needs 'backbone' and 'url' (and usually 'hash'); missing {err}"
            ) from err
    _loaded_env_file = path


def get_weights_entry(backbone: str, name: str) -> WeightsEntry:
    """The entry for (``backbone``, ``name``) or a ValueError saying what exists."""
    _load_env_registry()
    entry = _WEIGHTS.get((backbone, name))
    if entry is None:
        names = sorted(n for b, n in _WEIGHTS if b == backbone)
        have = (
            f"available for {backbone!r}: {names}"
            if names
            else f"no pretrained weights are registered for {backbone!r}"
        )
        raise ValueError(
            f"No {name!r} weights for backbone {backbone!r} ({have}). Use encoder_weights=None for random "
            "initialisation, a path to a weights file, or segmentation_models.weights.register_weights(...)."
        )
    return entry


def available_weights(backbone: str | None = None) -> list[WeightsEntry]:
    """All registered entries (of ``backbone`` if given)."""
    _load_env_registry()
    return [e for (b, _), e in _WEIGHTS.items() if backbone is None or b == backbone]


# --- the published files -------------------------------------------------------------------
_IC = "https://github.com/qubvel/classification_models/releases/download/0.0.1/"
for _bb, _md5 in {
    "resnet18": "318e3ac0cd98d51e917526c9f62f0b50",
    "resnet34": "8caaa0ad39d927cb8ba5385bf945d582",
    "resnet50": "db3b217156506944570ac220086f09b6",
    "resnet101": "1016e7663980d5597a4e224d915c342d",
    "resnet152": "5867b94098df4640918941115db93734",
}.items():
    register_weights(_bb, "imagenet", _IC + f"{_bb}_imagenet_1000_no_top.h5", _md5, source="image-classifiers 1.0.0")
register_weights(
    "resnet152",
    "imagenet11k",
    _IC + "resnet152_imagenet11k_11221_no_top.h5",
    "25ab66dec217cb774a27d0f3659cafb3",
    source="image-classifiers 1.0.0",
)

_KA = "https://storage.googleapis.com/tensorflow/keras-applications/"
register_weights(
    "vgg16",
    "imagenet",
    _KA + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "6d6bbae143d832006294945121d1f1fc",
    source="keras-applications",
)
register_weights(
    "vgg19",
    "imagenet",
    _KA + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "253f8cb515780f3b799900260a226db6",
    source="keras-applications",
)

# --- the rest of the segmentation_models 1.0.1 backbone set (branch bb101) ----------------------
# MobileNets: the URLs keras-applications 1.0.8 used; it recorded no hash, these md5s are the
# ones published with mirrors of the same files.
register_weights(
    "mobilenet",
    "imagenet",
    "https://github.com/fchollet/deep-learning-models/releases/download/v0.6/mobilenet_1_0_224_tf_no_top.h5",
    "725ccbd03d61d7ced5b5c4cd17e7d527",
    source="keras-applications 1.0.8",
)
register_weights(
    "mobilenetv2",
    "imagenet",
    "https://github.com/JonathanCMitchell/mobilenet_v2_keras/releases/download/v1.1/"
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    "f1a68526548f7541cda07e19ba6c85f4",
    source="keras-applications 1.0.8",
)

_EFF = "https://github.com/Callidior/keras-applications/releases/download/efficientnet/"
for _bb, _sha256 in {  # efficientnet 1.0.0 WEIGHTS_HASHES (no-top, autoaugment)
    "b0": "c1421ad80a9fc67c2cc4000f666aa50789ce39eedb4e06d531b0c593890ccff3",
    "b1": "75de265d03ac52fa74f2f510455ba64f9c7c5fd96dc923cd4bfefa3d680c4b68",
    "b2": "433b60584fafba1ea3de07443b74cfd32ce004a012020b07ef69e22ba8669333",
    "b3": "c5d42eb6cfae8567b418ad3845cfd63aa48b87f1bd5df8658a49375a9f3135c7",
    "b4": "7942c1407ff1feb34113995864970cd4d9d91ea64877e8d9c38b6c1e0767c411",
    "b5": "9d197bc2bfe29165c10a2af8c2ebc67507f5d70456f09e584c71b822941b1952",
    "b6": "1d0923bb038f2f8060faaf0a0449db4b96549a881747b7c7678724ac79f427ed",
    "b7": "60b56ff3a8daccc8d96edfd40b204c113e51748da657afd58034d54d3cec2bac",
}.items():
    register_weights(
        f"efficientnet{_bb}",
        "imagenet",
        _EFF + f"efficientnet-{_bb}_weights_tf_dim_ordering_tf_kernels_autoaugment_notop.h5",
        _sha256,
        source="efficientnet 1.0.0",
    )

# --- MiT (SegFormer) encoders: NVIDIA's ImageNet-1k checkpoints, safetensors, converted on load ----
# Hugging Face tensor names (SegformerForImageClassification); the classifier is dropped on load.
# Only files whose published sha256 could be verified are registered (mit_b0/b2/b4: none yet).
_HF = "https://huggingface.co/nvidia/{repo}/resolve/{commit}/model.safetensors"
for _bb, (_commit, _sha256) in {
    "mit_b1": (
        "44575a0572f5374ed1e5b4e46ec8276222f6ffe8",
        "4c19537dff32bbaa876174c371759ac1046c980bbf8096273bb03261429bdce1",
    ),
    "mit_b3": (
        "4c2f314b6a213100cb822264a737f39d1ce062b8",
        "8de18cbe1efd929b0caa6b54edb92a4524e10e4d6f9468645933af15f5b2923e",
    ),
    "mit_b5": (
        "8c15ac959fdc3130572f9320d6955cef46046a72",
        "ce3ad22d97c4352b2f28a5a732f547de19b9a03a8be2e769e12ff07c34febec0",
    ),
}.items():
    register_weights(
        _bb,
        "imagenet",
        _HF.format(repo=_bb.replace("_", "-"), commit=_commit),
        _sha256,
        filename=f"{_bb}_imagenet_nvidia.safetensors",
        format="safetensors",
        source="nvidia (Hugging Face hub)",
    )
for _bb, _md5 in {  # image-classifiers 1.0.0 WEIGHTS_COLLECTION (ImageNet, no top)
    "seresnet18": "a46e5cd4114ac946ecdc58741e8d92ea",
    "seresnet34": "3348fd049f1f9ad307c070ff2b6ec4cb",
    "seresnet50": "043777781b0d5ca756474d60bf115ef1",
    "seresnet101": "1c373b0c196918713da86951d1239007",
    "seresnet152": "f58d4c1a511c7445ab9a2c2b83ee4e7b",
    "seresnext50": "b0f23d2e1cd406d67335fb92d85cc279",
    "seresnext101": "e48708cbe40071cc3356016c37f6c9c7",
    "senet154": "d854ff2cd7e6a87b05a8124cd283e0f2",
    "resnext50": "7ade5c8aac9194af79b1724229bdaa50",
    "resnext101": "91fe0126320e49f6ee607a0719828c7e",
}.items():
    register_weights(_bb, "imagenet", _IC + f"{_bb}_imagenet_1000_no_top.h5", _md5, source="image-classifiers 1.0.0")

_DN = "https://github.com/keras-team/keras-applications/releases/download/densenet/"
for _bb, _md5 in {  # keras-applications 1.0.8 densenet.py (no top)
    "densenet121": "30ee3e1110167f948a6b9946edeeb738",
    "densenet169": "b8c4d4c20dd625c148057b9ff1c1176b",
    "densenet201": "c13680b51ded0fb44dff2d8f86ac8bb1",
}.items():
    register_weights(
        _bb,
        "imagenet",
        _DN + f"{_bb}_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _md5,
        source="keras-applications 1.0.8",
    )

register_weights(
    "inceptionv3",
    "imagenet",  # keras-applications 1.0.8 / segmentation_models 1.0.1
    "https://github.com/fchollet/deep-learning-models/releases/download/v0.5/"
    "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "bcbd6486424b2319ff4ef7d526e38f63",
    source="keras-applications 1.0.8",
)
register_weights(
    "inceptionresnetv2",
    "imagenet",
    "https://github.com/fchollet/deep-learning-models/releases/download/v0.7/"
    "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "d19885ff4a710c122648d3b5c3b684e4",
    source="keras-applications 1.0.8",
)
# --- keras.applications ImageNet files of the modern families (URLs and hashes from Keras 3's
# keras/src/applications/*.py; loaded by position, see BackboneSpec.weights_layout) -------------
_KA_SOURCE = "keras.applications (Keras 3)"
for _bb, _file, _hash in [
    ("efficientnetv2b0", "efficientnet_v2/efficientnetv2-b0_notop.h5", "893217f2bb855e2983157299931e43ff"),
    ("efficientnetv2b1", "efficientnet_v2/efficientnetv2-b1_notop.h5", "0e80663031ca32d657f9caa404b6ec37"),
    ("efficientnetv2b2", "efficientnet_v2/efficientnetv2-b2_notop.h5", "1dfe2e7a5d45b6632553a8961ea609eb"),
    ("efficientnetv2b3", "efficientnet_v2/efficientnetv2-b3_notop.h5", "f6abf7b5849ac99a89b50dd3fd532856"),
    ("efficientnetv2s", "efficientnet_v2/efficientnetv2-s_notop.h5", "af0682fb74e8c54910f2d4393339c070"),
    ("efficientnetv2m", "efficientnet_v2/efficientnetv2-m_notop.h5", "1b8dc055df72dde80d614482840fe342"),
    ("efficientnetv2l", "efficientnet_v2/efficientnetv2-l_notop.h5", "b0b66b5c863aef5b46e8608fe1711615"),
    (
        "convnext_tiny",
        "convnext/convnext_tiny_notop.h5",
        "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
    ),
    (
        "convnext_small",
        "convnext/convnext_small_notop.h5",
        "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab",
    ),
    (
        "convnext_base",
        "convnext/convnext_base_notop.h5",
        "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45",
    ),
    (
        "convnext_large",
        "convnext/convnext_large_notop.h5",
        "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd",
    ),
    (
        "mobilenetv3small",
        "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        "d3e8ec802a04aa4fc771ee12a9a9b836",
    ),
    (
        "mobilenetv3large",
        "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        "07fb09a5933dd0c8eaafa16978110389",
    ),
    ("resnet50v2", "resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5", "fac2f116257151a9d068a22e544a4917"),
    (
        "resnet101v2",
        "resnet/resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "c0ed64b8031c3730f411d2eb4eea35b5",
    ),
    (
        "resnet152v2",
        "resnet/resnet152v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "ed17cf2e0169df9d443503ef94b23b33",
    ),
    ("xception", "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5", "b0042744bf5b25fce3cb969f33bebb97"),
]:
    register_weights(_bb, "imagenet", _KA + _file, _hash, source=_KA_SOURCE)
