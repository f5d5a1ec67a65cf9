"""Building an encoder: input, backbone, pretrained weights, feature selection, freezing."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import keras

from ..validation import check_input_shape
from ..weights import fetch_weights, get_weights_entry, read_h5_weights
from ..weights.loading import WeightsMismatchError, assign_weights
from .registry import BackboneSpec, get_backbone_spec

logger = logging.getLogger("segmentation_models")

# 1.0.1 forwarded these to keras-applications; they mean nothing in Keras 3 and are ignored.
_LEGACY_SUBMODULE_KWARGS = ("backend", "layers", "models", "utils")


@dataclass
class Encoder:
    """A built backbone and what decoders need from it."""

    model: keras.Model
    spec: BackboneSpec

    @property
    def input(self):
        return self.model.input

    @property
    def output(self):
        return self.model.output

    def layer_output(self, ref: str | int):
        """Output of a backbone layer given by name or index, with a helpful error."""
        try:
            layer = self.model.get_layer(name=ref) if isinstance(ref, str) else self.model.get_layer(index=ref)
        except (ValueError, IndexError):
            names = [l.name for l in self.model.layers if not l.name.endswith("_pad")]
            raise ValueError(
                f"encoder_features: {ref!r} is not a layer of backbone {self.spec.name!r} "
                f"(it has {len(self.model.layers)} layers; e.g. {names[-8:]}). "
                f"Its default feature layers are {list(self.spec.default_skips)}."
            ) from None
        return layer.output

    def feature(self, stride: int):
        """The feature map at ``stride`` (2, 4, 8, 16, 32)."""
        if stride not in self.spec.features:
            raise ValueError(f"backbone {self.spec.name!r} has no feature map at stride {stride}; it has {sorted(self.spec.features)}")
        return self.layer_output(self.spec.features[stride])

    def skips(self, encoder_features, n: int) -> list:
        """Skip tensors, deepest first: 1.0.1's defaults or the user's names/indices."""
        if encoder_features == "default":
            refs: Sequence = list(self.spec.default_skips)[:n]
        elif isinstance(encoder_features, (list, tuple)):
            refs = list(encoder_features)
        else:
            raise ValueError(f"encoder_features must be 'default' or a list of layer names/indices, got {encoder_features!r}")
        return [self.layer_output(r) for r in refs]


def _check_kwargs(kwargs: dict) -> dict:
    options = {}
    for key, value in kwargs.items():
        if key in _LEGACY_SUBMODULE_KWARGS:
            continue
        if key in ("output_stride",):
            options[key] = value
            continue
        raise TypeError(
            f"Unexpected keyword argument {key!r}. Builders accept their documented arguments plus "
            f"input_tensor (a Keras tensor to build on)."
        )
    return options


def _make_input(input_shape, input_tensor, spec: BackboneSpec, size_multiple: int):
    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise ValueError("input_tensor must be a Keras tensor, e.g. keras.Input(shape=(256, 256, 3))")
        shape = tuple(input_tensor.shape[1:])
        check_input_shape(shape, size_multiple, spec.min_input_size)
        return input_tensor
    shape = check_input_shape(input_shape, size_multiple, spec.min_input_size)
    return keras.Input(shape=shape, name="input")


def resolve_weights_path(backbone: str, encoder_weights: str) -> tuple[str, str]:
    """(local path, description) for a registered weights name or a path."""
    if os.path.isfile(str(encoder_weights)):
        return str(encoder_weights), f"weights file {os.path.basename(str(encoder_weights))}"
    if isinstance(encoder_weights, str) and any(sep in encoder_weights for sep in ("/", os.sep)) and "." in encoder_weights:
        raise FileNotFoundError(f"encoder_weights file {encoder_weights!r} does not exist")
    entry = get_weights_entry(backbone, encoder_weights)
    return str(fetch_weights(entry)), f"{encoder_weights} weights file {entry.filename}"


def check_pretrained_channels(spec: BackboneSpec, channels: int, encoder_weights) -> None:
    """Pretrained weights are for RGB input; other channel counts need encoder_weights=None."""
    if encoder_weights is not None and channels != 3:
        raise ValueError(
            f"{encoder_weights!r} weights of {spec.name!r} are for 3-channel (RGB) input, but the input has "
            f"{channels} channel(s). Use encoder_weights=None, or give the images 3 channels."
        )


def load_encoder_weights(model: keras.Model, spec: BackboneSpec, encoder_weights) -> None:
    path, source = resolve_weights_path(spec.name, encoder_weights)
    weights = read_h5_weights(path)
    assign_weights(model, weights, source=source)
    logger.info("loaded %s into %s", source, spec.name)


def build_encoder(
    backbone_name: str,
    input_shape=(None, None, 3),
    encoder_weights="imagenet",
    input_tensor=None,
    size_multiple: int = 32,
    **kwargs,
) -> Encoder:
    """Build backbone ``backbone_name`` (validated), load its weights and return an `Encoder`."""
    spec = get_backbone_spec(backbone_name)
    options = _check_kwargs(kwargs)
    if options.get("output_stride", 32) != 32 and not spec.can_dilate:
        raise ValueError(f"backbone {spec.name!r} ({spec.family}) cannot be dilated; use output_stride=32 or a dilatable family")
    inputs = _make_input(input_shape, input_tensor, spec, size_multiple)
    check_pretrained_channels(spec, inputs.shape[-1], encoder_weights)
    model = spec.build(inputs, **options)
    if encoder_weights is not None:
        load_encoder_weights(model, spec, encoder_weights)
    return Encoder(model, spec)


def freeze_encoder(model: keras.Model) -> None:
    """Freeze every layer except BatchNormalization (1.0.1's ``encoder_freeze`` behaviour)."""
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


__all__ = ["Encoder", "build_encoder", "freeze_encoder", "load_encoder_weights", "WeightsMismatchError"]
