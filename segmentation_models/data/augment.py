"""Joint image + mask augmentation (albumentations) and the size policy shared by training and inference."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .io import IGNORE

__all__ = ["train_augmentation", "rescale", "pad_to_multiple", "STRIDE"]

STRIDE = 32  # inputs of every architecture are padded to a multiple of this


def train_augmentation(crop_size: tuple[int, int] | None = None, augment: bool = True) -> Callable:
    """The default training pipeline: horizontal flip, affine (shift, scale, rotate), a random crop (padded with
    ignored pixels where the image is smaller), then color jitter. ``augment=False`` keeps only the crop.

    Masks use nearest-neighbour interpolation; pixels shifted in from outside are ignored (``IGNORE``). The color
    jitter, a per-pixel operation, comes after the crop so that it only processes the pixels that are kept.
    """
    import os

    # albumentations looks for a newer version online at import (a warning offline) unless told not to
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    steps = []
    if augment:
        steps += [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                scale=(0.8, 1.25), translate_percent=(-0.1, 0.1), rotate=(-10, 10), fill=0, fill_mask=IGNORE, p=0.5
            ),
        ]
    if crop_size:
        h, w = crop_size
        steps.append(A.RandomCrop(h, w, pad_if_needed=True, pad_position="random", fill=0, fill_mask=IGNORE))
    if augment:
        steps.append(A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.02, p=0.5))
    return A.Compose(steps, seed=0)


def rescale(image: np.ndarray, mask: np.ndarray | None, scale: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize by ``scale`` (area interpolation for images, nearest for masks)."""
    if scale == 1.0:
        return image, mask
    import cv2

    h, w = image.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if mask is not None:
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    return image, mask


def pad_to_multiple(
    arrays: list[np.ndarray], fill: float, multiple: int = STRIDE, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Stack arrays of different (H, W) into one batch padded (bottom/right) to a common multiple of ``multiple``."""
    if shape is None:
        h = max(a.shape[0] for a in arrays)
        w = max(a.shape[1] for a in arrays)
        shape = (-(-h // multiple) * multiple, -(-w // multiple) * multiple)
    out = np.full((len(arrays),) + tuple(shape) + arrays[0].shape[2:], fill, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0], : a.shape[1]] = a
    return out
