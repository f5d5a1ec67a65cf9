"""The backbone table of ``docs/backbones.md``, generated from the registry.

Regenerate after adding backbones (builds every backbone once to count its parameters)::

    python -m segmentation_models backbones --markdown docs/backbones.md
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from .registry import available_backbones, get_backbone_spec

__all__ = ["count_parameters", "backbones_markdown", "parameters_from_markdown", "write_backbones_markdown"]

STRIDES = (1, 2, 4, 8, 16, 32)
PREPROCESSING_TEXT = {
    "identity": "none: the model normalises inside (images in 0..255)",
    "tf": "`tf`: x / 127.5 - 1",
    "torch": "`torch`: x / 255, ImageNet mean/std",
    "caffe": "`caffe`: RGB->BGR, minus ImageNet mean pixel",
}

HEADER = """# Backbones

<!-- Generated from the backbone registry by
     `python -m segmentation_models backbones --markdown docs/backbones.md`; do not edit by hand. -->

Every backbone is a name for `backbone_name` (`sm.Unet("convnext_tiny", ...)`); the list is
`sm.get_available_backbone_names()`.

- **Parameters**: of the encoder alone (no decoder), for 3 input channels.
- **Features**: the encoder's feature maps as `stride: channels`; decoders take their skips from them.
  A family without a map at some stride (ConvNeXt has none at stride 2, its stem has stride 4) is
  served by every decoder: it upsamples without a skip there. Where segmentation_models.pytorch taps
  the backbone elsewhere than 1.0.1 (EfficientNet, MobileNetV2: SMP takes each stage's last block, 1.0.1
  the next block's expansion, and EfficientNet's head convolution as its output), the architectures
  that come from SMP (Unet++, MAnet, PAN, DeepLabV3/V3+, UPerNet, SegFormer, `FPN(pyramid_style="smp")`)
  use SMP's taps, given after "SMP:"; Unet, FPN, Linknet and PSPNet keep 1.0.1's.
- **Weights**: registered pretrained files (`encoder_weights=`); each has a recorded URL and hash
  (`segmentation-models weights list`).
- **Preprocessing**: what `sm.get_preprocessing(name)` does to images in 0..255. Families that
  normalise inside the model (as keras.applications does for them) need none.

## Input channels other than 3

Pretrained weights also serve inputs with 1, 2, 4 or more channels (`input_shape=(H, W, C)`), with
segmentation_models.pytorch's rule for the first convolution (its `patch_first_conv`):

- **1 channel**: the kernel is summed over its RGB inputs, so a grey image gives exactly what the RGB
  model gives on that image repeated in three channels (where the input normalisation treats the three
  channels alike: MobileNetV3, EfficientNetV2-S/M/L, ResNetV2, Xception);
- **C > 1 channels**: the RGB kernels are cycled over the C inputs (R, G, B, R, ...) and scaled by 3 / C,
  which keeps the scale of the activations.

Layers with per-input-channel parameters before it (ResNet's `bn_data`) and in-model normalisations
with ImageNet statistics (EfficientNetV2-B0..B3, ConvNeXt) cycle their RGB values in the same way; so do
the `torch`/`caffe` modes of `get_preprocessing`. A family that cannot adapt its weights says so in a
`ValueError` (then use `encoder_weights=None`).

## Dilation

`output_stride` 8/16 (DeepLab) needs a backbone marked dilatable below; others raise a `ValueError`.

"""


def count_parameters(name: str) -> int:
    """Parameters of backbone ``name`` without classifier, for 3 input channels (builds it)."""
    import keras

    from .factory import build_encoder

    keras.backend.clear_session()
    return int(build_encoder(name, input_shape=(None, None, 3), encoder_weights=None).model.count_params())


def _weights(name: str) -> str:
    from ..weights.registry import REGISTRY_ENV, available_weights

    names = [e.name for e in available_weights(name) if e.source != "user" and not e.source.startswith(REGISTRY_ENV)]
    return ", ".join(names) if names else "-"


def _millions(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f}M"


def backbones_markdown(parameters: Mapping[str, int] | None = None) -> str:
    """The whole ``docs/backbones.md`` text; ``parameters`` maps names to counts (counted if absent)."""
    parameters = dict(parameters or {})
    lines = [
        HEADER.rstrip("\n"),
        "",
        "## Table",
        "",
        "| name | family | parameters | features (stride: channels) | weights | preprocessing | dilatable |",
        "|---|---|---:|---|---|---|---|",
    ]
    notes: dict[str, str] = {}
    for name in available_backbones():
        spec = get_backbone_spec(name)
        if name not in parameters:
            parameters[name] = count_parameters(name)
        features = ", ".join(f"{s}: {spec.channels[s]}" for s in STRIDES if s in spec.channels)
        if spec.smp_channels:
            features += "; SMP: " + ", ".join(f"{s}: {spec.smp_channels[s]}" for s in STRIDES if s in spec.smp_channels)
        lines.append(
            f"| `{name}` | {spec.family} | {_millions(parameters[name])} ({parameters[name]:,}) | {features} "
            f"| {_weights(name)} | {PREPROCESSING_TEXT.get(spec.preprocessing, spec.preprocessing)} "
            f"| {'yes' if spec.can_dilate else 'no'} |"
        )
        if spec.notes and spec.family not in notes:
            notes[spec.family] = spec.notes
    if notes:
        lines += ["", "## Family notes", ""]
        lines += [f"- **{family}**: {text}" for family, text in notes.items()]
    lines += ["", hub_markdown().rstrip("\n")]
    return "\n".join(lines) + "\n"


HUB_TEXT = """## keras-hub backbones

keras-hub's image backbones serve as encoders too, with the optional extra
(`pip install 'segmentation-models-keras[hub]'`; keras-hub is imported only when one is used):

```python
model = sm.Unet("hub:resnet_50_imagenet", input_shape=(256, 256, 3), classes=3)  # a keras-hub preset name
model = sm.Unet("hub:/data/presets/my_resnet", classes=3)   # a local preset folder (backbone.save_to_preset)
model = sm.Unet(keras_hub.models.ResNetBackbone.from_preset("resnet_50_imagenet"), classes=3)  # an instance
model = sm.DPT("hub:dinov2_small", input_shape=(224, 224, 3), classes=3)  # plain ViTs: DPT
```

- **Weights** come from the preset (`encoder_weights="imagenet"` or `"preset"`) or the instance;
  `encoder_weights=None` builds the same architecture randomly initialised.
- **Features**: pyramid families give their `pyramid_outputs` (HGNetV2: its stage outputs; maps at strides 2 or 4 to
  32, the deepest map per stride); plain ViTs (ViT, DINOv2,
  DINOv3) the tokens after each block at the patch stride, which only DPT reassembles into a pyramid. An
  architecture that needs strides a backbone lacks raises a `ValueError` that names them; FPN on a backbone
  without a stride-2 map needs `pyramid_style="smp"`; DeepLabV3/V3+ need `encoder_output_stride=32`
  (keras-hub backbones are not dilated).
- **Fixed sizes**: MiT and the ViTs are built for the (padded) input size, so their models need a fixed
  `input_shape`; a ViT with pretrained position embeddings takes inputs up to its preset's size (padded inside),
  DINOv2 any size (its position embeddings are interpolated once, when the model is built).
- **Preprocessing**: `sm.get_preprocessing("hub:<preset>")` applies the preset's image converter's scale and
  offset (its resizing is left out: the models take any size); it is the `torch` or `tf` mode where they match.
  Presets without an image converter (a bare `save_to_preset` of a backbone) and Backbone instances get none
  (apply the preset's `keras_hub.layers.ImageConverter` yourself, without its resizing).
- **Channels**: preset weights are for the preset's channel count (3); `encoder_weights=None` builds for any.
- **Offline**: a preset downloaded once stays in keras-hub's cache (Kaggle: `KAGGLEHUB_CACHE`, default
  `~/.cache/kagglehub`; Hugging Face `hf://` handles: `HF_HOME`) and loads from there without a network; or save it
  to a folder (`keras_hub.models.Backbone.from_preset(name).save_to_preset(folder)`, and the image converter's
  `save_to_preset(folder)` for its preprocessing) and use `"hub:<folder>"`.
- **Saved models** (`.keras`) hold the keras-hub backbone's own config and reload with a plain
  `keras.saving.load_model` after `import segmentation_models`, which imports keras-hub when the file needs it.

| keras-hub class | kind | strides | architectures |
|---|---|---|---|
"""


def hub_markdown() -> str:
    """The docs section on keras-hub encoders, with the families that work (`backbones.hub.HUB_FAMILIES`)."""
    from .hub import HUB_FAMILIES

    rows = [f"| `{family}` | {kind} | {strides} | {archs} |" for family, (kind, strides, archs) in HUB_FAMILIES.items()]
    return HUB_TEXT + "\n".join(rows) + "\n"


def parameters_from_markdown(text: str) -> dict[str, int]:
    """The parameter counts recorded in a generated table (to re-render it without building)."""
    return {
        m.group(1): int(m.group(2).replace(",", ""))
        for m in re.finditer(r"^\| `([^`]+)` \| [^|]+ \| [^|(]*\(([\d,]+)\)", text, flags=re.M)
    }


def write_backbones_markdown(path: str | Path = "docs/backbones.md") -> Path:
    """Write the table to ``path`` (counts the parameters of every backbone: takes minutes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(backbones_markdown())
    return path
