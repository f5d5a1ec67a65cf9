"""Test-time augmentation (TTA): predict on flipped, rotated and rescaled copies of each image, undo each
transform on the prediction, and merge the predictions.

The transforms are the 8 symmetries of the square (the dihedral group D4) acting on the image plane, each with its
exact inverse; presets ``"hflip"`` (2 copies), ``"flips"`` (4) and ``"d4"`` (8). Optional ``scales`` resize the
input (bilinear, to a multiple of 32) before the transforms and the probabilities back to the input size.

`predict_tta` runs on NumPy batches; `tta_model` wraps a model into a ``keras.Model`` of registered layers that
saves, reloads (no ``custom_objects``) and exports like any model. Both compute the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from ..blocks import ResizeToMatch, resize_images

__all__ = [
    "TRANSFORMS",
    "PRESETS",
    "MERGES",
    "resolve_transforms",
    "dihedral",
    "DihedralTransform",
    "ScaleResize",
    "MergePredictions",
    "tta_model",
    "predict_tta",
    "predict_images_tta",
]

# Each transform as (transpose, flip rows, flip columns), applied in that order to (B, H, W, C) batches.
# Rotations are counter-clockwise, as numpy.rot90 on the (H, W) axes.
TRANSFORMS: dict[str, tuple[bool, bool, bool]] = {
    "identity": (False, False, False),
    "hflip": (False, False, True),
    "vflip": (False, True, False),
    "rot180": (False, True, True),
    "rot90": (True, True, False),
    "rot270": (True, False, True),
    "transpose": (True, False, False),
    "transverse": (True, True, True),
}
PRESETS: dict[str, tuple[str, ...]] = {
    "none": ("identity",),
    "hflip": ("identity", "hflip"),
    "flips": ("identity", "hflip", "vflip", "rot180"),
    "d4": tuple(TRANSFORMS),
}
MERGES = ("mean", "gmean", "max")
SIZE_MULTIPLE = 32  # rescaled copies keep the encoders' stride: no padding inside the model
_EPS = 1e-7  # floor of the probabilities under the geometric mean's logarithm


def resolve_transforms(transforms: str | Sequence[str]) -> tuple[str, ...]:
    """Transform names of a preset name or a sequence of names (ValueError for unknown or repeated ones)."""
    if isinstance(transforms, str):
        if transforms in PRESETS:
            return PRESETS[transforms]
        if transforms not in TRANSFORMS:
            raise ValueError(
                f"unknown transforms {transforms!r}: a preset {sorted(PRESETS)} or a transform {list(TRANSFORMS)}"
            )
        return (transforms,)
    names = tuple(transforms)
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown or not names:
        raise ValueError(f"unknown transforms {unknown or names!r}: choose among {list(TRANSFORMS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"transforms repeat: {names}")
    return names


def _check_scales(scales: float | Sequence[float]) -> tuple[float, ...]:
    scales = (scales,) if isinstance(scales, (int, float)) else tuple(scales)
    if not scales:
        raise ValueError("scales must not be empty: (1.0,) predicts at the input size")
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not np.isfinite(s) or not 0.1 <= s <= 10:
            raise ValueError(f"scales must be numbers in 0.1..10, got {s!r}")
    if len(set(scales)) != len(scales):
        raise ValueError(f"scales repeat: {scales}")
    return tuple(float(s) for s in scales)


def _check_merge(merge: str) -> str:
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
    return merge


def swaps_axes(name: str) -> bool:
    """Whether the transform exchanges height and width (rot90, rot270, transpose, transverse)."""
    return TRANSFORMS[name][0]


def dihedral(x: Any, name: str, inverse: bool = False) -> Any:
    """Transform ``name`` (or its inverse) of a channels-last batch (B, H, W, C), with keras.ops."""
    transpose, flip_rows, flip_cols = TRANSFORMS[name]
    if inverse:
        # the inverse undoes the flips first, then the transpose; a flip of rows after a transpose is a flip
        # of columns before it, so the inverse is again "transpose, then flips" with the two flips exchanged
        if transpose:
            flip_rows, flip_cols = flip_cols, flip_rows
    if transpose:
        x = ops.transpose(x, (0, 2, 1, 3))
    if flip_rows:
        x = ops.flip(x, axis=1)
    if flip_cols:
        x = ops.flip(x, axis=2)
    return x


@keras.saving.register_keras_serializable(package="segmentation_models")
class DihedralTransform(keras.layers.Layer):
    """Apply each of ``transforms`` (names of `TRANSFORMS`) to a batch and concatenate the copies along the batch
    axis; with ``inverse=True`` split a batch of ``len(transforms)`` such copies and undo each transform.

    All transforms of one layer must agree on swapping height and width (the copies share one shape).
    """

    def __init__(self, transforms: str | Sequence[str], inverse: bool = False, **kwargs):
        super().__init__(autocast=False, **kwargs)
        # a string names one transform here, never a preset ("hflip" the transform, not identity + hflip)
        self.transforms = resolve_transforms([transforms] if isinstance(transforms, str) else transforms)
        self.inverse = bool(inverse)
        if len({swaps_axes(n) for n in self.transforms}) > 1:
            raise ValueError(f"transforms {self.transforms} mix ones that swap height and width with ones that don't")

    def call(self, x):
        n = len(self.transforms)
        if self.inverse:
            parts = ops.split(x, n, axis=0) if n > 1 else [x]
            parts = [dihedral(p, t, inverse=True) for p, t in zip(parts, self.transforms)]
        else:
            parts = [dihedral(x, t) for t in self.transforms]
        return parts[0] if n == 1 else ops.concatenate(parts, axis=0)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        n = len(self.transforms)
        if b is not None:
            b = b // n if self.inverse else b * n
        return (b, w, h, c) if swaps_axes(self.transforms[0]) else (b, h, w, c)

    def get_config(self):
        return {**super().get_config(), "transforms": list(self.transforms), "inverse": self.inverse}


def scaled_size(size: Any, scale: float, multiple: int = SIZE_MULTIPLE) -> Any:
    """``size * scale`` rounded to a multiple of ``multiple`` (at least one multiple); ints or tensors."""
    if isinstance(size, int):
        return max(multiple, int(round(size * scale / multiple)) * multiple)
    steps = ops.round(ops.cast(size, "float32") * (scale / multiple))
    return ops.cast(ops.maximum(steps, 1.0), "int32") * multiple


@keras.saving.register_keras_serializable(package="segmentation_models")
class ScaleResize(keras.layers.Layer):
    """Resize a batch (bilinear) by ``scale`` to the nearest multiple of ``multiple`` pixels in height and width."""

    def __init__(self, scale: float, multiple: int = SIZE_MULTIPLE, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.scale = float(_check_scales((scale,))[0])
        self.multiple = int(multiple)

    def call(self, x):
        shape = ops.shape(x)
        size = (scaled_size(shape[1], self.scale, self.multiple), scaled_size(shape[2], self.scale, self.multiple))
        return resize_images(x, size, "bilinear")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        h = None if h is None else scaled_size(h, self.scale, self.multiple)
        w = None if w is None else scaled_size(w, self.scale, self.multiple)
        return (b, h, w, c)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "multiple": self.multiple}


def merge_stacked(stacked: Any, merge: str) -> Any:
    """Merge (N, B, H, W, C) predictions over N: mean, geometric mean (of probabilities) or maximum."""
    if merge == "mean":
        return ops.mean(stacked, axis=0)
    if merge == "max":
        return ops.max(stacked, axis=0)
    return ops.exp(ops.mean(ops.log(ops.maximum(stacked, _EPS)), axis=0))


@keras.saving.register_keras_serializable(package="segmentation_models")
class MergePredictions(keras.layers.Layer):
    """Merge a list of prediction batches, each holding ``copies`` copies of a batch (stacked along the batch
    axis as `DihedralTransform` makes them), into one batch: ``mean``, ``gmean`` or ``max`` over all copies."""

    def __init__(self, copies: Sequence[int], merge: str = "mean", **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.copies = [int(c) for c in copies]
        self.merge = _check_merge(merge)

    def call(self, inputs):
        inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        parts = []
        for y, n in zip(inputs, self.copies):
            parts += ops.split(y, n, axis=0) if n > 1 else [y]
        if len(parts) == 1:
            return parts[0]
        return merge_stacked(ops.stack(parts, axis=0), self.merge)

    def compute_output_shape(self, input_shape):
        first = input_shape[0] if isinstance(input_shape, list) else input_shape
        b = first[0] if first[0] is None else first[0] // self.copies[0]
        return (b,) + tuple(first[1:])

    def get_config(self):
        return {**super().get_config(), "copies": self.copies, "merge": self.merge}


def _groups(names: tuple[str, ...], batch: bool) -> list[tuple[str, ...]]:
    """Transforms run through the model together: those that keep the shape, those that swap it (batch=True),
    or one at a time."""
    if not batch:
        return [(n,) for n in names]
    keep = tuple(n for n in names if not swaps_axes(n))
    swap = tuple(n for n in names if swaps_axes(n))
    return [g for g in (keep, swap) if g]


def _check_model(model: keras.Model, names: tuple[str, ...], scales: tuple[float, ...]) -> tuple:
    """The model's (H, W, C) input shape; ValueError when it cannot take the transformed or rescaled copies."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"test-time augmentation needs a model of one image input and one mask output; {model.name} has "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs"
        )
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3:
        raise ValueError(
            f"test-time augmentation needs (batch, height, width, channels) images, not {model.input_shape}"
        )
    h, w = shape[:2]
    swapping = [n for n in names if swaps_axes(n)]
    if swapping and h != w:
        raise ValueError(
            f"transforms {swapping} exchange height and width, but {model.name} takes a fixed "
            f"{h}x{w} input (height x width): use transforms='flips' (or 'hflip'), or a model built with "
            "input_shape=(None, None, channels)"
        )
    if any(s != 1.0 for s in scales) and (h is not None or w is not None):
        raise ValueError(
            f"scales {scales} resize the input, but {model.name} takes a fixed {h}x{w} input: use scales=(1.0,), "
            "or a model built with input_shape=(None, None, channels)"
        )
    return shape


def tta_model(
    model: keras.Model,
    transforms: str | Sequence[str] = "hflip",
    scales: float | Sequence[float] = (1.0,),
    merge: str = "mean",
    batch_transforms: bool = True,
    name: str | None = None,
) -> keras.Model:
    """A ``keras.Model`` that predicts ``model``'s merged test-time-augmented probabilities.

    Each scale (`ScaleResize`, skipped for 1.0) and each transform (`DihedralTransform`) makes a copy of the
    input; the same ``model`` (shared weights) predicts every copy, the transforms are undone and the predictions
    resized back to the input size, then merged (`MergePredictions`: ``mean``, ``gmean`` or ``max``).
    ``batch_transforms``: the copies of one shape go through ``model`` as one batch (fewer, larger calls; peak
    memory grows with the copies); otherwise one call per copy. The wrapper saves to ``.keras`` and reloads with
    ``import segmentation_models`` only.
    """
    names = resolve_transforms(transforms)
    scales = _check_scales(scales)
    merge = _check_merge(merge)
    shape = _check_model(model, names, scales)
    image = keras.Input(shape, name="image", dtype=model.inputs[0].dtype)
    outputs, copies = [], []
    for s in scales:
        tag = f"{s:g}".replace(".", "_").replace("-", "m")
        x = image if s == 1.0 else ScaleResize(s, name=f"tta_scale_{tag}")(image)
        for group in _groups(names, batch_transforms):
            label = f"s{tag}_{'_'.join(group)}"
            y = model(DihedralTransform(group, name=f"tta_{label}")(x))
            y = DihedralTransform(group, inverse=True, name=f"tta_undo_{label}")(y)
            if s != 1.0:
                y = ResizeToMatch("bilinear", name=f"tta_resize_{label}")([y, image])
            outputs.append(y)
            copies.append(len(group))
    out = MergePredictions(copies, merge, name="tta_merge")(outputs)
    wrapper = keras.Model(image, out, name=name or f"{model.name}_tta")
    from .. import accel
    from ..accel import _context

    if model in _context.MODELS:  # the package's model: its wrapper takes the same fast paths
        accel.adopt(wrapper)
    return wrapper


def predict_tta(
    model: keras.Model,
    images: np.ndarray,
    transforms: str | Sequence[str] = "hflip",
    scales: float | Sequence[float] = (1.0,),
    merge: str = "mean",
    batch_size: int = 4,
) -> np.ndarray:
    """Merged test-time-augmented predictions (N, H, W, classes) of a NumPy batch ``images`` (N, H, W, C), already
    preprocessed as ``model`` expects: ``batch_size`` images at a time, one ``model`` call per transform and scale.
    """
    names = resolve_transforms(transforms)
    scales = _check_scales(scales)
    merge = _check_merge(merge)
    _check_model(model, names, scales)
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be a (batch, height, width, channels) array, got shape {images.shape}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    out = []
    for start in range(0, len(images), int(batch_size)):
        x = images[start : start + int(batch_size)]
        size = x.shape[1:3]
        preds = []
        for s in scales:
            xs = x if s == 1.0 else _numpy(resize_images(x, tuple(scaled_size(int(v), s) for v in size), "bilinear"))
            for t in names:
                y = _dihedral_numpy(_predict(model, _dihedral_numpy(xs, t)), t, inverse=True)
                preds.append(y if s == 1.0 else _numpy(resize_images(y, tuple(int(v) for v in size), "bilinear")))
        out.append(preds[0] if len(preds) == 1 else _numpy(merge_stacked(np.stack(preds), merge)))
    return np.concatenate(out, axis=0)


def predict_images_tta(
    model: keras.Model,
    images: Sequence[np.ndarray],
    preprocessing: Callable | None = None,
    scale: float = 1.0,
    transforms: str | Sequence[str] = "hflip",
    scales: float | Sequence[float] = (1.0,),
    merge: str = "mean",
    max_pixels: int | None = None,
    tile: int | tuple[int, int] | None = None,
    overlap: float = 0.25,
    blend: str = "gaussian",
) -> list[np.ndarray]:
    """Test-time-augmented `predict_probabilities`: class probabilities (H, W, classes) at each image's own size for
    images (H, W, C; 0..255) of any sizes, ``preprocessing`` applied to each batch, at ``scale`` times each of
    ``scales``; ``max_pixels``, ``tile``, ``overlap``, ``blend`` as `predict_probabilities` (each copy whole or by
    sliding windows).

    Each image is transformed before `predict_probabilities` pads the batch (bottom/right, with zeros, as the
    training loader pads), so the padding stays where the model saw it in training; a model wrapped by
    `tta_model` and handed padded batches sees its padding flipped to the top/left instead (CamVid, hflip:
    +0.005 val mIoU this way, -0.0002 that way; docs/tta.md).
    """
    from . import predict_probabilities

    names = resolve_transforms(transforms)
    scales = _check_scales(scales)
    merge = _check_merge(merge)
    _check_model(model, names, scales)
    total: list[np.ndarray | None] = [None] * len(images)
    for s in scales:
        for t in names:
            copies = [_dihedral_numpy(np.asarray(im)[None], t)[0] for im in images]
            probs = predict_probabilities(
                model, copies, preprocessing, scale * s, max_pixels, tile=tile, overlap=overlap, blend=blend
            )
            for k, p in enumerate(probs):
                p = _dihedral_numpy(p[None], t, inverse=True)[0]  # predict_probabilities: each copy's own size
                p = np.log(np.maximum(p, _EPS)) if merge == "gmean" else p
                if total[k] is None:
                    total[k] = p
                else:
                    total[k] = np.maximum(total[k], p) if merge == "max" else total[k] + p
    n = len(names) * len(scales)
    if merge == "max":
        return total
    return [np.exp(t / n) if merge == "gmean" else t / n for t in total]


def _dihedral_numpy(x: np.ndarray, name: str, inverse: bool = False) -> np.ndarray:
    """`dihedral` on a NumPy batch (a copy: the model gets contiguous memory)."""
    transpose, flip_rows, flip_cols = TRANSFORMS[name]
    if inverse and transpose:
        flip_rows, flip_cols = flip_cols, flip_rows
    if transpose:
        x = np.transpose(x, (0, 2, 1, 3))
    if flip_rows:
        x = x[:, ::-1]
    if flip_cols:
        x = x[:, :, ::-1]
    return np.ascontiguousarray(x)


def _numpy(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), dtype="float32")


def _predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """One batch through ``model``: JAX compiles the whole model (its eager mode compiles op by op), TensorFlow
    and torch call it eagerly (tracing a graph costs more than a call)."""
    if keras.backend.backend() == "jax":
        return _numpy(model.predict_on_batch(x))
    return _numpy(model(x, training=False))
