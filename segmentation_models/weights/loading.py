"""Loading weights into models by layer name, with checks that name what does not fit."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import h5py
import keras
import numpy as np

__all__ = [
    "read_h5_weights",
    "assign_weights_by_name",
    "load_weights_file",
    "is_keras3_weights_file",
    "WeightsMismatchError",
    "assign_weights",
    "match_auto_named_layers",
    "align_weights_by_order",
    "adapt_first_conv_kernel",
    "cycle_channels",
    "input_channel_adapter",
]


class WeightsMismatchError(ValueError):
    """A weights file does not fit the model (other backbone, other shapes, missing tensors)."""


def _decode(values) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def is_keras3_weights_file(path: str | os.PathLike) -> bool:
    """True for files written by Keras 3 ``save_weights`` (``.weights.h5``, keyed by position)."""
    with h5py.File(path, "r") as f:
        return "layer_names" not in f.attrs and "model_weights" not in f and "layers" in f


def read_h5_weights(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Read a Keras 2 style HDF5 weights file (keras-applications, image-classifiers, 1.0.1 models).

    Returns ``{layer name: [arrays in the layer's weight order]}`` for layers that have weights.
    """
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise WeightsMismatchError(f"{path} is not a readable HDF5 weights file: {err}") from err
    with f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise WeightsMismatchError(
                f"{path} is not a layer-keyed HDF5 weights file (no 'layer_names' attribute); "
                "files written by Keras 3 `save_weights` (.weights.h5) are loaded with model.load_weights."
            )
        out: dict[str, list[np.ndarray]] = {}
        for name in _decode(group.attrs["layer_names"]):
            g = group[name]
            names = _decode(g.attrs.get("weight_names", []))
            if names:
                out[name] = [np.asarray(g[w]) for w in names]
        return out


def _weighted_leaves(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers with weights, nested models' included, in model order."""
    found: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_weighted_leaves(layer))
        elif layer.weights:
            found.append(layer)
    return found


def _layers_with_weights(model: keras.Model) -> dict[str, keras.layers.Layer]:
    return {layer.name: layer for layer in _weighted_leaves(model)}


Adapter = Callable[[keras.layers.Layer, list], "list | None"]


def assign_weights_by_name(
    model: keras.Model,
    weights: Mapping[str, Sequence[np.ndarray]],
    *,
    required: Iterable[str] | None = None,
    source: str = "weights file",
    adapt: Adapter | None = None,
    allow_unused: bool = False,
) -> list[str]:
    """Set the weights of ``model``'s layers from ``weights`` (``{layer name: arrays}``).

    Args:
        required: layer names that must receive weights (default: every layer of the model
            with weights); a missing one is an error.
        adapt: called as ``adapt(layer, arrays)`` when shapes differ; returns arrays that fit or None.
        allow_unused: accept layers in ``weights`` that the model does not have.

    Returns the names of the layers that were set. Raises `WeightsMismatchError` naming the
    missing, unexpected and mis-shaped layers.
    """
    layers = _layers_with_weights(model)
    required = set(layers if required is None else required) & set(layers)
    unexpected = sorted(set(weights) - set(layers))
    missing = sorted(required - set(weights))
    problems: list[str] = []
    if unexpected and not allow_unused:
        problems.append(f"{len(unexpected)} layer(s) in the {source} are not in the model: {_few(unexpected)}")
    if missing:
        problems.append(f"{len(missing)} model layer(s) have no weights in the {source}: {_few(missing)}")
    assignments = []
    for name, arrays in weights.items():
        layer = layers.get(name)
        if layer is None:
            continue
        arrays = [np.asarray(a) for a in arrays]
        expected = [tuple(v.shape) for v in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got and adapt is not None:
            adapted = adapt(layer, arrays)
            if adapted is not None:
                arrays, got = adapted, [tuple(a.shape) for a in adapted]
        if expected != got:
            problems.append(f"layer {name!r}: {source} has shapes {got}, model expects {expected}")
            continue
        assignments.append((layer, arrays))
    if problems:
        raise WeightsMismatchError(
            f"The {source} does not fit this model ({model.name}):\n  - "
            + "\n  - ".join(problems)
            + "\nIs it a file for another backbone or another input channel count?"
        )
    for layer, arrays in assignments:
        layer.set_weights(arrays)
    return [layer.name for layer, _ in assignments]


def _few(names: Sequence[str], n: int = 6) -> str:
    shown = ", ".join(repr(x) for x in names[:n])
    return shown + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Load full-model weights from ``path`` into ``model``.

    Accepts Keras 2 style HDF5 files keyed by layer name (as saved by segmentation_models 1.0.1),
    Keras 3 ``.weights.h5`` files, and ``.keras`` model archives (weights copied by layer name).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".keras":
        from ..utils import verify_keras_archive

        verify_keras_archive(path)
        other = keras.saving.load_model(path, compile=False)
        arrays = {n: [np.asarray(w) for w in layer.get_weights()] for n, layer in _layers_with_weights(other).items()}
        assign_weights_by_name(model, arrays, source=f"model file {path.name}")
        return
    if is_keras3_weights_file(path):
        try:
            model.load_weights(str(path))
        except ValueError as err:
            raise WeightsMismatchError(f"{path} does not fit this model: {err}") from err
        return
    weights = match_auto_named_layers(model, read_h5_weights(path))
    assign_weights(model, weights, source=f"weights file {path.name}")


# Keras 2 named the layers it was given no name for ('conv2d_17', depending on the session); the files of
# image-classifiers' SE-Nets/ResNeXts, keras-applications' Inceptions and models saved with segmentation_models 1.0.1
# carry such names. Keras 2 loaded them by position; `assign_weights` does the same when matching by name fails.
_AUTO_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z][a-z0-9]*)*(_\d+)?$")
_KERAS_CLASS_NAMES = (
    "conv2d",
    "batch_normalization",
    "dense",
    "depthwise_conv2d",
    "separable_conv2d",
    "conv2d_transpose",
)


def is_auto_generated_name(name: str) -> bool:
    """True for names Keras makes up for unnamed layers (``conv2d``, ``conv2d_17``, ``batch_normalization_3``)."""
    base = re.sub(r"_\d+$", "", name)
    return bool(_AUTO_NAME.match(name)) and base in _KERAS_CLASS_NAMES


def assign_weights(
    model: keras.Model,
    weights: Mapping[str, Sequence[np.ndarray]],
    *,
    source: str = "weights file",
    adapt: Adapter | None = None,
) -> list[str]:
    """Match ``weights`` to ``model`` by layer name; when that fails and the file has Keras auto-generated
    layer names (``conv2d_17``), match by position as Keras 2 did. Errors name what does not fit."""
    if any("/" in n for n in weights):  # keras-applications DenseNet files: 'conv1/conv' is 'conv1_conv' in Keras 3
        weights = {n.replace("/", "_"): arrays for n, arrays in weights.items()}
    try:
        return assign_weights_by_name(model, weights, source=source, adapt=adapt)
    except WeightsMismatchError as by_name:
        unknown = set(weights) - set(_layers_with_weights(model))
        if not any(is_auto_generated_name(n) for n in unknown):
            raise
        try:
            aligned = align_weights_by_order(model, weights, source=source, adapt=adapt)
        except WeightsMismatchError as by_order:
            raise WeightsMismatchError(
                f"{by_name}\nIt does not fit by position either (Keras 2 style): {by_order}"
            ) from None
        return assign_weights_by_name(model, aligned, source=source, adapt=adapt)


# ---- layers that 1.0.1 left unnamed ----------------------------------------------------------------------
_AUTO_NAME_KIND = re.compile(r"^(?P<kind>[a-z0-9_]+?)(_\d+)?$")


def _snake_case(class_name: str) -> str:
    """Keras' automatic layer name stem: Conv2D -> conv2d, Conv2DTranspose -> conv2d_transpose."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def match_auto_named_layers(model: keras.Model, weights: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Rename the file's auto-named layers (e.g. 1.0.1 Linknet's final ``conv2d_7``) to the model's names.

    A file layer is renamed only when it is the one file layer of its kind (``conv2d``) that the model lacks,
    the model has exactly one layer of that class without weights in the file, and the shapes agree.
    """
    layers = _layers_with_weights(model)
    unexpected = [n for n in weights if n not in layers]
    missing = [layers[n] for n in layers if n not in weights]
    renamed = dict(weights)
    for layer in missing:
        kind = _snake_case(type(layer).__name__)
        same_kind = [n for n in unexpected if (m := _AUTO_NAME_KIND.match(n)) and m.group("kind") == kind]
        missing_same_kind = [candidate for candidate in missing if type(candidate) is type(layer)]
        if len(same_kind) != 1 or len(missing_same_kind) != 1:
            continue
        arrays = weights[same_kind[0]]
        if [tuple(np.shape(a)) for a in arrays] == [tuple(v.shape) for v in layer.weights]:
            renamed[layer.name] = renamed.pop(same_kind[0])
            unexpected.remove(same_kind[0])
    return renamed


# ---- files matched to the model by position ------------------------------------------------
def _legacy_order_weights(layer: keras.layers.Layer) -> list:
    """A layer's weights in the order Keras writes them to a legacy HDF5 file (trainable first)."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _another_backbone(text: str) -> WeightsMismatchError:
    return WeightsMismatchError(text + ": it is a file for another backbone (or another variant of this family).")


def align_weights_by_order(
    model: keras.Model,
    weights: Mapping[str, Sequence[np.ndarray]],
    *,
    source: str = "weights file",
    adapt: Adapter | None = None,
) -> dict[str, list[np.ndarray]]:
    """Key the arrays of a legacy HDF5 file by ``model``'s layer names, by position.

    Keras 2 and keras.applications load such files by position (``model.load_weights`` zips the model's weighted
    layers with the file's ``layer_names``), and the stored names need not be Keras 3's: Keras 2 names such as
    ``Conv/BatchNorm``, nested ``Sequential`` groups, auto-generated names such as ``conv2d_3``. This does the same:
    the file's arrays, in file order, are handed out to the model's weighted layers in model order, each layer's
    in the order Keras writes them (trainable first). A grouped ``Conv2D`` (``groups=g``) whose kernel is not next
    takes ``g`` consecutive per-group convolutions (image-classifiers' ``GroupConv2D``), concatenated along the
    output channels. Every shape is checked, ``adapt(layer, arrays)`` fitting arrays of other shapes (the input
    channels) as in `assign_weights_by_name`; raises `WeightsMismatchError` at the first layer that does not fit.
    """
    stream = [np.asarray(a) for arrays in weights.values() for a in arrays]
    leaves = _weighted_leaves(model)
    grouped = {id(leaf) for leaf in leaves if isinstance(leaf, keras.layers.Conv2D) and leaf.groups > 1}
    needed = sum(len(leaf.weights) for leaf in leaves)
    if not grouped and len(stream) != needed:
        raise _another_backbone(
            f"The {source} holds {len(stream)} arrays in {len(weights)} layers, but {model.name} needs "
            f"{needed} arrays in {len(leaves)} layers"
        )
    out: dict[str, list[np.ndarray]] = {}
    position = 0
    for leaf in leaves:
        variables = _legacy_order_weights(leaf)
        count = len(variables)
        chunk = stream[position : position + count]
        if id(leaf) in grouped and [a.shape for a in chunk] != [tuple(v.shape) for v in variables]:
            parts = stream[position : position + count * leaf.groups]
            chunk = [np.concatenate(parts[k::count], axis=-1) for k in range(count)] if parts else []
            count = len(parts)
        if len(chunk) < len(variables):
            raise _another_backbone(f"The {source} holds {len(stream)} arrays, none left for layer {leaf.name!r}")
        position += count
        # back to the layer's own weight order (what set_weights expects)
        by_id = {id(v): a for v, a in zip(variables, chunk)}
        arrays = [by_id[id(v)] for v in leaf.weights]
        expected = [tuple(v.shape) for v in leaf.weights]
        got = [tuple(a.shape) for a in arrays]
        if got != expected and adapt is not None:
            arrays = adapt(leaf, arrays) or arrays
            got = [tuple(a.shape) for a in arrays]
        if got != expected:
            raise _another_backbone(
                f"The {source} does not fit {model.name} by position: arrays {position - count}..{position - 1} "
                f"have shapes {got}, layer {leaf.name!r} expects {expected}"
            )
        out[leaf.name] = arrays
    if position != len(stream):
        raise _another_backbone(
            f"The {source} holds {len(stream) - position} more arrays than {model.name} has weights"
        )
    return out


# ---- input channels other than the pretrained ones (SMP's rule) ------------------------------
def adapt_first_conv_kernel(kernel: np.ndarray, channels: int) -> np.ndarray:
    """Kernel (kh, kw, C0, filters) for ``channels`` inputs: the sum over C0 for one channel,
    otherwise the C0 kernels cycled and scaled by C0 / channels (segmentation_models.pytorch's
    ``patch_first_conv``), so that a grey image gives what the C0-channel model gives on the grey
    image repeated in every channel (one channel), and activations keep their scale (more channels).
    """
    kernel = np.asarray(kernel)
    original = kernel.shape[2]
    if channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    index = [i % original for i in range(channels)]
    return kernel[:, :, index, :] * (original / channels)


def cycle_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """Per-input-channel parameters (e.g. a normalisation's mean) cycled over ``channels``."""
    array = np.asarray(array)
    return array[[i % array.shape[0] for i in range(channels)]]


def input_channel_adapter(first_conv: str | None, input_channel_layers: Iterable[str] = ()) -> Adapter:
    """An ``adapt`` function for `assign_weights_by_name` that fits pretrained weights to the
    model's input channel count: the first convolution's kernel (`adapt_first_conv_kernel`) and the
    per-input-channel layers before it (`cycle_channels`). Other layers are not adapted."""
    per_channel = set(input_channel_layers)

    def adapt(layer: keras.layers.Layer, arrays: list) -> list | None:
        expected = [tuple(v.shape) for v in layer.weights]
        if len(expected) != len(arrays):
            return None
        if layer.name == first_conv:
            kernel, rest = arrays[0], arrays[1:]
            if kernel.ndim != 4 or [tuple(a.shape) for a in rest] != expected[1:]:
                return None
            if tuple(kernel.shape[:2]) + tuple(kernel.shape[3:]) != expected[0][:2] + expected[0][3:]:
                return None
            return [adapt_first_conv_kernel(kernel, expected[0][2])] + list(rest)
        if layer.name in per_channel:
            if not all(a.ndim == 1 and len(s) == 1 for a, s in zip(arrays, expected)):
                return None
            return [cycle_channels(a, s[0]) for a, s in zip(arrays, expected)]
        return None

    return adapt
