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
    "assign_weights_by_order",
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


def _layers_with_weights(model: keras.Model) -> dict[str, keras.layers.Layer]:
    found: dict[str, keras.layers.Layer] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(_layers_with_weights(layer))
        elif layer.weights:
            found[layer.name] = layer
    return found


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


# --- loading by topological order (branch bb101) -----------------------------------------------
# image-classifiers' SE-Nets/ResNeXts and keras-applications' Inceptions left many layers unnamed,
# so their published files (and the weights of models saved with segmentation_models 1.0.1) carry
# Keras' auto-generated names ('conv2d_17'), which depend on the session that wrote them. Keras 2
# loaded such files by position; `assign_weights` does the same when matching by name fails.
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


def _weighted_layers_in_order(model: keras.Model) -> list[keras.layers.Layer]:
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_weighted_layers_in_order(layer))
        elif layer.weights:
            found.append(layer)
    return found


def assign_weights_by_order(
    model: keras.Model,
    weights: Mapping[str, Sequence[np.ndarray]],
    *,
    source: str = "weights file",
    adapt: Adapter | None = None,
) -> list[str]:
    """Set the weights of ``model``'s weighted layers from ``weights`` taken in file order (Keras 2 semantics).

    A grouped ``Conv2D`` (``groups=g``) takes ``g`` consecutive per-group convolutions of the file
    (image-classifiers' ``GroupConv2D``), concatenated along the output channels. Every shape is
    checked (``adapt(layer, arrays)`` may fit arrays of other shapes, as in `assign_weights_by_name`: the input
    channels); raises `WeightsMismatchError` at the first layer that does not fit.
    """
    entries = [(name, [np.asarray(a) for a in arrays]) for name, arrays in weights.items()]
    targets = _weighted_layers_in_order(model)
    assignments, i = [], 0
    for layer in targets:
        expected = [tuple(v.shape) for v in layer.weights]
        if i >= len(entries):
            raise WeightsMismatchError(
                f"The {source} has weights for {len(entries)} layers; the model ({model.name}) needs more "
                f"(no weights left for layer {layer.name!r})."
            )
        name, arrays = entries[i]
        got = [tuple(a.shape) for a in arrays]
        groups = getattr(layer, "groups", 1)
        if got != expected and isinstance(layer, keras.layers.Conv2D) and groups > 1 and i + groups <= len(entries):
            parts = [entries[i + g][1] for g in range(groups)]
            arrays = [np.concatenate([p[k] for p in parts], axis=-1) for k in range(len(parts[0]))]
            got = [tuple(a.shape) for a in arrays]
            name = f"{name}..{entries[i + groups - 1][0]}"
            i += groups - 1
        if got != expected and adapt is not None:
            adapted = adapt(layer, arrays)
            if adapted is not None:
                arrays, got = adapted, [tuple(a.shape) for a in adapted]
        if got != expected:
            raise WeightsMismatchError(
                f"The {source} does not fit this model ({model.name}) by position either: its layer #{i} "
                f"{name!r} has shapes {got}, model layer {layer.name!r} expects {expected}."
            )
        assignments.append((layer, arrays))
        i += 1
    if i != len(entries):
        raise WeightsMismatchError(
            f"The {source} has weights for {len(entries) - i} more layer(s) than the model ({model.name}) has, "
            f"from {entries[i][0]!r} on."
        )
    for layer, arrays in assignments:
        layer.set_weights(arrays)
    return [layer.name for layer, _ in assignments]


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
            return assign_weights_by_order(model, weights, source=source, adapt=adapt)
        except WeightsMismatchError as by_order:
            raise WeightsMismatchError(
                f"{by_name}\nMatching by position (Keras 2 style) failed too: {by_order}"
            ) from None


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


# ---- keras.applications files: layers matched by position -----------------------------------
def _legacy_order_weights(layer: keras.layers.Layer) -> list:
    """A layer's weights in the order Keras writes them to a legacy HDF5 file (trainable first)."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _leaf_layers_with_weights(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    if isinstance(layer, keras.Model):
        leaves: list[keras.layers.Layer] = []
        for inner in layer.layers:
            leaves.extend(_leaf_layers_with_weights(inner))
        return leaves
    return [layer] if layer.weights else []


def align_weights_by_order(
    model: keras.Model,
    weights: Mapping[str, Sequence[np.ndarray]],
    *,
    source: str = "weights file",
) -> dict[str, list[np.ndarray]]:
    """Key the arrays of a keras.applications HDF5 file by ``model``'s layer names, by position.

    keras.applications loads its published files by position (``model.load_weights`` on a legacy
    ``.h5`` zips the model's weighted layers with the file's ``layer_names``); their stored names
    (Keras 2 names such as ``Conv/BatchNorm``, auto names such as ``conv2d_3``, nested ``Sequential``
    groups) need not match Keras 3's. This does the same: the file's arrays, in file order, are
    handed out to the model's weighted layers in model order. The result goes through
    `assign_weights_by_name`, which checks every shape (and adapts input channels).
    """
    stream = [np.asarray(a) for arrays in weights.values() for a in arrays]
    leaves: list[keras.layers.Layer] = []
    for layer in model.layers:
        leaves.extend(_leaf_layers_with_weights(layer))
    needed = sum(len(_legacy_order_weights(leaf)) for leaf in leaves)
    if len(stream) != needed:
        raise WeightsMismatchError(
            f"The {source} holds {len(stream)} arrays in {len(weights)} layers, but {model.name} needs "
            f"{needed} arrays in {len(leaves)} layers: it is a file for another backbone "
            "(or another variant of this family)."
        )
    out: dict[str, list[np.ndarray]] = {}
    position = 0
    for leaf in leaves:
        variables = _legacy_order_weights(leaf)
        chunk = stream[position : position + len(variables)]
        position += len(variables)
        # back to the layer's own weight order (what set_weights expects)
        by_id = {id(v): a for v, a in zip(variables, chunk)}
        out[leaf.name] = [by_id[id(v)] for v in leaf.weights]
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
