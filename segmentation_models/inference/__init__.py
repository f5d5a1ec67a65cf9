"""Inference on images of any size: whole-image prediction when it fits in memory, overlapping tiles otherwise.

A forward pass keeps every feature map of the image at once: about ``BYTES_PER_PIXEL`` bytes per input pixel
(measured: Unet-resnet34 on a 3000x2000 photo peaked at 14 GB). Images above `max_whole_pixels` are predicted
by `predict_tiled`: overlapping tiles whose class probabilities are blended (uniform or Gaussian weights).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .tta import DihedralTransform, MergePredictions, ScaleResize, predict_images_tta, predict_tta, tta_model

if TYPE_CHECKING:
    import keras

__all__ = [
    "BYTES_PER_PIXEL",
    "MEMORY_BUDGET",
    "max_whole_pixels",
    "tile_starts",
    "blend_weights",
    "predict_tiled",
    "predict_probabilities",
    "predict_tta",
    "predict_images_tta",
    "tta_model",
    "DihedralTransform",
    "ScaleResize",
    "MergePredictions",
]

BYTES_PER_PIXEL = 2400  # peak forward-pass memory per input pixel (Unet-resnet34, float32; heavier models more)
MEMORY_BUDGET = 4 * 2**30  # at most this much for one forward pass, and at most half the available memory
STRIDE = 32


def max_whole_pixels(budget: int | None = None) -> int:
    """Input pixels (batch x height x width) that one forward pass may take within the memory budget."""
    budget = MEMORY_BUDGET if budget is None else budget
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        budget = min(budget, available // 2)
    except (ValueError, OSError, AttributeError):  # not a POSIX system: the fixed budget
        pass
    return max(STRIDE * STRIDE, int(budget // BYTES_PER_PIXEL))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``0..length`` with at least ``overlap`` in common;
    the last tile ends at ``length`` (``length <= tile``: one tile at 0)."""
    if tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap})")
    if length <= tile:
        return [0]
    n = -(-(length - overlap) // (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def blend_weights(height: int, width: int, mode: str = "gaussian") -> np.ndarray:
    """(height, width) weights of one tile: ones (``uniform``), or a Gaussian of sigma 1/8 of the tile size
    centred on it (``gaussian``: tile borders, where context is missing, count less), never below 1e-3."""
    if mode == "uniform":
        return np.ones((height, width), "float32")
    if mode != "gaussian":
        raise ValueError(f"blend must be 'uniform' or 'gaussian', got {mode!r}")
    axes = [np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2) / (n / 8)) ** 2) for n in (height, width)]
    return np.maximum(np.outer(*axes), 1e-3).astype("float32")


def predict_tiled(
    model: keras.Model,
    image: np.ndarray,
    tile: int = 512,
    overlap: int = 64,
    blend: str = "gaussian",
    preprocessing: Callable | None = None,
    batch_size: int = 1,
) -> np.ndarray:
    """Class probabilities (H, W, classes) of one image (H, W, C; 0..255 values) predicted by overlapping tiles.

    Tiles of ``tile`` x ``tile`` pixels (a multiple of 32; images smaller than a tile are padded with 0, as
    whole-image inference pads them) overlap by at least ``overlap`` pixels; each tile's probabilities are
    weighted by `blend_weights` and the weighted sums divided by the summed weights. ``preprocessing`` is
    applied to each batch of tiles.
    """
    import keras

    if tile % STRIDE or tile < STRIDE:
        raise ValueError(f"tile must be a positive multiple of {STRIDE}, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in 0..{tile - 1}, got {overlap}")
    h, w = image.shape[:2]
    th, tw = min(tile, -(-h // STRIDE) * STRIDE), min(tile, -(-w // STRIDE) * STRIDE)
    padded = np.zeros((max(h, th), max(w, tw)) + image.shape[2:], image.dtype)
    padded[:h, :w] = image
    boxes = [
        (y, x)
        for y in tile_starts(padded.shape[0], th, min(overlap, th - 1))
        for x in tile_starts(padded.shape[1], tw, min(overlap, tw - 1))
    ]
    weights = blend_weights(th, tw, blend)[..., None]
    total = None
    norm = np.zeros(padded.shape[:2] + (1,), "float32")
    for k in range(0, len(boxes), batch_size):
        part = boxes[k : k + batch_size]
        x = np.stack([padded[y : y + th, x0 : x0 + tw] for y, x0 in part]).astype("float32")
        if preprocessing is not None:
            x = np.asarray(preprocessing(x), dtype="float32")
        probs = keras.ops.convert_to_numpy(model(x, training=False)).astype("float32")
        if total is None:
            total = np.zeros(padded.shape[:2] + probs.shape[-1:], "float32")
        for (y, x0), p in zip(part, probs):
            total[y : y + th, x0 : x0 + tw] += p * weights
            norm[y : y + th, x0 : x0 + tw] += weights
    return (total / norm)[:h, :w]


def predict_probabilities(
    model: keras.Model,
    images: list[np.ndarray],
    preprocessing: Callable | None,
    scale: float = 1.0,
    max_pixels: int | None = None,
) -> list[np.ndarray]:
    """Class probabilities (H, W, C) at each image's own size: rescale, pad to a multiple of 32, predict, crop,
    resize back (bilinear). A batch above ``max_pixels`` (default: what fits in memory, see
    `segmentation_models.inference`) goes image by image, and an image above it by overlapping tiles."""
    import cv2

    from ..data import rescale

    limit = max_whole_pixels() if max_pixels is None else max_pixels
    scaled = [rescale(im, None, scale)[0] for im in images]
    padded = [(-(-s.shape[0] // 32) * 32) * (-(-s.shape[1] // 32) * 32) for s in scaled]
    if len(scaled) * max(padded) <= limit:
        probs = _forward(model, scaled, preprocessing)
    else:
        probs = []
        for s, pixels in zip(scaled, padded):
            if pixels <= limit:
                probs += _forward(model, [s], preprocessing)
                continue
            tile = max(64, min(1024, int(limit**0.5) // 32 * 32))
            print(
                f"note: a {s.shape[1]}x{s.shape[0]} image needs more memory than one forward pass may take "
                f"(about {limit / 1e6:.1f} megapixels): predicting it by overlapping {tile}x{tile} tiles"
            )
            probs.append(predict_tiled(model, s, tile, tile // 8, preprocessing=preprocessing))
    out = []
    for im, p in zip(images, probs):
        if p.shape[:2] != im.shape[:2]:
            p = cv2.resize(p, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR)
            if p.ndim == 2:
                p = p[..., None]
        out.append(p)
    return out


def _forward(model, images: list[np.ndarray], preprocessing: Callable | None) -> list[np.ndarray]:
    """One padded batch through the model; probabilities cropped back to each image's size."""
    import keras

    from ..data import pad_to_multiple

    x = pad_to_multiple(images, 0).astype("float32")
    if preprocessing is not None:
        x = np.asarray(preprocessing(x), dtype="float32")
    probs = keras.ops.convert_to_numpy(model(x, training=False)).astype("float32")
    return [p[: im.shape[0], : im.shape[1]] for im, p in zip(images, probs)]
