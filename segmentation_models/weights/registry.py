"""Registry of pretrained weight files: (backbone, weights name) -> URL, file name, hash.

Every file is the original public one with its published hash; each backbone family module registers
its own files (`register_published`) beside the family's definition. Users add their own with
`register_weights` or with a JSON file named by the ``SM_WEIGHTS_REGISTRY`` environment variable::

    [{"backbone": "resnet34", "name": "imagenet", "url": "/data/r34.h5", "hash": "<md5 or sha256>"}]
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "WeightsEntry",
    "register_weights",
    "register_published",
    "get_weights_entry",
    "available_weights",
    "REGISTRY_ENV",
    "IMAGE_CLASSIFIERS_URL",
    "KERAS_APPLICATIONS_URL",
]

REGISTRY_ENV = "SM_WEIGHTS_REGISTRY"
WEIGHT_FORMATS = ("keras-h5", "safetensors")

# Release folders that several families take their published files from.
IMAGE_CLASSIFIERS_URL = "https://github.com/qubvel/classification_models/releases/download/0.0.1/"
KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


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


def register_published(
    source: str, hashes: Mapping[str, str], url: str | Callable[[str], str], name: str = "imagenet"
) -> None:
    """Register files published by ``source`` as the weights ``name`` of backbones.

    ``hashes``: ``{backbone: the md5 or sha256 published with its file}``; ``url``: the file's URL, a template
    with a ``{backbone}`` field or a function of the backbone name.
    """
    for backbone, file_hash in hashes.items():
        address = url.format(backbone=backbone) if isinstance(url, str) else url(backbone)
        register_weights(backbone, name, address, file_hash, source=source)
