"""DPT (Ranftl et al. 2021, "Vision Transformers for Dense Prediction"), as segmentation_models_pytorch's ``DPT``.

On a plain ViT (keras-hub ViT, DINOv2, DINOv3: ``backbone_name="hub:<preset>"``) the tokens after four blocks
are *reassembled* into a pyramid: the prefix (class) token is read out into every patch token ('cat': concatenated
then a linear layer + GELU; 'add': added; 'ignore'), the token maps (at the patch stride p) are projected to
``decoder_intermediate_channels`` and resampled x4, x2, x1 and x0.5 (p/4 .. 2p: 1/4 .. 1/32 for p = 16), then
brought to ``decoder_fusion_channels`` by a 3x3 convolution. *Fusion* blocks (two residual conv units, x2 bilinear,
1x1 projection) merge them deepest first; a conv-bn-relu + dropout + 1x1 head classifies at stride p/8 and the mask
is resized to the input.

On a hierarchical encoder with maps at strides 4, 8, 16, 32 (our MiT ``mit_b0``.., keras-hub MiT/ResNet/...) the
four maps are projected the same way without resampling (no tokens to read out).

Any input size: a ViT needs sizes that are multiples of its patch (and of twice the patch for the x0.5 level), so
the input is padded inside to the next multiple of 2p (to a square for DINOv2, which keras-hub builds square only;
to the preset's size for a keras-hub ViT with pretrained position embeddings) and the mask cropped back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import keras
from keras import layers, ops

from ..backbones.factory import Encoder, build_encoder, make_input
from ..backbones.hub import check_block_indices
from ..backbones.registry import get_backbone_spec
from ..blocks import ResizeByFactor, ResizeToMatch, conv_bn_act, segmentation_head
from ..validation import (
    check_activation,
    check_aux_params,
    check_choice,
    check_classes,
    check_decoder_channels,
    check_positive_int,
    require_strides,
)
from .common import aux_head, finish, start

__all__ = ["DPT", "DPTReadout", "PadToSize", "CropFromSize"]

READOUTS = ("cat", "add", "ignore")
DEFAULT_INTERMEDIATE_CHANNELS = (256, 512, 1024, 1024)
HIERARCHICAL_STRIDES = (4, 8, 16, 32)


@keras.saving.register_keras_serializable(package="segmentation_models")
class DPTReadout(layers.Layer):
    """DPT's readout of the prefix tokens into the patch-token map: ``[map (B, h, w, D), prefix (B, n, D)]`` ->
    'cat': the map with the first prefix token concatenated at every position (B, h, w, 2D); 'add': the map plus
    the prefix tokens' mean."""

    def __init__(self, mode: str = "cat", **kwargs):
        super().__init__(**kwargs)
        check_choice("mode", mode, ("cat", "add"))
        self.mode = mode

    def call(self, inputs):
        x, prefix = inputs
        if self.mode == "add":
            return x + ops.mean(prefix, axis=1)[:, None, None, :]
        token = ops.broadcast_to(prefix[:, :1, None, :], ops.shape(x))  # (B, 1, 1, D) over (B, h, w, D)
        return ops.concatenate([x, ops.cast(token, x.dtype)], axis=-1)

    def compute_output_shape(self, input_shape):
        shape, _ = input_shape
        return shape if self.mode == "add" else (*shape[:-1], 2 * shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _pad_before(size, target: int):
    return (target - size) // 2


@keras.saving.register_keras_serializable(package="segmentation_models")
class PadToSize(layers.Layer):
    """Pad height and width (centred) to ``height`` x ``width`` ('reflect' or 'constant' zeros)."""

    def __init__(self, height: int, width: int, mode: str = "reflect", **kwargs):
        super().__init__(autocast=False, **kwargs)
        check_choice("mode", mode, ("reflect", "constant"))
        self.height, self.width, self.mode = int(height), int(width), mode

    def call(self, x):
        shape = ops.shape(x)
        top, left = _pad_before(shape[1], self.height), _pad_before(shape[2], self.width)
        pads = [[0, 0], [top, self.height - shape[1] - top], [left, self.width - shape[2] - left], [0, 0]]
        if all(isinstance(v, int) and v == 0 for row in pads for v in row):
            return x
        return ops.pad(x, pads, mode=self.mode)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width, "mode": self.mode}


@keras.saving.register_keras_serializable(package="segmentation_models")
class CropFromSize(layers.Layer):
    """Crop ``[output, image]``'s output (``height`` x ``width``) back to the image's size (undoes `PadToSize`)."""

    def __init__(self, height: int, width: int, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.height, self.width = int(height), int(width)

    def call(self, inputs):
        output, image = inputs
        shape = ops.shape(image)
        top, left = _pad_before(shape[1], self.height), _pad_before(shape[2], self.width)
        return output[:, top : top + shape[1], left : left + shape[2], :]

    def compute_output_shape(self, input_shape):
        output_shape, image_shape = input_shape
        return (output_shape[0], image_shape[1], image_shape[2], output_shape[3])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


def _residual_unit(x, channels: int, name: str):
    """SMP's ResidualConvBlock: (ReLU, 3x3 conv, BN) twice, plus the input."""
    y = x
    for i in (1, 2):
        y = layers.Activation("relu", name=f"{name}_relu{i}")(y)
        y = conv_bn_act(y, channels, 3, name=f"{name}_conv{i}", activation=None)
    return layers.Add(name=f"{name}_add")([x, y])


def _fusion(x, previous, channels: int, name: str):
    """SMP's FusionBlock: residual unit, plus the deeper level, residual unit, x2 bilinear, 1x1 projection."""
    x = _residual_unit(x, channels, f"{name}_res1")
    if previous is not None:
        x = layers.Add(name=f"{name}_merge")([x, previous])
    x = _residual_unit(x, channels, f"{name}_res2")
    x = ResizeByFactor(2, name=f"{name}_upsampling")(x)
    return layers.Conv2D(channels, 1, name=f"{name}_project")(x)


def _reassemble(x, mid: int, fusion: int, factor: float, name: str):
    """SMP's ReassembleBlock: 1x1 to ``mid``, resample by ``factor`` (transposed conv up, strided 3x3 down), 3x3 to
    ``fusion`` (no bias)."""
    x = layers.Conv2D(mid, 1, name=f"{name}_project")(x)
    if factor > 1:
        x = layers.Conv2DTranspose(mid, int(factor), strides=int(factor), name=f"{name}_upsample")(x)
    elif factor < 1:
        x = layers.Conv2D(mid, 3, strides=int(round(1 / factor)), padding="same", name=f"{name}_downsample")(x)
    return layers.Conv2D(fusion, 3, padding="same", use_bias=False, name=f"{name}_to_fusion")(x)


def _token_input(spec, input_shape, input_tensor, encoder_weights):
    """The model input and the size the ViT sees: multiples of twice the patch (the x0.5 level), square for DINOv2,
    the preset's size for a keras-hub ViT with pretrained (fixed) position embeddings."""
    info = spec.hub
    p = info.patch_size
    if input_tensor is None and input_shape is not None:
        shape = tuple(input_shape)
        if len(shape) == 3 and None in shape[:2]:  # a ViT has a fixed size: the preset's where none is given
            if None in info.image_size:
                raise ValueError(f"{spec.description!r} needs a fixed input size: give input_shape=(H, W, C)")
            shape = tuple(info.image_size) + shape[2:]
        input_shape = shape
    image = make_input(input_shape, input_tensor, spec, min_size=p)
    h, w = image.shape[1:3]
    if h is None or w is None:
        raise ValueError(f"{spec.description!r} (a ViT) needs a fixed input size: give input_shape=(H, W, C)")
    fixed = info.family == "ViTBackbone" and encoder_weights is not None
    if fixed:
        th, tw = info.image_size
        if h > th or w > tw or (th // p) % 2 or (tw // p) % 2:
            raise ValueError(
                f"{spec.description!r} has position embeddings for {th}x{tw} inputs: DPT takes inputs up to that size "
                f"(padded inside; {th // p}x{tw // p} patches must be even), got {h}x{w}; or use encoder_weights=None."
            )
    else:
        th, tw = (2 * p * math.ceil(s / (2 * p)) for s in (h, w))
        if info.square:
            th = tw = max(th, tw)
    return image, (th, tw)


def _token_levels(encoder: Encoder, indices, readout: str, channels, fusion: int):
    info = encoder.spec.hub
    levels = []
    for level, (block, factor) in enumerate(zip(indices, (4, 2, 1, 0.5))):
        name = f"decoder_reassemble{level}"
        x = encoder.layer_output(f"hub_block{block}")
        if readout == "cat":
            dim = x.shape[-1]
            if info.prefix_tokens:
                x = DPTReadout("cat", name=f"{name}_readout")([x, encoder.layer_output(f"hub_prefix{block}")])
            x = layers.Dense(dim, activation="gelu", name=f"{name}_readout_project")(x)
        elif readout == "add" and info.prefix_tokens:
            x = DPTReadout("add", name=f"{name}_readout")([x, encoder.layer_output(f"hub_prefix{block}")])
        levels.append(_reassemble(x, channels[level], fusion, factor, name))
    return levels


def DPT(
    backbone_name: str = "mit_b0",
    input_shape: tuple = (None, None, 3),
    classes: int = 1,
    activation: str | None = "sigmoid",
    weights: str | None = None,
    encoder_weights: str | None = "imagenet",
    encoder_freeze: bool = False,
    encoder_output_indices: Sequence[int] | None = None,
    decoder_readout: str = "cat",
    decoder_intermediate_channels: Sequence[int] = DEFAULT_INTERMEDIATE_CHANNELS,
    decoder_fusion_channels: int = 256,
    aux_params: dict | None = None,
    **kwargs,
) -> keras.Model:
    """DPT: a ViT's tokens from four blocks reassembled into a pyramid, fused deepest first, a mask at the input size.

    Args:
        backbone_name: a keras-hub ViT, DINOv2 or DINOv3 (``"hub:<preset>"``, a local preset folder or a
            ``keras_hub.models.Backbone``), or a backbone with maps at strides 4, 8, 16, 32 (``mit_b0``.., keras-hub
            MiT/ResNet/...).
        input_shape: (H, W, C). ViTs have a fixed size: None takes the preset's; other sizes are padded inside to
            multiples of twice the patch size (and cropped back). Hierarchical encoders take any size (>= 32).
        classes: output channels (1 for a binary mask).
        activation: output activation ('sigmoid', 'softmax', None/'linear' for logits, ...).
        weights: optional path to full-model weights (``.keras`` or ``.weights.h5``).
        encoder_weights: 'imagenet' (or 'preset': a keras-hub preset's weights), None (random), or what the
            backbone's registry lists.
        encoder_freeze: freeze the encoder (a keras-hub backbone as a whole).
        encoder_output_indices: the four ViT blocks whose tokens are reassembled, shallowest first; default: spread
            evenly, the last included (12 blocks: 2, 5, 8, 11), as SMP.
        decoder_readout: 'cat', 'add' or 'ignore': how the class token joins the patch tokens (ViTs only).
        decoder_intermediate_channels: channels of the four reassembled levels before the fusion projection.
        decoder_fusion_channels: channels of the fusion blocks and the head.
        aux_params: optional auxiliary classification head on the deepest encoder map (see `Unet`).
        **kwargs: ``input_tensor`` (build on a Keras tensor).

    Returns:
        A `keras.Model` mapping images (B, H, W, C) to masks (B, H, W, classes), or ``(mask, labels)``.
    """
    check_classes(classes)
    check_activation(activation)
    check_choice("decoder_readout", decoder_readout, READOUTS)
    channels = check_decoder_channels(
        decoder_intermediate_channels, 4, DEFAULT_INTERMEDIATE_CHANNELS, name="decoder_intermediate_channels"
    )
    fusion = check_positive_int("decoder_fusion_channels", decoder_fusion_channels, "the fusion blocks' width")
    aux_params = check_aux_params(aux_params)
    spec = get_backbone_spec(backbone_name)
    tokens = spec.hub is not None and spec.hub.tokens
    if tokens:
        indices = check_block_indices(encoder_output_indices, spec.hub.num_blocks, spec.description)
        image, (th, tw) = _token_input(spec, input_shape, kwargs.pop("input_tensor", None), encoder_weights)
        h, w = image.shape[1:3]
        padded = image
        if (h, w) != (th, tw):
            mode = "reflect" if th - h < h and tw - w < w else "constant"  # reflect needs pads smaller than the image
            padded = PadToSize(th, tw, mode, name="pad_to_size")(image)
        encoder = build_encoder(backbone_name, encoder_weights=encoder_weights, input_tensor=padded, **kwargs)
        encoder = dataclasses.replace(encoder, image=image)  # the model's input: before the padding
        levels = _token_levels(encoder, indices, decoder_readout, channels, fusion)
        deepest = encoder.layer_output(f"hub_block{indices[-1]}")
    else:
        if encoder_output_indices is not None:
            raise ValueError(
                f"encoder_output_indices selects ViT blocks; backbone {spec.name!r} is hierarchical (its maps at "
                "strides 4, 8, 16, 32 are used)"
            )
        require_strides(
            spec, HIERARCHICAL_STRIDES, "DPT", "or a plain ViT (keras-hub ViT, DINOv2, DINOv3 as 'hub:<preset>')"
        )
        encoder = start(
            backbone_name, input_shape, classes, activation, encoder_weights, feature_layout="smp", **kwargs
        )
        levels = [
            _reassemble(encoder.feature(s), c, fusion, 1, f"decoder_reassemble{i}")
            for i, (s, c) in enumerate(zip(HIERARCHICAL_STRIDES, channels))
        ]
        deepest = encoder.feature(32)
        image = None

    x = None
    for i, level in enumerate(levels[::-1]):
        x = _fusion(level, x, fusion, f"decoder_fusion{i}")
    x = conv_bn_act(x, fusion, 3, name="head")
    x = layers.Dropout(0.1, name="head_dropout")(x)
    if tokens:
        # stride p/8 -> the padded size (x2 for p = 16, as SMP), then back to the input's size
        x = layers.Conv2D(classes, 1, name="final_conv")(x)
        x = ResizeToMatch(name="final_upsampling")([x, padded])
        if padded is not image:
            x = CropFromSize(th, tw, name="crop_to_input")([x, image])
        outputs = layers.Activation(activation or "linear", name="output_activation", dtype="float32")(x)
    else:
        outputs = segmentation_head(x, classes, activation, kernel_size=1, upsampling=2)
    labels = aux_head(deepest, aux_params)
    return finish(encoder, outputs, f"dpt_{spec.name}", weights, encoder_freeze, aux_output=labels)
