"""The backbone registry: one `BackboneSpec` per name, filled by the family modules."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import keras

from ..validation import OUTPUT_STRIDES

__all__ = [
    "BackboneSpec",
    "register_backbone",
    "register_family",
    "by_stride",
    "get_backbone_spec",
    "available_backbones",
    "suggest_names",
    "check_feature_layout",
    "FEATURE_LAYOUTS",
]


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the package knows about one backbone.

    Attributes:
        name: registry name, e.g. ``"resnet34"``.
        family: family name, e.g. ``"resnet"``; one family shares a builder.
        builder: ``builder(input_tensor, **options) -> keras.Model`` (functional, no classifier top).
        features: ``{stride: layer name}`` for the feature maps the backbone exposes
            (strides 1..32 where present); the name at the largest stride is the encoder output.
            A family may lack a stride (ConvNeXt has no stride-2 map): decoders then upsample without
            a skip there, and ``default_skips`` lists only the strides present.
        channels: ``{stride: channels}`` of those feature maps.
        default_skips: layer names 1.0.1 used as Unet/FPN skips, deepest first
            (``encoder_features='default'``).
        preprocessing: the 1.0.1 preprocessing mode, see `segmentation_models.preprocessing`.
        first_conv: name of the layer whose kernel sees the input channels (for channel adaptation).
        input_channel_layers: layers with per-input-channel parameters (e.g. ResNet's ``bn_data``).
        min_input_size: smallest spatial size the backbone accepts.
        can_dilate: whether DeepLab-style output strides 8/16 are supported.
        description: a line for docs and `segmentation-models info`.
        weights_layout: how pretrained ``.h5`` files map onto the layers: ``"by_name"`` (layer names,
            image-classifiers/1.0.1 files) or ``"by_order"`` (keras.applications files, whose stored
            names differ from Keras 3's: matched by position as keras.applications itself does).
        notes: family remarks for the docs (missing strides, input padding, preprocessing inside).
        smp_features: ``{stride: layer name}`` where segmentation_models.pytorch taps the backbone elsewhere
            than 1.0.1 (EfficientNet, MobileNetV2: SMP takes each stage's output, 1.0.1 the next block's
            expansion); the SMP architectures use these (``feature_layout="smp"``). None: same as ``features``.
        smp_channels: ``{stride: channels}`` of ``smp_features``.
        hub: a keras-hub backbone's `backbones.hub.HubInfo` (``"hub:..."`` names), None for registered backbones.
    """

    name: str
    family: str
    builder: Callable[..., keras.Model]
    features: Mapping[int, str]
    channels: Mapping[int, int]
    default_skips: Sequence[str | int]
    preprocessing: str = "identity"
    first_conv: str | None = None
    input_channel_layers: Sequence[str] = ()
    min_input_size: int = 32
    can_dilate: bool = False
    description: str = ""
    builder_options: Mapping[str, object] = field(default_factory=dict)
    weights_layout: str = "by_name"
    notes: str = ""
    smp_features: Mapping[int, str] | None = None
    smp_channels: Mapping[int, int] | None = None
    hub: object | None = None

    @property
    def output_stride(self) -> int:
        return max(self.features)

    @property
    def output_strides(self) -> tuple[int, ...]:
        """The encoder output strides this backbone can produce: 32 (plain), and 16 and 8 where it can be dilated."""
        return OUTPUT_STRIDES if self.can_dilate else (32,)

    def feature_layers(self, layout: str = "1.0.1") -> Mapping[int, str]:
        """``{stride: layer name}`` of the ``layout``: '1.0.1' (Unet, FPN, Linknet, PSPNet) or 'smp'."""
        check_feature_layout(layout)
        return self.smp_features if layout == "smp" and self.smp_features else self.features

    def feature_channels(self, layout: str = "1.0.1") -> Mapping[int, int]:
        """``{stride: channels}`` of the ``layout``'s feature maps."""
        check_feature_layout(layout)
        return self.smp_channels if layout == "smp" and self.smp_channels else self.channels

    def build(self, input_tensor, **options) -> keras.Model:
        """Build the backbone on ``input_tensor`` and return it as a functional model."""
        merged = dict(self.builder_options)
        merged.update(options)
        model = self.builder(input_tensor, **merged)
        if isinstance(model.input, (list, tuple)) and len(model.input) == 1:
            # keras.applications given an input_tensor make its inputs a one-element list, and Keras then warns
            # ("The structure of `inputs` doesn't match") at every call with a plain array: one tensor in, as the rest
            model = keras.Model(model.input[0], model.output, name=model.name)
        return model


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to the registry (a name can be registered once)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    missing = set(spec.features) ^ set(spec.channels)
    if missing:
        raise ValueError(f"{spec.name}: features and channels disagree on strides {sorted(missing)}")
    if (spec.smp_features is None) != (spec.smp_channels is None):
        raise ValueError(f"{spec.name}: smp_features and smp_channels go together")
    if spec.smp_features is not None and not set(spec.smp_features) == set(spec.smp_channels) == set(spec.features):
        raise ValueError(f"{spec.name}: smp_features and smp_channels must have the strides of features")
    _REGISTRY[spec.name] = spec
    return spec


def by_stride(values: str | Sequence[object], first: int = 2) -> dict[int, object]:
    """``{stride: value}`` over the strides ``first``, ``2 * first``, ...: layer names given as one
    space-separated string, or any sequence (e.g. channels)."""
    items = values.split() if isinstance(values, str) else list(values)
    return {first * 2**i: value for i, value in enumerate(items)}


def register_family(family: str, variants: Mapping[str, Mapping[str, object]], **shared: object) -> None:
    """Register one backbone per variant of ``family``: ``{name: fields}`` over the ``shared`` fields.

    A variant's fields may name another ``family`` (a sibling registered alongside). ``default_skips`` defaults to
    the feature layers below the output stride, deepest first.
    """
    for name, fields in variants.items():
        merged = {"family": family, **shared, **fields}
        if "default_skips" not in merged:
            features = merged["features"]
            merged["default_skips"] = tuple(features[s] for s in sorted(features, reverse=True)[1:])
        register_backbone(BackboneSpec(name=name, **merged))


FEATURE_LAYOUTS = ("1.0.1", "smp")


def check_feature_layout(layout: str) -> str:
    if layout not in FEATURE_LAYOUTS:
        raise ValueError(f"feature_layout must be one of {list(FEATURE_LAYOUTS)}, got {layout!r}")
    return layout


def suggest_names(name: str, choices: Sequence[str], n: int = 5) -> list[str]:
    """Close matches for ``name`` among ``choices`` (prefix matches first)."""
    lowered = str(name).lower()
    close = difflib.get_close_matches(lowered, choices, n=n, cutoff=0.5)
    prefix = [c for c in choices if c.startswith(lowered[:4]) and c not in close]
    return (close + prefix)[:n]


def get_backbone_spec(name: str) -> BackboneSpec:
    """Return the spec of ``name`` or raise a ValueError that lists close names.

    ``"hub:<preset>"`` names and keras-hub Backbone instances get a spec made from the keras-hub backbone (see
    `backbones.hub`; needs the optional keras-hub)."""
    from .hub import hub_spec, is_hub_backbone  # imports keras-hub only for such names

    if is_hub_backbone(name):
        return hub_spec(name)
    if not isinstance(name, str):
        raise ValueError(f"backbone_name must be a string such as 'resnet34', got {name!r}")
    spec = _REGISTRY.get(name) or _REGISTRY.get(name.lower())
    if spec is None:
        close = suggest_names(name, sorted(_REGISTRY))
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown backbone {name!r}.{hint} "
            f"Available backbones: {', '.join(sorted(_REGISTRY))} "
            "(see segmentation_models.get_available_backbone_names()), or a keras-hub preset as 'hub:<preset>'."
        )
    return spec


def available_backbones() -> list[str]:
    """Names of all registered backbones, in registration order."""
    return list(_REGISTRY)
