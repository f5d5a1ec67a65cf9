"""Converted (PyTorch-origin) checkpoints: reading safetensors files and per-family converters.

A converter maps the tensors of a reference checkpoint (PyTorch names and layouts) to
``{Keras layer name: [arrays]}``; it is registered for a backbone family with `register_converter`
and used by `segmentation_models.backbones.factory.load_encoder_weights` whenever the weights file
is in the ``safetensors`` format. Checkpoints are never read with pickle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import numpy as np

from .loading import WeightsMismatchError

__all__ = ["register_converter", "get_converter", "read_safetensors", "is_safetensors_file"]

Converter = Callable[..., "dict[str, list[np.ndarray]]"]
_CONVERTERS: dict[str, Converter] = {}


def register_converter(family: str, converter: Converter) -> None:
    """Register ``converter(model, spec, tensors, source) -> {layer name: arrays}`` for ``family``."""
    _CONVERTERS[family] = converter


def get_converter(family: str) -> Converter:
    if family not in _CONVERTERS:
        raise WeightsMismatchError(
            f"safetensors checkpoints cannot be converted for the {family!r} family (converters exist for "
            f"{sorted(_CONVERTERS)}); use a Keras .h5 weights file for this backbone."
        )
    return _CONVERTERS[family]


def is_safetensors_file(path: str | os.PathLike) -> bool:
    """True when ``path`` starts like a safetensors file (8-byte header length, then a JSON header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return 0 < size < (1 << 30) and head[8:9] == b"{"


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays (no torch, no pickle)."""
    try:
        from safetensors.numpy import load_file
    except ImportError as err:  # pragma: no cover - safetensors is a core dependency
        raise ImportError(
            "reading converted checkpoints needs the 'safetensors' package: pip install safetensors"
        ) from err
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise WeightsMismatchError(f"{path} is not a readable safetensors file: {err}") from err


def convert_checkpoint(model, spec, path, source: str) -> Mapping[str, list]:
    """Read the safetensors file at ``path`` and convert it with ``spec.family``'s converter."""
    converter = get_converter(spec.family)
    return converter(model, spec, read_safetensors(path), source)
