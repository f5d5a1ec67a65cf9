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
                item["backbone"], item.get("name", "imagenet"), item["url"], item.get("hash"),
                item.get("filename"), item.get("format", "keras-h5"), source=f"{REGISTRY_ENV}:{path}",
            )
        except KeyError as err:
            raise ValueError(f"{path}: each entry needs 'backbone' and 'url' (and usually 'hash'); missing {err}") from err
    _loaded_env_file = path


def get_weights_entry(backbone: str, name: str) -> WeightsEntry:
    """The entry for (``backbone``, ``name``) or a ValueError saying what exists."""
    _load_env_registry()
    entry = _WEIGHTS.get((backbone, name))
    if entry is None:
        names = sorted(n for b, n in _WEIGHTS if b == backbone)
        have = f"available for {backbone!r}: {names}" if names else f"no pretrained weights are registered for {backbone!r}"
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
    "resnet152", "imagenet11k", _IC + "resnet152_imagenet11k_11221_no_top.h5",
    "25ab66dec217cb774a27d0f3659cafb3", source="image-classifiers 1.0.0",
)

_KA = "https://storage.googleapis.com/tensorflow/keras-applications/"
register_weights("vgg16", "imagenet", _KA + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "6d6bbae143d832006294945121d1f1fc", source="keras-applications")
register_weights("vgg19", "imagenet", _KA + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "253f8cb515780f3b799900260a226db6", source="keras-applications")

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
    ("convnext_tiny", "convnext/convnext_tiny_notop.h5",
     "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    ("convnext_small", "convnext/convnext_small_notop.h5",
     "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab"),
    ("convnext_base", "convnext/convnext_base_notop.h5",
     "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45"),
    ("convnext_large", "convnext/convnext_large_notop.h5",
     "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd"),
    ("mobilenetv3small", "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
     "d3e8ec802a04aa4fc771ee12a9a9b836"),
    ("mobilenetv3large", "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
     "07fb09a5933dd0c8eaafa16978110389"),
    ("resnet50v2", "resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5", "fac2f116257151a9d068a22e544a4917"),
    ("resnet101v2", "resnet/resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5", "c0ed64b8031c3730f411d2eb4eea35b5"),
    ("resnet152v2", "resnet/resnet152v2_weights_tf_dim_ordering_tf_kernels_notop.h5", "ed17cf2e0169df9d443503ef94b23b33"),
    ("xception", "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5", "b0042744bf5b25fce3cb969f33bebb97"),
]:
    register_weights(_bb, "imagenet", _KA + _file, _hash, source=_KA_SOURCE)
