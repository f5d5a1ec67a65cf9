"""Pictures of segmentations: class colors, overlays, mask PNGs, training curves, prediction grids, confusion
matrices. Every file is written atomically (`segmentation_models.runs.atomic_write_bytes`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .runs import atomic_write_bytes


def colorize(mask: np.ndarray, colors: Sequence[Sequence[int]]) -> np.ndarray:
    """RGB picture of a class-index mask (ignored pixels black)."""
    table = np.zeros((256, 3), "uint8")
    table[: len(colors)] = np.asarray(colors, "uint8")
    return table[mask]


def overlay(image: np.ndarray, mask: np.ndarray, colors: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    from .data import IGNORE

    color = colorize(mask, colors).astype("float32")
    out = image.astype("float32")
    keep = (mask != IGNORE)[..., None]
    out = np.where(keep, (1 - alpha) * out + alpha * color, out)
    return np.clip(out, 0, 255).astype("uint8")


def save_mask_png(path: Path, mask: np.ndarray, colors: Sequence[Sequence[int]]) -> None:
    """Class-index PNG ('P' mode: the pixel values are the class indices, the palette shows the colors)."""
    from PIL import Image

    img = Image.fromarray(mask.astype("uint8"), mode="P")
    palette = np.zeros((256, 3), "uint8")
    palette[: len(colors)] = np.asarray(colors, "uint8")
    img.putpalette(palette.flatten().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def save_rgb_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_history(history: list[dict], path: Path) -> None:
    """Training curves: loss and each metric, train and validation, per epoch."""
    plt = _pyplot()
    names = [k for k in history[0] if k not in ("epoch", "lr", "seconds") and not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    epochs = [r["epoch"] for r in history]
    for ax, name in zip(axes[0], names):
        ax.plot(epochs, [r.get(name) for r in history], "o-", label="train")
        if any(f"val_{name}" in r for r in history):
            ax.plot(epochs, [r.get(f"val_{name}") for r in history], "o-", label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_predictions(images, truths, preds, colors, path: Path, names: Sequence[str] = ()) -> None:
    """A grid: image | truth | prediction | overlay, one row per image."""
    plt = _pyplot()
    rows = len(images)
    fig, axes = plt.subplots(rows, 4, figsize=(12, 3 * rows), squeeze=False)
    for r in range(rows):
        panels = [
            images[r],
            colorize(truths[r], colors),
            colorize(preds[r], colors),
            overlay(images[r], preds[r], colors),
        ]
        for c, (ax, panel, title) in enumerate(zip(axes[r], panels, ("image", "truth", "prediction", "overlay"))):
            ax.imshow(panel, interpolation="nearest")
            ax.set_title(title if c or not names else f"{names[r]}", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    """Row-normalised confusion matrix (rows: truth, columns: prediction)."""
    plt = _pyplot()
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{norm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("confusion matrix (row-normalised)")
    fig.tight_layout()
    save_figure(fig, path)
