"""Mix Transformer encoders MiT-B0..B5 (SegFormer, Xie et al. 2021) in Keras 3.

Architecture as in the reference implementation (NVlabs SegFormer / Hugging Face ``SegformerModel``):
four stages, each an overlapping patch embedding (a strided convolution with ``kernel // 2`` zero
padding, then LayerNorm), transformer blocks with efficient self-attention (keys and values computed
on a map reduced by a ``sr x sr`` strided convolution + LayerNorm) and a Mix-FFN (Linear, 3x3
depthwise convolution, exact GELU, Linear), and a final LayerNorm per stage. Stochastic depth
(``drop_path_rate``, 0.1 like SMP/HF, linearly increasing over the blocks) acts only in training.

Feature maps: strides 4, 8, 16 and 32 (``stage{i}_norm``). MiT has **no stride-2 feature map**; the
registry's ``features``/``channels`` omit stride 2, and Unet upsamples without a skip there.

Pretrained weights: the ImageNet-1k checkpoints published by NVIDIA on the Hugging Face hub
(``nvidia/mit-b*``, ``model.safetensors`` with Hugging Face Segformer tensor names) are converted on
load by `load_mit_safetensors` (registered for the ``mit`` family in
`segmentation_models.weights.converters`). They expect ImageNet mean/std normalised RGB input
(preprocessing mode ``torch``). All LayerNorms use epsilon 1e-5, as the reference does.

Works with any input size divisible by 32 and with ``None`` spatial dimensions, on TensorFlow, JAX
and PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
from keras import layers, ops

from ..weights.registry import register_weights
from .registry import BackboneSpec, register_family

__all__ = ["MIT_CONFIGS", "SpatialReductionAttention", "build_mit", "mit_tensor_map", "load_mit_safetensors"]

LN_EPS = 1e-5
PATCH_SIZES = (7, 3, 3, 3)
PATCH_STRIDES = (4, 2, 2, 2)
NUM_HEADS = (1, 2, 5, 8)
SR_RATIOS = (8, 4, 2, 1)
MLP_RATIO = 4


def _dense_init():  # the reference's initialisation (used when no pretrained weights are loaded)
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _conv_init():
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


@keras.saving.register_keras_serializable(package="segmentation_models")
class StochasticDepth(layers.Layer):
    """Drop a residual branch per sample with probability ``rate`` in training (DropPath); identity otherwise."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"StochasticDepth rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (keras.ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
        mask = keras.ops.floor(keep + noise)
        return x / keep * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config


# name -> (hidden sizes, depths)
MIT_CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "mit_b0": ((32, 64, 160, 256), (2, 2, 2, 2)),
    "mit_b1": ((64, 128, 320, 512), (2, 2, 2, 2)),
    "mit_b2": ((64, 128, 320, 512), (3, 4, 6, 3)),
    "mit_b3": ((64, 128, 320, 512), (3, 4, 18, 3)),
    "mit_b4": ((64, 128, 320, 512), (3, 8, 27, 3)),
    "mit_b5": ((64, 128, 320, 512), (3, 6, 40, 3)),
}


@keras.saving.register_keras_serializable(package="segmentation_models")
class SpatialReductionAttention(layers.Layer):
    """Multi-head scaled dot-product attention between a query map and a (reduced) key/value map.

    Inputs ``[query, key, value]``: ``query`` (B, H, W, C), ``key``/``value`` (B, h, w, C) (already
    projected). Returns (B, H, W, C). Has no weights: the projections are ordinary Dense layers
    around it, so that weights convert one to one from the reference.
    """

    def __init__(self, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        if int(num_heads) < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        self.num_heads = int(num_heads)

    def call(self, inputs):
        query, key, value = inputs
        channels = query.shape[-1]
        head_dim = channels // self.num_heads
        shape = ops.shape(query)
        batch = shape[0]
        q = ops.reshape(query, (batch, -1, self.num_heads, head_dim))
        k = ops.reshape(key, (batch, -1, self.num_heads, head_dim))
        v = ops.reshape(value, (batch, -1, self.num_heads, head_dim))
        # (B, heads, N, d)
        q = ops.transpose(q, (0, 2, 1, 3))
        k = ops.transpose(k, (0, 2, 3, 1))
        v = ops.transpose(v, (0, 2, 1, 3))
        scores = ops.matmul(q, k) * ops.cast(1.0 / np.sqrt(head_dim), q.dtype)
        probs = ops.softmax(scores, axis=-1)
        out = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
        return ops.reshape(out, (batch, shape[1], shape[2], channels))

    def compute_output_shape(self, input_shapes):
        return tuple(input_shapes[0])

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads)
        return config


def _patch_embedding(x, stage: int, filters: int):
    kernel, stride = PATCH_SIZES[stage - 1], PATCH_STRIDES[stage - 1]
    x = layers.ZeroPadding2D(kernel // 2, name=f"patch_embed{stage}_pad")(x)
    x = layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="valid",
        kernel_initializer=_conv_init(),
        name=f"patch_embed{stage}_proj",
    )(x)
    return layers.LayerNormalization(epsilon=LN_EPS, name=f"patch_embed{stage}_norm")(x)


def _block(x, stage: int, index: int, dim: int, drop_rate: float):
    name = f"block{stage}_{index}"
    heads, sr = NUM_HEADS[stage - 1], SR_RATIOS[stage - 1]
    h = layers.LayerNormalization(epsilon=LN_EPS, name=f"{name}_norm1")(x)
    q = layers.Dense(dim, kernel_initializer=_dense_init(), name=f"{name}_attn_q")(h)
    kv = h
    if sr > 1:
        kv = layers.Conv2D(
            dim, sr, strides=sr, padding="valid", kernel_initializer=_conv_init(), name=f"{name}_attn_sr"
        )(kv)
        kv = layers.LayerNormalization(epsilon=LN_EPS, name=f"{name}_attn_norm")(kv)
    k = layers.Dense(dim, kernel_initializer=_dense_init(), name=f"{name}_attn_k")(kv)
    v = layers.Dense(dim, kernel_initializer=_dense_init(), name=f"{name}_attn_v")(kv)
    a = SpatialReductionAttention(heads, name=f"{name}_attn")([q, k, v])
    a = layers.Dense(dim, kernel_initializer=_dense_init(), name=f"{name}_attn_proj")(a)
    if drop_rate > 0:
        a = StochasticDepth(drop_rate, name=f"{name}_drop_path1")(a)
    x = layers.Add(name=f"{name}_add1")([x, a])

    h = layers.LayerNormalization(epsilon=LN_EPS, name=f"{name}_norm2")(x)
    h = layers.Dense(dim * MLP_RATIO, kernel_initializer=_dense_init(), name=f"{name}_mlp_fc1")(h)
    h = layers.DepthwiseConv2D(3, padding="same", depthwise_initializer=_conv_init(), name=f"{name}_mlp_dwconv")(h)
    h = layers.Activation("gelu", name=f"{name}_mlp_gelu")(h)
    h = layers.Dense(dim, kernel_initializer=_dense_init(), name=f"{name}_mlp_fc2")(h)
    if drop_rate > 0:
        h = StochasticDepth(drop_rate, name=f"{name}_drop_path2")(h)
    return layers.Add(name=f"{name}_add2")([x, h])


def build_mit(
    input_tensor: keras.KerasTensor,
    hidden_sizes: Sequence[int],
    depths: Sequence[int],
    drop_path_rate: float = 0.1,
    name: str = "mit",
) -> keras.Model:
    """Build a Mix Transformer on ``input_tensor``; its output is the stride-32 map ``stage4_norm``."""
    if not 0.0 <= float(drop_path_rate) < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    rates = np.linspace(0.0, float(drop_path_rate), sum(depths)).tolist()
    x, block_index = input_tensor, 0
    for stage, (dim, depth) in enumerate(zip(hidden_sizes, depths), start=1):
        x = _patch_embedding(x, stage, dim)
        for i in range(depth):
            x = _block(x, stage, i, dim, rates[block_index])
            block_index += 1
        x = layers.LayerNormalization(epsilon=LN_EPS, name=f"stage{stage}_norm")(x)
    return keras.Model(input_tensor, x, name=name)


# ---- conversion of the reference (Hugging Face Segformer) tensors --------------------------------
def _kernel(t: np.ndarray) -> np.ndarray:  # torch Conv2d (out, in, kh, kw) -> Keras (kh, kw, in, out)
    return np.transpose(t, (2, 3, 1, 0))


def _depthwise(t: np.ndarray) -> np.ndarray:  # torch (C, 1, kh, kw) -> Keras DepthwiseConv2D (kh, kw, C, 1)
    return np.transpose(t, (2, 3, 0, 1))


def _linear(t: np.ndarray) -> np.ndarray:  # torch Linear (out, in) -> Keras Dense (in, out)
    return np.transpose(t, (1, 0))


def _identity(t: np.ndarray) -> np.ndarray:
    return t


def mit_tensor_map(depths: Sequence[int]) -> dict[str, tuple[str, int, callable]]:
    """``{reference tensor name: (Keras layer name, weight index, transform)}`` of a MiT encoder.

    Names are those of Hugging Face ``SegformerModel`` (``encoder.`` prefix, without the
    ``segformer.`` prefix of ``SegformerForImageClassification`` checkpoints).
    """
    table: dict[str, tuple[str, int, callable]] = {}

    def conv(torch_name, layer, transform=_kernel):
        table[f"{torch_name}.weight"] = (layer, 0, transform)
        table[f"{torch_name}.bias"] = (layer, 1, _identity)

    def norm(torch_name, layer):
        table[f"{torch_name}.weight"] = (layer, 0, _identity)
        table[f"{torch_name}.bias"] = (layer, 1, _identity)

    for s, depth in enumerate(depths):
        stage = s + 1
        conv(f"encoder.patch_embeddings.{s}.proj", f"patch_embed{stage}_proj")
        norm(f"encoder.patch_embeddings.{s}.layer_norm", f"patch_embed{stage}_norm")
        for i in range(depth):
            ref, ours = f"encoder.block.{s}.{i}", f"block{stage}_{i}"
            norm(f"{ref}.layer_norm_1", f"{ours}_norm1")
            for part, short in (("query", "q"), ("key", "k"), ("value", "v")):
                conv(f"{ref}.attention.self.{part}", f"{ours}_attn_{short}", _linear)
            if SR_RATIOS[s] > 1:
                conv(f"{ref}.attention.self.sr", f"{ours}_attn_sr")
                norm(f"{ref}.attention.self.layer_norm", f"{ours}_attn_norm")
            conv(f"{ref}.attention.output.dense", f"{ours}_attn_proj", _linear)
            norm(f"{ref}.layer_norm_2", f"{ours}_norm2")
            conv(f"{ref}.mlp.dense1", f"{ours}_mlp_fc1", _linear)
            conv(f"{ref}.mlp.dwconv.dwconv", f"{ours}_mlp_dwconv", _depthwise)
            conv(f"{ref}.mlp.dense2", f"{ours}_mlp_fc2", _linear)
        norm(f"encoder.layer_norm.{s}", f"stage{stage}_norm")
    return table


# Tensors of the published checkpoints that are not part of the encoder (the ImageNet classifier).
IGNORED_PREFIXES = ("classifier.", "decode_head.")
MODEL_PREFIX = "segformer."


def _expected_torch_shape(transform, keras_shape: tuple) -> tuple:
    if transform is _kernel:
        kh, kw, cin, cout = keras_shape
        return (cout, cin, kh, kw)
    if transform is _depthwise:
        kh, kw, c, m = keras_shape
        return (c * m, 1, kh, kw)
    if transform is _linear:
        return tuple(reversed(keras_shape))
    return tuple(keras_shape)


def convert_mit_tensors(
    model: keras.Model,
    tensors: Mapping[str, np.ndarray],
    depths: Sequence[int],
    source: str = "weights file",
    first_conv: str | None = "patch_embed1_proj",
) -> dict[str, list[np.ndarray]]:
    """Map reference tensors to ``{Keras layer name: [arrays]}`` for ``model``.

    Raises `WeightsMismatchError` naming missing tensors, unexpected tensors and tensors of the
    wrong shape. The input-channel dimension of ``first_conv`` is not checked here: channel
    adaptation (or the shape check of `assign_weights_by_name`) deals with it.
    """
    from ..weights.loading import WeightsMismatchError, _few

    table = mit_tensor_map(depths)
    stripped: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if name.startswith(IGNORED_PREFIXES):
            continue
        key = name[len(MODEL_PREFIX) :] if name.startswith(MODEL_PREFIX) else name
        stripped[key] = np.asarray(value)
    missing = sorted(set(table) - set(stripped))
    unexpected = sorted(set(stripped) - set(table))
    problems: list[str] = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing from the {source}: {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) in the {source}: {_few(unexpected)}")

    layer_weights: dict[str, list] = {}
    for torch_name, (layer_name, index, transform) in table.items():
        if torch_name not in stripped:
            continue
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            problems.append(f"model has no layer {layer_name!r} for tensor {torch_name!r}")
            continue
        want = _expected_torch_shape(transform, tuple(layer.weights[index].shape))
        got = tuple(stripped[torch_name].shape)
        shape_ok = got == want
        if not shape_ok and layer_name == first_conv and transform is _kernel and len(got) == 4:
            shape_ok = (got[0], got[2], got[3]) == (want[0], want[2], want[3])  # only input channels differ
        if not shape_ok:
            problems.append(f"tensor {torch_name!r} has shape {got}, layer {layer_name!r} needs {want}")
            continue
        arrays = layer_weights.setdefault(layer_name, [None] * len(layer.weights))
        arrays[index] = transform(stripped[torch_name]).astype("float32")
    if problems:
        raise WeightsMismatchError(
            f"The {source} does not fit {model.name}:\n  - "
            + "\n  - ".join(problems)
            + "\nIs it a checkpoint of another MiT variant (or another model)?"
        )
    return layer_weights


def load_mit_safetensors(
    model: keras.Model, spec: BackboneSpec, tensors: Mapping[str, np.ndarray], source: str
) -> dict[str, list[np.ndarray]]:
    """Converter registered for the ``mit`` family: reference tensors -> layer weights."""
    return convert_mit_tensors(model, tensors, MIT_CONFIGS[spec.name][1], source=source, first_conv=spec.first_conv)


def _mit_builder(hidden_sizes, depths, name):
    def builder(input_tensor, output_stride: int = 32, drop_path_rate: float = 0.1, **_):
        return build_mit(input_tensor, hidden_sizes, depths, drop_path_rate=drop_path_rate, name=name)

    return builder


register_family(
    "mit",
    {
        name: dict(
            builder=_mit_builder(sizes, depths, name),
            channels=dict(zip((4, 8, 16, 32), sizes)),
            description=(
                f"Mix Transformer {name[4:].upper()} (SegFormer encoder; depths {depths}, widths {sizes}); "
                "features at strides 4-32, none at stride 2"
            ),
        )
        for name, (sizes, depths) in MIT_CONFIGS.items()
    },
    features={4: "stage1_norm", 8: "stage2_norm", 16: "stage3_norm", 32: "stage4_norm"},  # no stride-2 map
    preprocessing="torch",
    first_conv="patch_embed1_proj",
)

# NVIDIA's ImageNet-1k checkpoints (Hugging Face tensor names, SegformerForImageClassification; the classifier
# is dropped on load), pinned to a commit. Only files whose published sha256 could be verified are registered
# (mit_b0/b2/b4: none yet).
for _name, (_commit, _sha256) in {
    "mit_b1": (
        "44575a0572f5374ed1e5b4e46ec8276222f6ffe8",
        "4c19537dff32bbaa876174c371759ac1046c980bbf8096273bb03261429bdce1",
    ),
    "mit_b3": (
        "4c2f314b6a213100cb822264a737f39d1ce062b8",
        "8de18cbe1efd929b0caa6b54edb92a4524e10e4d6f9468645933af15f5b2923e",
    ),
    "mit_b5": (
        "8c15ac959fdc3130572f9320d6955cef46046a72",
        "ce3ad22d97c4352b2f28a5a732f547de19b9a03a8be2e769e12ff07c34febec0",
    ),
}.items():
    register_weights(
        _name,
        "imagenet",
        f"https://huggingface.co/nvidia/{_name.replace('_', '-')}/resolve/{_commit}/model.safetensors",
        _sha256,
        filename=f"{_name}_imagenet_nvidia.safetensors",
        format="safetensors",
        source="nvidia (Hugging Face hub)",
    )
from ..weights.converters import register_converter  # noqa: E402

register_converter("mit", load_mit_safetensors)
