"""Reading images and masks, with errors that name the file and say how to fix the problem."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DataError", "IGNORE", "IMAGE_EXTENSIONS", "MaskFormat", "read_image", "read_mask", "list_images"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
IGNORE = 255  # value of ignored pixels in decoded masks (void, padding, unknown); classes are 0..254


class DataError(ValueError):
    """A data set problem (unreadable file, mismatched sizes, bad mask values, empty folder, ...)."""


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _open(path: Path, what: str):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(
            f"cannot read {what} {path}: {err} (corrupt or not an image; --skip-bad skips such files)"
        ) from None
    return img


def read_image(path: str | Path) -> np.ndarray:
    """An image as uint8 RGB (H, W, 3); grayscale and 16-bit images are converted.

    16-bit (and 32-bit integer) images are scaled by the 16-bit range (65535 -> 255), the same for every image:
    a raw value means the same brightness in each file. Float images are taken as 0..1 when all values are."""
    path = Path(path)
    img = _open(path, "image")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype="float64")
        if img.mode == "F":
            top = 1.0 if arr.size and 0.0 <= arr.min() and arr.max() <= 1.0 else 255.0
        else:
            if arr.size and arr.max() > 65535:
                raise DataError(f"image {path} has values above 65535 (32-bit): convert it to 8 or 16 bits per pixel")
            top = 65535.0
        arr = np.clip(np.rint(arr / top * 255.0), 0, 255).astype("uint8")
        return np.repeat(arr[..., None], 3, axis=-1)
    return np.asarray(img.convert("RGB"))


@dataclass
class MaskFormat:
    """How mask files encode classes.

    mode:
        ``index``: one class index per pixel (single channel or a 'P' palette PNG: the palette index is the class);
        ``palette``: RGB colors, one per class (``colors``); pixels of ``ignore_colors`` are ignored;
        ``binary``: 0/255 (or 0/1) masks, thresholded at ``threshold`` (JPEG-compressed masks work): 2 classes.
    ignore_index: the class index ignored in losses and metrics (``index`` mode), e.g. CamVid's void = 11.
    """

    mode: str = "index"
    num_classes: int | None = None
    ignore_index: int | None = None
    colors: Sequence[Sequence[int]] | None = None
    ignore_colors: Sequence[Sequence[int]] = field(default_factory=list)
    threshold: int = 128

    def __post_init__(self):
        if self.mode not in ("index", "palette", "binary"):
            raise ValueError(f"mask mode must be 'index', 'palette' or 'binary', got {self.mode!r}")
        if self.mode == "palette":
            if not self.colors:
                raise ValueError("mask mode 'palette' needs the class colors (e.g. --palette colors.json)")
            self.num_classes = len(self.colors)
        if self.mode == "binary":
            self.num_classes = 2
        if self.num_classes is not None and not 1 <= self.num_classes < IGNORE:
            raise ValueError(f"number of classes must be between 1 and {IGNORE - 1}, got {self.num_classes}")

    def decode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Class indices (H, W) uint8 with ``IGNORE`` for ignored pixels."""
        if self.mode == "binary":
            gray = raw if raw.ndim == 2 else raw[..., :3].mean(-1)
            hi = 1 if gray.max(initial=0) <= 1 else self.threshold
            return (gray >= hi).astype("uint8")
        if self.mode == "palette":
            return self._decode_palette(raw, path)
        if raw.ndim == 3:
            if raw.shape[-1] >= 3 and not (
                np.array_equal(raw[..., 0], raw[..., 1]) and np.array_equal(raw[..., 0], raw[..., 2])
            ):
                raise DataError(f"mask {path} is a color image; use --mask-mode palette with a class->color map")
            raw = raw[..., 0]
        values = raw.astype("int64")
        out = np.full(values.shape, IGNORE, dtype="uint8")
        keep = np.ones(values.shape, bool) if self.ignore_index is None else values != self.ignore_index
        bad = keep & ((values < 0) | (values >= (self.num_classes or IGNORE)))
        if bad.any():
            found = np.unique(values[bad])[:10].tolist()
            hint = " (0/255 masks: use --mask-mode binary)" if 255 in found else ""
            raise DataError(
                f"mask {path} has values {found} outside the classes 0..{(self.num_classes or IGNORE) - 1}"
                + (f" (ignore index {self.ignore_index})" if self.ignore_index is not None else "")
                + f"{hint}; set the number of classes or the ignore index"
            )
        out[keep] = values[keep]
        return out

    def _decode_palette(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.ndim == 2:
            raw = np.repeat(raw[..., None], 3, axis=-1)
        rgb = raw[..., :3].astype("int64")
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        out = np.full(code.shape, IGNORE, dtype="uint8")
        known = np.zeros(code.shape, bool)
        for cls, color in enumerate(self.colors):
            hit = code == ((int(color[0]) << 16) | (int(color[1]) << 8) | int(color[2]))
            out[hit] = cls
            known |= hit
        for color in self.ignore_colors:
            known |= code == ((int(color[0]) << 16) | (int(color[1]) << 8) | int(color[2]))
        if not known.all():
            unknown = np.unique(code[~known])[:5]
            cols = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in unknown.tolist()]
            raise DataError(
                f"mask {path} has colors {cols} that are in no class ({int((~known).sum())} pixels); add them to the "
                "palette (or to its 'ignore' colors). JPEG masks cannot carry exact colors: store masks as PNG."
            )
        return out


def read_mask(path: str | Path, fmt: MaskFormat) -> np.ndarray:
    """A mask decoded to class indices (H, W) uint8, ``IGNORE`` where ignored."""
    path = Path(path)
    img = _open(path, "mask")
    if fmt.mode == "palette":
        raw = np.asarray(img.convert("RGB"))
    elif img.mode == "P" and fmt.mode == "index":
        raw = np.asarray(img)  # palette PNG: the palette index is the class
    elif img.mode in ("RGB", "RGBA"):
        raw = np.asarray(img)
    else:
        raw = np.asarray(img) if img.mode in ("L", "I", "I;16", "1") else np.asarray(img.convert("L"))
    if raw.dtype == bool:
        raw = raw.astype("uint8")
    return fmt.decode(raw, path)
