"""Inference on images of any size: whole-image prediction when it fits in memory, overlapping tiles otherwise.

A forward pass keeps every feature map of the image at once: about ``BYTES_PER_PIXEL`` bytes per input pixel
(measured: Unet-resnet34 on a 3000x2000 photo peaked at 14 GB). Images above `max_whole_pixels` are predicted
by overlapping tiles whose class probabilities are blended (uniform or Gaussian weights): `predict_sliding`
(`segmentation_models.inference.windows`). `predict_large_image` (`segmentation_models.inference.rasters`)
streams an image file through the windows to a mask file, in memory bounded by the windows, not the image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .rasters import predict_large_image
from .tta import DihedralTransform, MergePredictions, ScaleResize, predict_images_tta, predict_tta, tta_model
from .windows import blend_weights, predict_sliding, predict_tiled, tile_starts

if TYPE_CHECKING:
    import keras

__all__ = [
    "BYTES_PER_PIXEL",
    "MEMORY_BUDGET",
    "max_whole_pixels",
    "check_inference_options",
    "tile_starts",
    "blend_weights",
    "predict_tiled",
    "predict_sliding",
    "predict_large_image",
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


def check_inference_options(
    tile: int | tuple[int, int] | None, overlap: float, blend: str, tta: str | Sequence[str] | None
) -> bool:
    """Validate the options `predict_probabilities` takes (ValueError naming the bad one); whether ``tta``
    augments (anything but None, ``"none"`` or the identity alone)."""
    from .tta import resolve_transforms
    from .windows import check_tile, check_window_options

    if tile is not None:
        check_tile(tile)
    check_window_options(overlap, blend, 1, "reflect")
    return tta is not None and resolve_transforms(tta) != ("identity",)


def predict_probabilities(
    model: keras.Model,
    images: list[np.ndarray],
    preprocessing: Callable | None,
    scale: float = 1.0,
    max_pixels: int | None = None,
    tile: int | tuple[int, int] | None = None,
    overlap: float = 0.25,
    blend: str = "gaussian",
    tta: str | Sequence[str] | None = None,
) -> list[np.ndarray]:
    """Class probabilities (H, W, C) at each image's own size: rescale, pad to a multiple of 32, predict, crop,
    resize back (bilinear). A batch above ``max_pixels`` (default: what fits in memory, see
    `segmentation_models.inference`) goes image by image, and an image above it by overlapping tiles. With a
    ``tile``, every image is predicted by `predict_sliding` windows of that size (``overlap``, ``blend``).
    ``tta``: test-time augmentation transforms (``"hflip"``, ``"flips"``, ``"d4"`` or a list, see
    `predict_images_tta`), each applied to the image before it is padded; None or ``"none"``: plain prediction."""
    import cv2

    from ..data import rescale

    if tta is not None and tta != "none":
        windows = dict(tile=tile, overlap=overlap, blend=blend)
        return predict_images_tta(model, images, preprocessing, scale, tta, max_pixels=max_pixels, **windows)
    limit = max_whole_pixels() if max_pixels is None else max_pixels
    scaled = [rescale(im, None, scale)[0] for im in images]
    padded = [(-(-s.shape[0] // 32) * 32) * (-(-s.shape[1] // 32) * 32) for s in scaled]
    if tile is not None:
        probs = [predict_sliding(model, s, tile, overlap, blend, 4, preprocessing=preprocessing) for s in scaled]
    elif len(scaled) * max(padded) <= limit:
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
