"""What every architecture builder shares: the argument checks, the encoder, any input size, the auxiliary head,
freezing and full-model weights.

Any input size: `start` pads the input (reflect padding, centred) up to the next multiple of what the
architecture needs (32 for five x2 stages) and `finish` crops the mask back to the input's size. Both are
registered layers that compute the amounts with ``keras.ops`` at run time, so they work with ``None``
dimensions on every backend. A fixed input that is already a multiple gets no extra layer at all, so the
model (and its layer list) is exactly the 1.0.1 one.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from .. import accel
from ..backbones.factory import Encoder, build_encoder, freeze_encoder, make_input
from ..backbones.registry import BackboneSpec, get_backbone_spec
from ..blocks import classification_head, conv_bn_act
from ..validation import (
    OUTPUT_STRIDES,
    check_activation,
    check_aux_params,
    check_classes,
    check_encoder_depth,
    check_output_stride,
    require_strides,
)
from ..weights import load_weights_file

PAD_LAYER_NAME = "pad_to_multiple"
CROP_LAYER_NAME = "crop_to_input"


def _pad_amounts(size, multiple: int):
    """(before, after) padding that brings ``size`` (int or scalar tensor) to a multiple of ``multiple``."""
    total = (multiple - size % multiple) % multiple
    before = total // 2
    return before, total - before


def _padded_size(size, multiple: int):
    return None if size is None else -(-size // multiple) * multiple


@keras.saving.register_keras_serializable(package="segmentation_models")
class PadToMultiple(keras.layers.Layer):
    """Pad height and width (centred) up to the next multiple of ``multiple``; a no-op on multiples.

    ``mode`` is 'reflect' (default: no artificial edges for the encoder to see) or 'constant' (zeros).
    Reflect padding needs each side to be smaller than the image; the builders' minimum input size
    guarantees it.
    """

    def __init__(self, multiple: int, mode: str = "reflect", **kwargs):
        super().__init__(autocast=False, **kwargs)
        if mode not in ("reflect", "constant"):
            raise ValueError(f"mode must be 'reflect' or 'constant', got {mode!r}")
        self.multiple = int(multiple)
        self.mode = mode

    def call(self, inputs):
        shape = ops.shape(inputs)
        top, bottom = _pad_amounts(shape[1], self.multiple)
        left, right = _pad_amounts(shape[2], self.multiple)
        if all(isinstance(v, int) and v == 0 for v in (top, bottom, left, right)):
            return inputs  # known sizes that are multiples already (torch's reflect pad rejects all-zero widths)
        return ops.pad(inputs, [[0, 0], [top, bottom], [left, right], [0, 0]], mode=self.mode)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, _padded_size(h, self.multiple), _padded_size(w, self.multiple), c)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple, "mode": self.mode}


@keras.saving.register_keras_serializable(package="segmentation_models")
class CropToInput(keras.layers.Layer):
    """Crop ``[output, image]``'s output back to the image's height and width (undoes `PadToMultiple`)."""

    def __init__(self, multiple: int, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.multiple = int(multiple)

    def call(self, inputs):
        output, image = inputs
        shape = ops.shape(image)
        top, _ = _pad_amounts(shape[1], self.multiple)
        left, _ = _pad_amounts(shape[2], self.multiple)
        return output[:, top : top + shape[1], left : left + shape[2], :]

    def compute_output_shape(self, input_shape):
        output_shape, image_shape = input_shape
        return (output_shape[0], image_shape[1], image_shape[2], output_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


def needs_padding(shape, multiple: int) -> bool:
    """Whether an input of ``shape`` (H, W, C) must be padded to reach multiples of ``multiple``."""
    return multiple > 1 and any(s is None or s % multiple for s in tuple(shape)[:2])


def min_input_size(backbone_min: int, size_multiple: int) -> int:
    """Smallest accepted height/width: the backbone's minimum, and more than half of ``size_multiple``
    (reflect padding of a side needs fewer pixels than the image has)."""
    return max(backbone_min, size_multiple // 2 + 1) if size_multiple > 1 else backbone_min


def refuse_token_backbone(spec: BackboneSpec, architecture: str = "This architecture") -> None:
    """Plain ViTs (keras-hub ViT, DINOv2, DINOv3) have all their tokens at one stride: only DPT reassembles them
    into a pyramid."""
    if spec.hub is not None and spec.hub.tokens:
        raise ValueError(
            f"{architecture} needs a feature pyramid (maps at strides 4..32), but {spec.description!r} is a plain "
            f"ViT ({spec.hub.family}) whose tokens are all at stride {spec.hub.patch_size}: strides "
            f"{[s for s in (2, 4, 8, 16, 32) if s != spec.hub.patch_size]} are missing. Use sm.DPT with it, or a "
            "keras-hub pyramid backbone (ResNet, CSPNet, DenseNet, EfficientNet, HGNetV2, MiT) with the other "
            "architectures."
        )


def check_arguments(
    architecture: str,
    backbone_name: str,
    aux_params: dict | None = None,
    *,
    encoder_depth: int | None = None,
    output_stride: int | None = None,
    output_strides: tuple[int, ...] = OUTPUT_STRIDES,
    required_strides: tuple[int, ...] = (),
) -> tuple[BackboneSpec, dict | None]:
    """The backbone-dependent checks of ``architecture``'s arguments, before anything is built: the backbone name,
    ``encoder_depth``, the encoder ``output_stride`` (among ``output_strides`` and those the backbone can produce),
    the feature maps it needs and ``aux_params``. Returns the backbone's spec and the completed ``aux_params``."""
    spec = get_backbone_spec(backbone_name)
    refuse_token_backbone(spec, architecture)
    if encoder_depth is not None:
        check_encoder_depth(spec, encoder_depth)
    if output_stride is not None:
        check_output_stride(output_stride, spec, output_strides, name="encoder_output_stride")
    require_strides(spec, required_strides, architecture)
    return spec, check_aux_params(aux_params)


def start(
    backbone_name: str,
    input_shape,
    classes: int,
    activation,
    encoder_weights,
    size_multiple: int = 32,
    feature_layout: str = "1.0.1",
    **kwargs,
) -> Encoder:
    """Validate the common arguments, make the input (padded to ``size_multiple`` when needed), build the encoder.

    ``size_multiple`` is what the decoder needs the backbone's input to divide by (32 for five x2 stages);
    ``feature_layout`` where the decoder taps the backbone: '1.0.1' (1.0.1's architectures) or 'smp'
    (segmentation_models.pytorch's taps, for the architectures that come from it).
    """
    check_classes(classes)
    check_activation(activation)
    spec = get_backbone_spec(backbone_name)
    refuse_token_backbone(spec)
    image = make_input(
        input_shape, kwargs.pop("input_tensor", None), spec, min_size=min_input_size(spec.min_input_size, size_multiple)
    )
    if not needs_padding(image.shape[1:], size_multiple):
        return build_encoder(
            backbone_name, encoder_weights=encoder_weights, input_tensor=image, feature_layout=feature_layout, **kwargs
        )
    padded = PadToMultiple(size_multiple, name=PAD_LAYER_NAME)(image)
    encoder = build_encoder(
        backbone_name, encoder_weights=encoder_weights, input_tensor=padded, feature_layout=feature_layout, **kwargs
    )
    return dataclasses.replace(encoder, image=image, pad_multiple=size_multiple)


def finish(
    encoder: Encoder, outputs, name: str, weights=None, encoder_freeze: bool = False, aux_output=None
) -> keras.Model:
    """Make the model (the mask cropped back to the input size if `start` padded), freeze the encoder
    if asked, load full-model ``weights`` if given.

    With ``aux_output`` (the auxiliary classification head) the model returns ``(mask, labels)``.
    """
    if encoder.pad_multiple > 1:
        outputs = CropToInput(encoder.pad_multiple, name=CROP_LAYER_NAME)([outputs, encoder.input])
    if aux_output is not None:
        outputs = [outputs, aux_output]
    model = accel.adopt(keras.Model(encoder.input, outputs, name=name))  # the package's: its fast paths
    if encoder_freeze:
        freeze_encoder(encoder.model)
    if weights is not None:
        load_weights_file(model, weights)
    return model


def center(encoder: Encoder, use_batchnorm: bool) -> keras.KerasTensor:
    """The encoder output, through 1.0.1's centre block (two 3x3 conv-bn-relu of 512 channels) when the backbone
    ends with a max pooling (VGG), as 1.0.1's Unet and Linknet have it."""
    x = encoder.output
    if isinstance(encoder.model.layers[-1], keras.layers.MaxPooling2D):
        x = conv_bn_act(x, 512, 3, name="center_block1", use_batchnorm=use_batchnorm)
        x = conv_bn_act(x, 512, 3, name="center_block2", use_batchnorm=use_batchnorm)
    return x


def aux_head(x: keras.KerasTensor, aux_params: dict | None) -> keras.KerasTensor | None:
    """The auxiliary classification output on the deepest encoder feature ``x`` (None without aux_params)."""
    if aux_params is None:
        return None
    return classification_head(x, **aux_params, name="aux")


def pyramid_features(encoder: Encoder, encoder_depth: int) -> list:
    """Encoder feature maps at strides 2, 4, ..., 2**encoder_depth (None where the backbone has none)."""
    return [encoder.feature(2**i) if 2**i in encoder.features else None for i in range(1, encoder_depth + 1)]
