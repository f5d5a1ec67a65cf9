"""EfficientNet-B0..B7 as in ``efficientnet`` 1.0.0 (the encoders of segmentation_models 1.0.1).

Same architecture and layer names as efficientnet 1.0.0 (``stem_conv``, ``block2a_expand_conv``,
``top_bn``...; 'same' padding, no input rescaling inside the model: images are preprocessed in
``torch`` mode), so that its published ImageNet ``.h5`` files (autoaugment, no top) and the
weights of 1.0.1 models load by layer name. Swish is Keras' ``swish`` activation and the
per-sample stochastic depth is a ``Dropout`` with ``noise_shape=(None, 1, 1, 1)``, as in
efficientnet 1.0.0's ``FixedDropout``.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from dataclasses import dataclass, replace

import keras
from keras import layers

from ..validation import check_output_stride
from ..weights.registry import register_published
from .registry import register_family

CONV_INIT = keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="normal")


@dataclass(frozen=True)
class BlockArgs:
    kernel_size: int
    num_repeat: int
    input_filters: int
    output_filters: int
    expand_ratio: int
    strides: int
    se_ratio: float = 0.25
    id_skip: bool = True


DEFAULT_BLOCKS_ARGS = (
    BlockArgs(3, 1, 32, 16, 1, 1),
    BlockArgs(3, 2, 16, 24, 6, 2),
    BlockArgs(5, 2, 24, 40, 6, 2),
    BlockArgs(3, 3, 40, 80, 6, 2),
    BlockArgs(5, 3, 80, 112, 6, 1),
    BlockArgs(5, 4, 112, 192, 6, 2),
    BlockArgs(3, 1, 192, 320, 6, 1),
)

# name: (width coefficient, depth coefficient, default resolution, dropout rate)
EFFICIENTNET_PARAMS = {
    "efficientnetb0": (1.0, 1.0, 224, 0.2),
    "efficientnetb1": (1.0, 1.1, 240, 0.2),
    "efficientnetb2": (1.1, 1.2, 260, 0.3),
    "efficientnetb3": (1.2, 1.4, 300, 0.3),
    "efficientnetb4": (1.4, 1.8, 380, 0.4),
    "efficientnetb5": (1.6, 2.2, 456, 0.4),
    "efficientnetb6": (1.8, 2.6, 528, 0.5),
    "efficientnetb7": (2.0, 3.1, 600, 0.5),
}


def round_filters(filters: float, width_coefficient: float, depth_divisor: int = 8) -> int:
    """Number of filters scaled by the width coefficient (efficientnet 1.0.0 rounding)."""
    filters *= width_coefficient
    new_filters = int(filters + depth_divisor / 2) // depth_divisor * depth_divisor
    new_filters = max(depth_divisor, new_filters)
    if new_filters < 0.9 * filters:
        new_filters += depth_divisor
    return int(new_filters)


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    return int(math.ceil(depth_coefficient * repeats))


def _conv_bn(x, filters: int, kernel: int, prefix: str, strides: int = 1, activation: bool = True):
    """'same' convolution, BN and swish named ``{prefix}conv``, ``{prefix}bn``, ``{prefix}activation``."""
    x = layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=CONV_INIT,
        name=prefix + "conv",
    )(x)
    x = layers.BatchNormalization(axis=-1, name=prefix + "bn")(x)
    return layers.Activation("swish", name=prefix + "activation")(x) if activation else x


def mb_conv_block(inputs, args: BlockArgs, drop_rate: float, prefix: str, dilation: int = 1):
    """Mobile inverted residual bottleneck with squeeze-and-excitation (efficientnet 1.0.0 names)."""
    filters = args.input_filters * args.expand_ratio
    x = inputs
    if args.expand_ratio != 1:
        x = _conv_bn(x, filters, 1, prefix + "expand_")
    x = layers.DepthwiseConv2D(
        args.kernel_size,
        strides=args.strides,
        padding="same",
        dilation_rate=dilation,
        use_bias=False,
        depthwise_initializer=CONV_INIT,
        name=prefix + "dwconv",
    )(x)
    x = layers.BatchNormalization(axis=-1, name=prefix + "bn")(x)
    x = layers.Activation("swish", name=prefix + "activation")(x)
    if args.se_ratio and 0 < args.se_ratio <= 1:
        reduced = max(1, int(args.input_filters * args.se_ratio))
        se = layers.GlobalAveragePooling2D(name=prefix + "se_squeeze")(x)
        se = layers.Reshape((1, 1, filters), name=prefix + "se_reshape")(se)
        se = layers.Conv2D(
            reduced, 1, activation="swish", padding="same", kernel_initializer=CONV_INIT, name=prefix + "se_reduce"
        )(se)
        se = layers.Conv2D(
            filters, 1, activation="sigmoid", padding="same", kernel_initializer=CONV_INIT, name=prefix + "se_expand"
        )(se)
        x = layers.Multiply(name=prefix + "se_excite")([x, se])
    x = _conv_bn(x, args.output_filters, 1, prefix + "project_", activation=False)
    if args.id_skip and args.strides == 1 and args.input_filters == args.output_filters:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=prefix + "drop")(x)
        x = layers.Add(name=prefix + "add")([x, inputs])
    return x


def build_efficientnet(
    input_tensor,
    width_coefficient: float,
    depth_coefficient: float,
    drop_connect_rate: float = 0.2,
    depth_divisor: int = 8,
    blocks_args=DEFAULT_BLOCKS_ARGS,
    name: str = "efficientnet",
    output_stride: int = 32,
) -> keras.Model:
    """EfficientNet without its classifier (ends with ``top_activation``, stride 32).

    ``output_stride`` 16 or 8 (DeepLab) replaces the strides of the last stages by dilated depthwise
    convolutions, as for the ResNets: the block that had the stride keeps the previous dilation, the
    blocks after it get twice that. Layers and weights are unchanged, so pretrained files still load.
    """
    check_output_stride(output_stride)
    x = _conv_bn(input_tensor, round_filters(32, width_coefficient, depth_divisor), 3, "stem_", strides=2)

    blocks_args = [
        replace(
            a,
            input_filters=round_filters(a.input_filters, width_coefficient, depth_divisor),
            output_filters=round_filters(a.output_filters, width_coefficient, depth_divisor),
            num_repeat=round_repeats(a.num_repeat, depth_coefficient),
        )
        for a in blocks_args
    ]
    total = sum(a.num_repeat for a in blocks_args)
    block_num, current_stride, dilation = 0, 2, 1
    for idx, args in enumerate(blocks_args):
        block_dilation = dilation
        if args.strides == 2 and current_stride >= output_stride:
            args, dilation = replace(args, strides=1), dilation * 2
        elif args.strides == 2:
            current_stride *= 2
        for rep in range(args.num_repeat):
            if rep > 0:
                args, block_dilation = replace(args, input_filters=args.output_filters, strides=1), dilation
            prefix = f"block{idx + 1}{string.ascii_lowercase[rep]}_"
            x = mb_conv_block(x, args, drop_connect_rate * block_num / total, prefix, dilation=block_dilation)
            block_num += 1

    x = _conv_bn(x, round_filters(1280, width_coefficient, depth_divisor), 1, "top_")
    return keras.Model(input_tensor, x, name=name)


def _efficientnet_smp_taps(width: float, depth: float) -> tuple[dict[int, str], dict[int, int]]:
    """SMP's taps: the stem, then the output of the stages that end at strides 4, 8, 16 and 32 (blocks 2, 3, 5
    and 7; SMP's efficientnet-b0 alone takes block 5a's instead of 5c's, same channels)."""
    features, channels = {2: "stem_activation"}, {2: round_filters(32, width)}
    for stride, stage in ((4, 1), (8, 2), (16, 4), (32, 6)):
        args = DEFAULT_BLOCKS_ARGS[stage]
        repeats = round_repeats(args.num_repeat, depth)
        last = f"block{stage + 1}{string.ascii_lowercase[repeats - 1]}_"
        features[stride] = last + ("add" if repeats > 1 else "project_bn")
        channels[stride] = round_filters(args.output_filters, width)
    return features, channels


def _efficientnet_builder(width: float, depth: float, name: str) -> Callable:
    def builder(input_tensor, output_stride: int = 32, **_):
        return build_efficientnet(input_tensor, width, depth, name=name, output_stride=output_stride)

    return builder


def _efficientnet_channels(width: float) -> dict[int, int]:
    # the stride-s feature is the expansion (x6) of the block input filters of that stage
    inputs = {2: 16, 4: 24, 8: 40, 16: 112}
    channels = {s: round_filters(f, width) * 6 for s, f in inputs.items()}
    channels[32] = round_filters(1280, width)
    return channels


def _efficientnet_variant(name: str, width: float, depth: float, resolution: int) -> dict:
    smp_features, smp_channels = _efficientnet_smp_taps(width, depth)
    return dict(
        builder=_efficientnet_builder(width, depth, name),
        channels=_efficientnet_channels(width),
        description=f"EfficientNet-B{name[-1]} (efficientnet 1.0.0 layout, {resolution}px ImageNet)",
        smp_features=smp_features,
        smp_channels=smp_channels,
    )


register_family(
    "efficientnet",
    {name: _efficientnet_variant(name, *params[:3]) for name, params in EFFICIENTNET_PARAMS.items()},
    features={
        2: "block2a_expand_activation",
        4: "block3a_expand_activation",
        8: "block4a_expand_activation",
        16: "block6a_expand_activation",
        32: "top_activation",
    },
    preprocessing="torch",
    first_conv="stem_conv",
    can_dilate=True,
)
# efficientnet 1.0.0's WEIGHTS_HASHES (no top, autoaugment)
register_published(
    "efficientnet 1.0.0",
    {
        "efficientnetb0": "c1421ad80a9fc67c2cc4000f666aa50789ce39eedb4e06d531b0c593890ccff3",
        "efficientnetb1": "75de265d03ac52fa74f2f510455ba64f9c7c5fd96dc923cd4bfefa3d680c4b68",
        "efficientnetb2": "433b60584fafba1ea3de07443b74cfd32ce004a012020b07ef69e22ba8669333",
        "efficientnetb3": "c5d42eb6cfae8567b418ad3845cfd63aa48b87f1bd5df8658a49375a9f3135c7",
        "efficientnetb4": "7942c1407ff1feb34113995864970cd4d9d91ea64877e8d9c38b6c1e0767c411",
        "efficientnetb5": "9d197bc2bfe29165c10a2af8c2ebc67507f5d70456f09e584c71b822941b1952",
        "efficientnetb6": "1d0923bb038f2f8060faaf0a0449db4b96549a881747b7c7678724ac79f427ed",
        "efficientnetb7": "60b56ff3a8daccc8d96edfd40b204c113e51748da657afd58034d54d3cec2bac",
    },
    lambda name: (
        "https://github.com/Callidior/keras-applications/releases/download/efficientnet/"
        f"efficientnet-{name[-2:]}_weights_tf_dim_ordering_tf_kernels_autoaugment_notop.h5"
    ),
)
