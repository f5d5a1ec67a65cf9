"""keras-hub backbones as encoders: ``backbone_name="hub:<preset>"``, ``"hub:/path/to/preset"`` or a
``keras_hub.models.Backbone`` instance.

keras-hub is an optional extra (``segmentation-models-keras[hub]``) and is imported lazily, only when such a
backbone is used: ``import keras_hub`` takes seconds and imports TensorFlow on every backend.

Two kinds of keras-hub backbones serve as encoders:

- **pyramid** backbones (ResNet, CSPNet, DenseNet, EfficientNet, MiT; HGNetV2's stage outputs): their
  ``pyramid_outputs`` are the feature maps (strides measured on a probe build, the numbering of the keys differs
  between families); every architecture whose strides they have works with them.
- **token** backbones (plain ViTs: ViT, DINOv2, DINOv3): all tokens are at the patch stride; the tokens after each
  transformer block are reshaped to maps (the prefix tokens, class and register tokens, kept apart) for DPT.

The backbone runs inside one registered layer, `HubFeatures`, whose ``from_config`` imports keras-hub before
deserialising it: a saved model reloads without ``custom_objects`` on every supported Keras (recent Keras imports
keras-hub's modules by itself when a config names them; Keras 3.8 does not).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import keras
import numpy as np
from keras import ops

if TYPE_CHECKING:  # the registry imports this module lazily
    from .registry import BackboneSpec

__all__ = [
    "HUB_PREFIX",
    "HUB_EXTRA",
    "HUB_FAMILIES",
    "HubInfo",
    "HubFeatures",
    "is_hub_backbone",
    "import_keras_hub",
    "hub_spec",
    "load_hub_backbone",
]

HUB_PREFIX = "hub:"
HUB_EXTRA = "segmentation-models-keras[hub]"

# The keras-hub image families that work as encoders (checked on keras-hub 0.32 by tests/test_hub.py), for the
# docs and `segmentation-models backbones`: {keras-hub class: (kind, strides, architectures)}.
ALL_ARCHITECTURES = "all 12"
NO_STRIDE2 = "all but Linknet, Unet++ and FPN's 1.0.1 style (no stride-2 map; `FPN(pyramid_style='smp')` works)"
HUB_FAMILIES: dict[str, tuple[str, str, str]] = {
    "ResNetBackbone": ("pyramid", "4-32", NO_STRIDE2),
    "CSPNetBackbone": (
        "pyramid",
        "2-32 (stem stride 1) or 4-32",
        ALL_ARCHITECTURES + " with a stride-2 map, else " + NO_STRIDE2,
    ),
    "DenseNetBackbone": ("pyramid", "4-32", NO_STRIDE2),
    "EfficientNetBackbone": ("pyramid", "2-32", ALL_ARCHITECTURES),
    "HGNetV2Backbone": ("pyramid (its stage outputs)", "4-32", NO_STRIDE2),
    "MiTBackbone": ("pyramid, fixed input size", "4-32", NO_STRIDE2),
    "ViTBackbone": ("tokens, fixed input size", "patch size", "DPT"),
    "DINOV2Backbone": ("tokens, square (padded inside)", "patch size", "DPT"),
    "DINOV3Backbone": ("tokens", "patch size", "DPT"),
}
TOKEN_FAMILIES = ("ViTBackbone", "DINOV2Backbone", "DINOV3Backbone")
# Families whose graph needs static height and width (MiT computes its token grid from them at build time; the
# ViTs have position embeddings for one grid): they are rebuilt for the (padded) input size of each model.
STATIC_SIZE_FAMILIES = ("MiTBackbone",) + TOKEN_FAMILIES
SQUARE_FAMILIES = ("DINOV2Backbone",)  # keras-hub's DINOv2 refuses other inputs


def import_keras_hub() -> ModuleType:
    """keras_hub, or an ImportError that names the extra to install."""
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(
            f"keras-hub backbones ('hub:' names and keras_hub.models.Backbone instances) need keras-hub, which is "
            f"not installed: pip install '{HUB_EXTRA}' (or pip install keras-hub)."
        ) from error
    return keras_hub


def is_hub_backbone(name: object) -> bool:
    """Whether ``name`` names a keras-hub backbone: a ``"hub:..."`` string or a keras-hub Backbone instance
    (recognised by its class's module, so that keras-hub is not imported to tell)."""
    if isinstance(name, str):
        return name.startswith(HUB_PREFIX)
    return isinstance(name, keras.Model) and type(name).__module__.startswith("keras_hub")


@dataclass(frozen=True)
class HubInfo:
    """What the package knows about a keras-hub backbone, from its config (no weights read)."""

    source: object  # preset handle or folder (str), or the Backbone instance
    family: str  # keras-hub class name, e.g. "ResNetBackbone"
    config: dict  # the backbone's config
    tokens: bool  # plain ViT: token maps at the patch stride, for DPT
    taps: tuple[str, ...]  # pyramid keys (P2..P5) or block outputs ("block0".."blockN-1")
    patch_size: int = 1
    prefix_tokens: int = 0  # class + register tokens before the patch tokens
    image_size: tuple[int | None, int | None] = (None, None)  # the size the backbone was configured for
    scale: tuple[float, ...] | None = None  # the preset's image converter (None: none found)
    offset: tuple[float, ...] | None = None

    @property
    def static_size(self) -> bool:
        return self.family in STATIC_SIZE_FAMILIES

    @property
    def square(self) -> bool:
        return self.family in SQUARE_FAMILIES

    @property
    def num_blocks(self) -> int:
        return len(self.taps) if self.tokens else 0


def _size_key(config: dict) -> str:
    return "input_shape" if "input_shape" in config and "image_shape" not in config else "image_shape"


def _safe_name(text: str) -> str:
    """A Keras-safe name part ('/' is refused in layer and model names)."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", text).strip("_") or "backbone"


def _source_of(name: object) -> object:
    if isinstance(name, str):
        source = name[len(HUB_PREFIX) :]
        if not source:
            raise ValueError(
                "a keras-hub backbone name is 'hub:<preset>' (e.g. 'hub:resnet_18_imagenet', a Kaggle or Hugging Face "
                "handle, or a local preset folder), got 'hub:'"
            )
        return source
    return name


def _display(source: object) -> str:
    if isinstance(source, str):
        return HUB_PREFIX + source
    return f"keras-hub {type(source).__name__} {getattr(source, 'name', '')!r}"


def _converter(source: object) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The preset's image converter's (scale, offset) as per-channel tuples; (None, None) without one."""
    if not isinstance(source, str):
        return None, None
    keras_hub = import_keras_hub()
    if os.path.isdir(source) and not os.path.exists(os.path.join(source, "image_converter.json")):
        return None, None
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(source)
    except (ValueError, FileNotFoundError, KeyError):
        return None, None

    def values(v, default):
        v = default if v is None else v
        return tuple(float(x) for x in np.ravel(np.asarray(v, dtype="float64")))

    return values(converter.scale, 1.0), values(converter.offset, 0.0)


def _hub_info(name: object) -> HubInfo:
    keras_hub = import_keras_hub()
    source = _source_of(name)
    if isinstance(source, str):
        try:
            loader_config = keras_hub.src.utils.preset_utils.get_preset_loader(source).config
            if "class_name" not in loader_config:  # a Hugging Face / timm checkpoint: keras-hub converts it
                backbone = keras_hub.models.Backbone.from_preset(source, load_weights=False)
                loader_config = {"class_name": type(backbone).__name__, "config": backbone.get_config()}
        except (ValueError, FileNotFoundError, OSError) as error:
            raise ValueError(
                f"cannot read keras-hub preset {source!r}: {error}. Offline, give a local preset folder "
                "('hub:/path/to/preset', written by backbone.save_to_preset) or a preset already in keras-hub's cache "
                "(KAGGLEHUB_CACHE / HF_HOME)."
            ) from error
        family = loader_config["class_name"].split(">")[-1]
        config = dict(loader_config["config"])
    elif isinstance(source, keras_hub.models.Backbone):
        family, config = type(source).__name__, dict(source.get_config())
    else:
        raise ValueError(f"backbone_name must be a string or a keras_hub.models.Backbone, got {source!r}")
    if family not in HUB_FAMILIES:
        raise ValueError(
            f"keras-hub {family} ({_display(source)}) is not supported as an encoder: it exposes no feature pyramid "
            f"that this package can tap. Supported keras-hub families: {', '.join(HUB_FAMILIES)}."
        )
    size = tuple(config.get(_size_key(config)) or (None, None, 3))[:2]
    scale, offset = _converter(source)
    tokens = family in TOKEN_FAMILIES
    if tokens:
        blocks = int(config["num_layers"])
        taps = tuple(f"block{i}" for i in range(blocks))
        patch = config["patch_size"]
        patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
        if family == "ViTBackbone":
            prefix = 1 if config.get("use_class_token", True) else 0
        else:
            prefix = 1 + int(config.get("num_register_tokens", 0))
        return HubInfo(source, family, config, True, taps, patch, prefix, size, scale, offset)
    return HubInfo(source, family, config, False, (), 1, 0, size, scale, offset)


def load_hub_backbone(
    info: HubInfo,
    image_size: tuple[int | None, int | None],
    weights: bool,
    static: bool | None = None,
    channels: int | None = None,
) -> keras.Model:
    """The keras-hub backbone for inputs of ``image_size`` (H, W): the preset's or the instance's weights when
    ``weights``, else randomly initialised. Families with a static size (or all with ``static``) are rebuilt for it,
    the others for any size. ``channels``: the input's, where it differs from the backbone's (random weights only)."""
    keras_hub = import_keras_hub()
    config = dict(info.config)
    key = _size_key(config)
    original = tuple(info.config.get(key) or (None, None, 3))
    static = info.static_size if static is None else static
    depth = (channels or original[-1],)
    config[key] = tuple(image_size) + depth if static else (None, None) + depth
    resized = tuple(config[key]) != original
    if info.family == "DINOV2Backbone" and (
        resized or tuple(config.get("position_embedding_shape") or ()) != config[key]
    ):
        return _resized_dinov2(info, config, weights)
    if isinstance(info.source, str):
        overrides = {key: config[key]} if resized else {}
        return keras_hub.models.Backbone.from_preset(info.source, load_weights=weights, **overrides)
    backbone = info.source
    if not resized and weights:
        return backbone
    rebuilt = type(backbone).from_config(config)
    if weights:
        try:
            rebuilt.set_weights(backbone.get_weights())
        except ValueError as error:
            raise ValueError(
                f"{_display(backbone)} was built for {info.image_size[0]}x{info.image_size[1]} inputs and its weights "
                f"do not fit {image_size[0]}x{image_size[1]} (position embeddings): give input_shape="
                f"({info.image_size[0]}, {info.image_size[1]}, C) or smaller (padded inside), or encoder_weights=None."
            ) from error
    return rebuilt


def _copy_weights(source, target, skip: Sequence[str] = ()) -> None:
    """Assign ``source``'s variables to ``target``'s, matched by order (the same architecture: DINOv2 prefixes its
    layer names with the backbone's name only when one is given, so paths may differ)."""
    for s, t in zip(source.weights, target.weights, strict=True):
        if not any(t.path.endswith(name) for name in skip):
            t.assign(s)


def _resized_dinov2(info: HubInfo, config: dict, weights: bool):
    """keras-hub's DINOv2 for another input size. It keeps its position embeddings at the pretraining size and
    trains a copy interpolated to the input size, which saving interpolates back: not exactly, so a trained model
    would not reload as it was. Here the embeddings are interpolated once and the new size becomes the
    pretraining size: saving and loading then interpolate nothing."""
    keras_hub = import_keras_hub()
    cls = keras_hub.models.DINOV2Backbone
    size = tuple(config["image_shape"])
    target = cls.from_config({**config, "position_embedding_shape": size})
    if not weights:
        return target
    if isinstance(info.source, str):  # keras-hub interpolates the preset's embeddings to the size on loading
        source = cls.from_preset(info.source, load_weights=True, image_shape=size)
    else:
        source = cls.from_config(config)
        _copy_weights(info.source, source, skip=("interpolated_position_embeddings",))
        emb = source.embeddings
        emb.interpolated_position_embeddings.assign(
            emb._interpolate_position_embeddings(
                emb.position_embeddings,
                patch_size=emb.patch_size,
                source_shape=emb.position_embedding_shape,
                target_shape=emb.image_shape,
                antialias=emb.antialias_in_interpolation,
            )
        )
    _copy_weights(source, target, skip=("position_embeddings",))  # both position embeddings, set below
    # as numpy: one backend array in two variables would be donated twice by a JAX train step
    interpolated = ops.convert_to_numpy(source.embeddings.interpolated_position_embeddings)
    target.embeddings.position_embeddings.assign(interpolated)
    target.embeddings.interpolated_position_embeddings.assign(interpolated)
    return target


def _image_input(backbone) -> keras.KerasTensor:
    return keras.tree.flatten(backbone.input)[0]


def _kind(family: str) -> str:
    """How `HubFeatures` taps a family: 'pyramid' (``pyramid_outputs`` P<n>), 'outputs' (HGNetV2: its model
    outputs are its stage maps), 'stages' (DINOv2/v3's ``stage<i>`` token outputs) or 'vit' (keras-hub ViT's
    blocks, called one by one)."""
    if family == "HGNetV2Backbone":
        return "outputs"
    return "vit" if family == "ViTBackbone" else "stages" if family in TOKEN_FAMILIES else "pyramid"


def _maps(backbone, kind: str) -> list:
    """A pyramid backbone's feature maps, shallowest first."""
    if kind == "outputs":
        return [backbone.output[name] for name in backbone.stage_names if name in backbone.output]
    pyramid = backbone.pyramid_outputs
    return [pyramid[key] for key in sorted(pyramid, key=lambda k: int(k[1:]))]


def _extractor(backbone, kind: str) -> keras.Model:
    """A functional model over ``backbone``'s layers: image in, the tapped tensors out (maps or token sequences)."""
    image = _image_input(backbone)
    if kind == "vit":
        # keras-hub's ViT runs all blocks inside one layer: call its embedding and blocks one by one to tap them
        x = backbone.get_layer("vit_patching_and_embedding").output
        outputs = []
        for block in backbone.get_layer("vit_encoder").encoder_layers:
            x = block(x)
            outputs.append(x)
    elif kind == "stages":
        outputs = [backbone.pyramid_outputs[f"stage{i + 1}"] for i in range(backbone.num_layers)]
    else:
        outputs = _maps(backbone, kind)
    return keras.Model(image, outputs, name=f"{backbone.name}_features")


@keras.saving.register_keras_serializable(package="segmentation_models")
class HubFeatures(keras.layers.Layer):
    """A keras-hub backbone's feature maps: images in, its pyramid maps (or, for a plain ViT, the token maps after
    each block followed by the prefix tokens of each block) out.

    ``kind``: see `_kind`. ``patch_size`` > 0 marks a token backbone: its sequences (B, prefix + h*w, D) become maps
    (B, h, w, D) (h, w: the input's size over the patch size) and, with ``prefix_tokens`` > 0, prefix sequences
    (B, prefix, D). The config holds the backbone's own (its keras-hub class rebuilds it: keras-hub's layers alone
    do not all round-trip their configs); ``from_config`` imports keras-hub first.
    """

    def __init__(
        self,
        backbone: keras.Model,
        kind: str = "pyramid",
        patch_size: int = 0,
        prefix_tokens: int = 0,
        frozen: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.kind = kind
        self.patch_size = int(patch_size)
        self.prefix_tokens = int(prefix_tokens)
        # shares the backbone's layers (and variables); saving visits each layer once
        self.extractor = _extractor(backbone, kind)
        if frozen:
            self.set_frozen(True)

    def _backbone_layers(self) -> list:
        return [layer for layer in self.backbone.layers if not isinstance(layer, keras.layers.BatchNormalization)]

    def set_frozen(self, frozen: bool) -> None:
        """``encoder_freeze`` (True): as for the package's own encoders, every layer but BatchNormalization is
        frozen; `set_trainable` (False) unfreezes them. Each layer is set itself: TensorFlow's Keras skips
        passing ``trainable`` on to sublayers when the outer layer already has the value."""
        for layer in self._backbone_layers():
            layer.trainable = not frozen

    @property
    def frozen(self) -> bool:
        return any(not layer.trainable for layer in self._backbone_layers() if layer.weights)

    def build(self, input_shape):
        self.built = True  # the backbone is built already

    def call(self, images):
        outputs = self.extractor(images)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        if not self.patch_size:
            return outputs
        shape = ops.shape(images)
        h, w = shape[1] // self.patch_size, shape[2] // self.patch_size
        maps = [ops.reshape(t[:, self.prefix_tokens :, :], (-1, h, w, t.shape[-1])) for t in outputs]
        prefixes = [t[:, : self.prefix_tokens, :] for t in outputs] if self.prefix_tokens else []
        return maps + prefixes

    def compute_output_shape(self, input_shape):
        specs = self.extractor.compute_output_spec(keras.KerasTensor(input_shape))
        specs = list(specs) if isinstance(specs, (list, tuple)) else [specs]
        if not self.patch_size:
            return [tuple(s.shape) for s in specs]
        b, h, w, _ = input_shape
        h = None if h is None else h // self.patch_size
        w = None if w is None else w // self.patch_size
        maps = [(b, h, w, s.shape[-1]) for s in specs]
        return maps + ([(b, self.prefix_tokens, s.shape[-1]) for s in specs] if self.prefix_tokens else [])

    def save_own_variables(self, store: dict) -> None:
        # keras-hub's DINOv2 trains a copy of its position embeddings and writes it back into the saved ones only
        # when the *signed* sum of the change exceeds epsilon (keras-hub 0.32): a trained model could reload with
        # its initial embeddings. Both have one size here (see _resized_dinov2): keep them equal. Keras saves a
        # layer's own variables before its children's.
        emb = getattr(self.backbone, "embeddings", None)
        trained = getattr(emb, "interpolated_position_embeddings", None)
        if trained is not None and tuple(trained.shape) == tuple(emb.position_embeddings.shape):
            emb.position_embeddings.assign(ops.convert_to_numpy(trained))  # a copy (see _resized_dinov2)
        super().save_own_variables(store)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "kind": self.kind,
            "patch_size": self.patch_size,
            "prefix_tokens": self.prefix_tokens,
            "frozen": self.frozen,  # the backbone's config (its class's arguments) has no per-layer trainable flags
        }

    @classmethod
    def from_config(cls, config):
        import_keras_hub()  # registers keras-hub's classes, which the backbone's config names
        config = dict(config)
        backbone = keras.saving.deserialize_keras_object(config.pop("backbone"))
        return cls(backbone, **config)


def build_hub_features(
    info: HubInfo, inputs: keras.KerasTensor, weights: bool, strides: Sequence[int] = ()
) -> keras.Model:
    """The encoder model: ``inputs`` -> `HubFeatures` -> one named identity per feature map (``hub_s<stride>``;
    ``hub_block<i>`` and ``hub_prefix<i>`` for token backbones), all of them outputs."""
    size = tuple(inputs.shape[1:3])
    if info.static_size and None in size:
        raise ValueError(
            f"{_display(info.source)} ({info.family}) needs a fixed input size: give input_shape=(H, W, C) "
            f"(e.g. {info.image_size[0] or 224}, {info.image_size[1] or 224}, 3)."
        )
    channels = int(inputs.shape[-1])
    configured = tuple(info.config.get(_size_key(info.config)) or (None, None, 3))[-1]
    if weights and configured is not None and channels != configured:
        raise ValueError(
            f"{_display(info.source)} takes {configured}-channel images and its weights cannot be adapted to "
            f"{channels} channel(s): give input_shape=(H, W, {configured}), or encoder_weights=None (random weights "
            "for any channel count)."
        )
    backbone = load_hub_backbone(info, size, weights, channels=channels)
    layer = HubFeatures(
        backbone,
        kind=_kind(info.family),
        patch_size=info.patch_size if info.tokens else 0,
        prefix_tokens=info.prefix_tokens if info.tokens else 0,
        name="hub_features",
    )
    outputs = layer(inputs)
    if info.tokens:
        names = [f"hub_block{i}" for i in range(info.num_blocks)]
        names += [f"hub_prefix{i}" for i in range(info.num_blocks)] if info.prefix_tokens else []
    else:  # one name per stride, the deepest map there (HGNetV2's stem and first stage are both at stride 4)
        names = [f"hub_s{s}" if s not in strides[i + 1 :] else f"hub_map{i}" for i, s in enumerate(strides)]
    named = [keras.layers.Identity(name=n)(t) for n, t in zip(names, outputs)]
    return keras.Model(inputs, named, name=f"hub_{_safe_name(backbone.name)}_encoder")


PROBE_SIZE = 256


def _pyramid(info: HubInfo) -> tuple[list[int], list[int]]:
    """(strides, channels) of a pyramid backbone's maps (`_maps`) in their order, from a random build at a fixed size
    (the keys' numbering differs between families: MiT's P1 is at stride 4, ResNet's P2)."""
    size = info.image_size if info.static_size and None not in info.image_size else (PROBE_SIZE, PROBE_SIZE)
    probe = load_hub_backbone(info, size, weights=False, static=True)
    maps = _maps(probe, _kind(info.family))
    return [size[0] // int(m.shape[1]) for m in maps], [int(m.shape[-1]) for m in maps]


_SPECS: dict[object, object] = {}


def hub_spec(name: object) -> BackboneSpec:
    """The `BackboneSpec` of a keras-hub backbone (cached per name; per instance while it lives)."""
    from .registry import BackboneSpec

    key = name if isinstance(name, str) else id(name)
    cached = _SPECS.get(key)
    if cached is not None and (isinstance(name, str) or cached.hub.source is name):
        return cached
    info = _hub_info(name)
    strides: list[int] = []
    if info.tokens:
        features = {info.patch_size: f"hub_block{info.num_blocks - 1}"}
        channels = {info.patch_size: int(info.config["hidden_dim"])}
        notes = f"plain ViT: tokens at stride {info.patch_size} after each of {info.num_blocks} blocks; DPT only."
    else:
        strides, widths = _pyramid(info)
        features = {s: f"hub_s{s}" for s in strides}
        channels = dict(zip(strides, widths))  # the deepest map per stride (the later one wins)
        notes = f"feature pyramid at strides {strides}."
    source = info.source
    label = source if isinstance(source, str) else getattr(source, "name", "backbone")
    spec = BackboneSpec(
        name=f"hub_{_safe_name(os.path.basename(str(label).rstrip('/')) or str(label))}",
        family=f"keras-hub {info.family}",
        builder=lambda inputs, weights=True: build_hub_features(info, inputs, weights, strides),
        features=features,
        channels=channels,
        default_skips=tuple(features[s] for s in sorted(features, reverse=True)[1:]),
        preprocessing=_mode_of(info.scale, info.offset),
        min_input_size=max(32, info.patch_size),
        description=_display(source),
        notes=notes,
        hub=info,
    )
    _SPECS[key] = spec
    return spec


def _mode_of(scale, offset) -> str:
    """The `segmentation_models.preprocessing` mode that equals an image converter's scale/offset, else 'hub'
    (then `get_preprocessing` applies the scale and offset themselves)."""
    from ..preprocessing import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB

    if scale is None:
        return "identity"
    candidates = {
        "identity": ((1.0,), (0.0,)),
        "tf": ((1 / 127.5,), (-1.0,)),
        "torch": (
            tuple(1 / (255 * s) for s in IMAGENET_STD_RGB),
            tuple(-m / s for m, s in zip(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)),
        ),
    }
    s3, o3 = np.resize(np.asarray(scale), 3), np.resize(np.asarray(offset), 3)
    for mode, (s, o) in candidates.items():
        if np.allclose(s3, np.resize(s, 3), rtol=1e-4) and np.allclose(o3, np.resize(o, 3), atol=1e-4):
            return mode
    return "hub"


def default_block_indices(num_blocks: int, depth: int = 4) -> tuple[int, ...]:
    """SMP's DPT taps: ``depth`` blocks spread evenly, the last one included (12 blocks: 2, 5, 8, 11)."""
    return tuple(max(0, int(num_blocks * (i + 1) / depth) - 1) for i in range(depth))


def check_block_indices(indices: Sequence[int] | None, num_blocks: int, name: str) -> tuple[int, ...]:
    if indices is None:
        return default_block_indices(num_blocks)
    indices = tuple(indices)
    if len(indices) != 4 or not all(isinstance(i, int) and -num_blocks <= i < num_blocks for i in indices):
        raise ValueError(
            f"encoder_output_indices must be 4 block indices of {name}'s {num_blocks} blocks (shallowest first), got "
            f"{indices!r}; the default is {default_block_indices(num_blocks)}"
        )
    return tuple(i % num_blocks for i in indices)
