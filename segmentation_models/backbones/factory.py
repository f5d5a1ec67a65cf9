"""Building an encoder: input, backbone, pretrained weights, feature selection, freezing."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import keras

from ..validation import check_input_shape, check_output_stride
from ..weights import (
    align_weights_by_order,
    fetch_weights,
    get_weights_entry,
    input_channel_adapter,
    read_h5_weights,
)
from ..weights.converters import convert_checkpoint, is_safetensors_file
from ..weights.loading import WeightsMismatchError, assign_weights
from .registry import BackboneSpec, check_feature_layout, get_backbone_spec

logger = logging.getLogger("segmentation_models")

# 1.0.1 forwarded these to keras-applications; they mean nothing in Keras 3 and are ignored.
_LEGACY_SUBMODULE_KWARGS = ("backend", "layers", "models", "utils")


@dataclass
class Encoder:
    """A built backbone and what decoders need from it."""

    model: keras.Model
    spec: BackboneSpec
    # The model's input when it differs from the backbone's (the backbone then sees a padded copy of it)
    # and the multiple it is padded to (see `decoders.common.start`).
    image: keras.KerasTensor | None = None
    pad_multiple: int = 1
    # Where decoders tap the backbone: '1.0.1' (its skips) or 'smp' (SMP's taps, see BackboneSpec.smp_features).
    layout: str = "1.0.1"

    @property
    def features(self):
        """``{stride: layer name}`` of this encoder's feature maps (the largest stride is its output)."""
        return self.spec.feature_layers(self.layout)

    @property
    def input(self):
        """The model's input tensor (before any padding)."""
        return self.image if self.image is not None else self.model.input

    @property
    def output(self):
        """The deepest feature map (the backbone's last, unless the layout taps earlier), in the model's graph."""
        if self.spec.hub is not None:  # a keras-hub encoder model has all its maps as outputs
            return self.layer_output(self.features[self.spec.output_stride])
        if self.image is None and self.features[self.spec.output_stride] == self.spec.features[self.spec.output_stride]:
            return self.model.output
        # A backbone built on a padded tensor is a model with a cloned input whose `output` is a copy
        # outside the model's graph; the layer's own output is in it.
        return self.layer_output(self.features[self.spec.output_stride])

    def layer_output(self, ref: str | int) -> keras.KerasTensor:
        """Output of a backbone layer given by name or index, with a helpful error."""
        try:
            layer = self.model.get_layer(name=ref) if isinstance(ref, str) else self.model.get_layer(index=ref)
        except (ValueError, IndexError):
            names = [layer.name for layer in self.model.layers if not layer.name.endswith("_pad")]
            raise ValueError(
                f"encoder_features: {ref!r} is not a layer of backbone {self.spec.name!r} "
                f"(it has {len(self.model.layers)} layers; e.g. {names[-8:]}). "
                f"Its default feature layers are {list(self.spec.default_skips)}."
            ) from None
        return layer.output

    def feature(self, stride: int) -> keras.KerasTensor:
        """The feature map at ``stride`` (2, 4, 8, 16, 32)."""
        if stride not in self.features:
            raise ValueError(
                f"backbone {self.spec.name!r} has no feature map at stride {stride}; it has {sorted(self.features)}"
            )
        return self.layer_output(self.features[stride])

    def skips(self, encoder_features: str | Sequence[str | int], n: int) -> list:
        """Skip tensors, deepest first: the layout's defaults (1.0.1's skips, or SMP's taps below the output
        stride) or the user's names/indices."""
        if encoder_features == "default" and self.features is not self.spec.features:
            refs: Sequence = [self.features[s] for s in sorted(self.features, reverse=True)[1:]][:n]
        elif encoder_features == "default":
            refs = list(self.spec.default_skips)[:n]
        elif isinstance(encoder_features, (list, tuple)):
            refs = list(encoder_features)
        else:
            raise ValueError(
                f"encoder_features must be 'default' or a list of layer names/indices, got {encoder_features!r}"
            )
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


def make_input(
    input_shape: Sequence[int | None] | None,
    input_tensor: keras.KerasTensor | None,
    spec: BackboneSpec,
    min_size: int | None = None,
) -> keras.KerasTensor:
    """The validated input: ``input_tensor`` when given, else a new ``keras.Input(input_shape)``."""
    min_size = spec.min_input_size if min_size is None else min_size
    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise ValueError("input_tensor must be a Keras tensor, e.g. keras.Input(shape=(256, 256, 3))")
        check_input_shape(tuple(input_tensor.shape[1:]), min_size)
        return input_tensor
    shape = check_input_shape(input_shape, min_size)
    return keras.Input(shape=shape, name="input")


def resolve_weights_path(backbone: str, encoder_weights: str) -> tuple[str, str]:
    """(local path, description) for a registered weights name or a path."""
    if os.path.isfile(str(encoder_weights)):
        return str(encoder_weights), f"weights file {os.path.basename(str(encoder_weights))}"
    if (
        isinstance(encoder_weights, str)
        and any(sep in encoder_weights for sep in ("/", os.sep))
        and "." in encoder_weights
    ):
        raise FileNotFoundError(f"encoder_weights file {encoder_weights!r} does not exist")
    entry = get_weights_entry(backbone, encoder_weights)
    return str(fetch_weights(entry)), f"{encoder_weights} weights file {entry.filename}"


def check_pretrained_channels(spec: BackboneSpec, channels: int, encoder_weights) -> None:
    """Pretrained weights are for RGB input; other channel counts are served by adapting the first
    convolution (see `load_encoder_weights`), which needs the family to name it (``spec.first_conv``)."""
    if encoder_weights is not None and channels != 3 and not spec.first_conv:
        raise ValueError(
            f"{encoder_weights!r} weights of {spec.name!r} are for 3-channel (RGB) input and the {spec.family} "
            f"family cannot adapt them to {channels} channel(s) (its first convolution is not declared). "
            "Use encoder_weights=None, or give the images 3 channels."
        )


def read_encoder_weights(model: keras.Model, spec: BackboneSpec, path: str, source: str) -> dict:
    """``{layer name: arrays}`` from a weights file: Keras HDF5 as is, safetensors through the family's converter."""
    if is_safetensors_file(path):
        return dict(convert_checkpoint(model, spec, path, source))
    return read_h5_weights(path)


def load_encoder_weights(model: keras.Model, spec: BackboneSpec, encoder_weights: str | None) -> None:
    """Load pretrained encoder weights into ``model``, adapted to its input channel count.

    Files are matched to the layers by name, or by position for keras.applications files
    (``spec.weights_layout == "by_order"``). When the model's input has other than the file's
    channels, the first convolution's kernel is summed (1 channel) or cycled and rescaled (more),
    and per-input-channel layers (``spec.input_channel_layers``) are cycled: SMP's rule.
    """
    path, source = resolve_weights_path(spec.name, encoder_weights)
    weights = read_encoder_weights(model, spec, path, source)
    adapt = input_channel_adapter(spec.first_conv, spec.input_channel_layers)
    if spec.weights_layout == "by_order":
        weights = align_weights_by_order(model, weights, source=source, adapt=adapt)
    assign_weights(model, weights, source=source, adapt=adapt)
    logger.info("loaded %s into %s", source, spec.name)


def build_encoder(
    backbone_name: str,
    input_shape: Sequence[int | None] | None = (None, None, 3),
    encoder_weights: str | None = "imagenet",
    input_tensor: keras.KerasTensor | None = None,
    feature_layout: str = "1.0.1",
    **kwargs,
) -> Encoder:
    """Build backbone ``backbone_name`` (validated), load its weights and return an `Encoder`.

    ``feature_layout``: where decoders tap it, '1.0.1' (its skips) or 'smp' (SMP's, see `BackboneSpec.smp_features`).
    """
    check_feature_layout(feature_layout)
    spec = get_backbone_spec(backbone_name)
    options = _check_kwargs(kwargs)
    if spec.hub is not None:
        return _build_hub_encoder(spec, input_shape, encoder_weights, input_tensor, feature_layout, options)
    if "output_stride" in options:
        check_output_stride(options["output_stride"], spec)
    inputs = make_input(input_shape, input_tensor, spec)
    check_pretrained_channels(spec, inputs.shape[-1], encoder_weights)
    model = spec.build(inputs, **options)
    if encoder_weights is not None:
        load_encoder_weights(model, spec, encoder_weights)
    return Encoder(model, spec, layout=feature_layout)


HUB_WEIGHTS = ("imagenet", "preset")


def _build_hub_encoder(spec, input_shape, encoder_weights, input_tensor, feature_layout, options) -> Encoder:
    """A keras-hub encoder: the preset's (or the instance's) weights for ``encoder_weights`` 'imagenet'/'preset',
    random initialisation for None."""
    if encoder_weights is not None and encoder_weights not in HUB_WEIGHTS:
        raise ValueError(
            f"encoder_weights of keras-hub backbone {spec.description!r} must be 'imagenet' or 'preset' (the weights "
            f"of the preset or instance) or None (random initialisation), got {encoder_weights!r}"
        )
    if options.get("output_stride", 32) != 32:
        raise ValueError(
            f"keras-hub backbone {spec.description!r} cannot be dilated: encoder output stride must be 32, got "
            f"{options['output_stride']!r}"
        )
    inputs = make_input(input_shape, input_tensor, spec)
    model = spec.builder(inputs, weights=encoder_weights is not None)
    return Encoder(model, spec, layout=feature_layout)


def freeze_encoder(model: keras.Model) -> None:
    """Freeze every layer except BatchNormalization (1.0.1's ``encoder_freeze`` behaviour)."""
    for layer in model.layers:
        if hasattr(layer, "set_frozen"):  # a keras-hub backbone inside one layer (backbones/hub.py)
            layer.set_frozen(True)
        elif not isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


__all__ = ["Encoder", "build_encoder", "make_input", "freeze_encoder", "load_encoder_weights", "WeightsMismatchError"]
