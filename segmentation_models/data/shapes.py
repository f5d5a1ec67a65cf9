"""A generated data set of discs and squares on noisy backgrounds: the demo's data, and the tests'."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE_CLASSES = ["background", "disc", "square"]


def generated_shapes(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images of noisy backgrounds with discs (class 1) and squares (class 2); masks of class indices."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(110, 25, (n, size, size, 3))
    masks = np.zeros((n, size, size), "int64")
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            cls = int(rng.integers(1, 3))
            r = rng.integers(size // 10, size // 4)
            cy, cx = rng.integers(r, size - r, 2)
            region = (
                ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) if cls == 1 else ((abs(yy - cy) <= r) & (abs(xx - cx) <= r))
            )
            masks[i][region] = cls
            images[i][region] = rng.normal([200, 60, 60] if cls == 1 else [60, 80, 200], 25)
    return np.clip(images, 0, 255).astype("float32"), masks


def write_shapes_dataset(folder: str | Path, n: int, size: int, seed: int = 0) -> Path:
    """Write `generated_shapes` as ``folder/images/*.png`` and ``folder/masks/*.png`` (class indices)."""
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    images, masks = generated_shapes(n, size, seed)
    for i, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image.astype("uint8")).save(folder / "images" / f"shape_{i:04d}.png")
        Image.fromarray(mask.astype("uint8")).save(folder / "masks" / f"shape_{i:04d}.png")
    return folder
