"""Segmentation data sets: pairs of image and mask files, with class names and a mask format."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .io import IGNORE, DataError, MaskFormat, list_images, read_image, read_mask

__all__ = [
    "SegmentationDataset",
    "from_folders",
    "from_camvid",
    "from_pairs",
    "load_palette",
    "CAMVID_CLASSES",
    "CAMVID_COLORS",
    "default_colors",
]

log = logging.getLogger("segmentation_models")

CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "signsymbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
# The colors of the SegNet tutorial's CamVid palette (same order as the classes).
CAMVID_COLORS = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
)


def default_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colors (background black, then a fixed qualitative palette)."""
    base = [
        (0, 0, 0),
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
        (0, 128, 128),
        (220, 190, 255),
        (170, 110, 40),
        (255, 250, 200),
        (128, 0, 0),
        (170, 255, 195),
        (128, 128, 0),
        (255, 215, 180),
        (0, 0, 128),
    ]
    rng = np.random.default_rng(1)
    while len(base) < n:
        base.append(tuple(int(v) for v in rng.integers(0, 256, 3)))
    return base[:n]


@dataclass
class SegmentationDataset:
    """Pairs of (image path, mask path) plus what the masks mean.

    ``load(i)`` returns ``(image uint8 (H, W, 3), mask uint8 (H, W))`` with class indices and ``IGNORE`` (255)
    for ignored pixels. ``check()`` reads every pair once and reports (or skips) bad ones.
    """

    pairs: list[tuple[Path, Path]]
    class_names: list[str]
    mask_format: MaskFormat
    colors: list[tuple[int, int, int]] = field(default_factory=list)
    name: str = "data"

    def __post_init__(self):
        self.pairs = [(Path(a), Path(b)) for a, b in self.pairs]
        if not self.pairs:
            raise DataError(f"data set {self.name!r} is empty: no image/mask pairs")
        if self.mask_format.num_classes is None:
            self.mask_format.num_classes = len(self.class_names)
        if len(self.class_names) != self.mask_format.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.mask_format.num_classes} classes")
        if not self.colors:
            self.colors = (
                list(CAMVID_COLORS)
                if list(self.class_names) == list(CAMVID_CLASSES)
                else default_colors(self.num_classes)
            )
        self.colors = [tuple(int(v) for v in c) for c in self.colors]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[i]
        image = read_image(image_path)
        mask = read_mask(mask_path, self.mask_format)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its mask {mask_path} is "
                f"{mask.shape[1]}x{mask.shape[0]} (W x H); they must have the same size"
            )
        return image, mask

    def image_sizes(self) -> list[tuple[int, int]]:
        """(height, width) of every image, from the file headers (no decoding)."""
        from PIL import Image

        sizes = []
        for image_path, _ in self.pairs:
            with Image.open(image_path) as img:
                sizes.append((img.height, img.width))
        return sizes

    def subset(self, indices: Sequence[int], name: str | None = None) -> SegmentationDataset:
        return replace(self, pairs=[self.pairs[i] for i in indices], name=name or self.name)

    def split(self, val_fraction: float = 0.2, seed: int = 0) -> tuple[SegmentationDataset, SegmentationDataset]:
        """A seeded random (train, val) split."""
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if len(self) < 2:
            raise DataError(f"data set {self.name!r} has {len(self)} pair(s): too few to split into train and val")
        order = np.random.default_rng(seed).permutation(len(self))
        n_val = min(max(1, int(round(val_fraction * len(self)))), len(self) - 1)
        return (
            self.subset(sorted(order[n_val:]), f"{self.name}-train"),
            self.subset(sorted(order[:n_val]), f"{self.name}-val"),
        )

    def check(self, skip_bad: bool = False, verbose: bool = True) -> SegmentationDataset:
        """Read every pair; raise a DataError for the first bad one, or skip bad ones with a warning."""
        import keras

        bar = keras.utils.Progbar(len(self), unit_name="pair") if verbose else None
        if verbose:
            print(f"checking {len(self)} image/mask pairs of {self.name!r}")
        good, bad = [], []
        for i in range(len(self)):
            try:
                self.load(i)
                good.append(i)
            except DataError as err:
                if not skip_bad:
                    raise
                bad.append(str(err))
            if bar:
                bar.update(i + 1)
        for message in bad:
            log.warning("skipped: %s", message)
            print(f"warning: skipped: {message}")
        if not good:
            raise DataError(f"data set {self.name!r}: every pair is bad")
        return self.subset(good) if bad else self

    def class_pixel_counts(self) -> np.ndarray:
        counts = np.zeros(self.num_classes, "int64")
        for i in range(len(self)):
            m = self.load(i)[1]
            counts += np.bincount(m[m != IGNORE], minlength=self.num_classes)[: self.num_classes]
        return counts


def _by_stem(paths: Sequence[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in paths:
        if p.stem in out:
            raise DataError(f"two files share the name {p.stem!r}: {out[p.stem]} and {p}; rename one")
        out[p.stem] = p
    return out


def _pair_folders(images: Path, masks: Path, mask_suffix: str, skip_bad: bool) -> list[tuple[Path, Path]]:
    image_files = list_images(images)
    if not image_files:
        raise DataError(f"no images in {images} (looked for {', '.join(sorted({'.png', '.jpg', '.tif', '.bmp'}))})")
    mask_files = _by_stem([m.with_name(m.name) for m in list_images(masks)])
    if not mask_files:
        raise DataError(f"no masks in {masks}")
    pairs, missing = [], []
    for img in image_files:
        mask = mask_files.get(img.stem + mask_suffix)
        if mask is None:
            missing.append(img)
        else:
            pairs.append((img, mask))
    if missing:
        message = (
            f"{len(missing)} image(s) in {images} have no mask in {masks} (e.g. {missing[0].name}; masks are "
            f"paired by file name{' + ' + repr(mask_suffix) if mask_suffix else ''})"
        )
        if not skip_bad:
            raise DataError(message + "; --skip-bad skips them")
        print(f"warning: {message}; skipped")
    if not pairs:
        raise DataError(f"no image in {images} has a mask in {masks}")
    return pairs


def load_palette(path: str | Path) -> tuple[list[str], list[tuple[int, int, int]], list]:
    """A class->color map from JSON: ``{"classes": {"road": [128, 64, 128], ...}, "ignore": [[0, 0, 0]]}``
    or a list ``[{"name": ..., "color": [r, g, b]}, ...]``."""
    data = json.loads(Path(path).read_text())
    ignore = []
    if isinstance(data, dict):
        ignore = data.get("ignore", [])
        data = data.get("classes", data)
        if isinstance(data, dict):
            data = [{"name": k, "color": v} for k, v in data.items()]
    try:
        names = [str(d["name"]) for d in data]
        colors = [tuple(int(v) for v in d["color"]) for d in data]
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"palette {path}: expected {{'classes': {{name: [r, g, b]}}}} or a list of "
            f"{{'name', 'color'}} entries ({err})"
        ) from None
    return names, colors, ignore


def _class_names(classes, mask_format: MaskFormat) -> list[str]:
    if mask_format.mode == "binary":
        return list(classes) if classes and not isinstance(classes, int) else ["background", "foreground"]
    if isinstance(classes, int):
        return [f"class_{i}" for i in range(classes)]
    if classes:
        return [str(c) for c in classes]
    if mask_format.num_classes:
        return [f"class_{i}" for i in range(mask_format.num_classes)]
    raise ValueError("give the classes (a number or names, e.g. --classes 3 or --classes sky,road,car)")


def from_folders(
    images: str | Path,
    masks: str | Path,
    classes: int | Sequence[str] | None = None,
    mask_mode: str = "index",
    ignore_index: int | None = None,
    palette: str | Path | None = None,
    mask_suffix: str = "",
    skip_bad: bool = False,
    name: str | None = None,
) -> SegmentationDataset:
    """A data set from a folder of images and a folder of masks paired by file stem (``mask_suffix`` is
    appended to the image stem, e.g. '_mask')."""
    pairs = _pair_folders(Path(images), Path(masks), mask_suffix, skip_bad)
    return _dataset(pairs, classes, mask_mode, ignore_index, palette, name or Path(images).name)


def _dataset(
    pairs: list,
    classes: int | Sequence[str] | None,
    mask_mode: str,
    ignore_index: int | None,
    palette: str | Path | None,
    name: str,
) -> SegmentationDataset:
    """The data set of ``pairs`` with its mask format and class names (a palette file gives both)."""
    colors, ignore_colors = None, []
    if palette:
        palette_names, colors, ignore_colors = load_palette(palette)
        classes = classes or palette_names
        mask_mode = "palette"
    names_given = classes if not isinstance(classes, int) else None
    fmt = MaskFormat(
        mode=mask_mode,
        ignore_index=ignore_index,
        colors=colors,
        ignore_colors=ignore_colors,
        num_classes=(classes if isinstance(classes, int) else len(names_given) if names_given else None),
    )
    return SegmentationDataset(pairs, _class_names(classes, fmt), fmt, colors=list(colors or []), name=name)


def from_camvid(root: str | Path, split: str = "train", skip_bad: bool = False) -> SegmentationDataset:
    """CamVid as in the SegNet tutorial: ``<split>/`` + ``<split>annot/``; 11 classes, void (11) ignored."""
    root = Path(root)
    if not (root / split).is_dir() or not (root / f"{split}annot").is_dir():
        raise DataError(f"{root} does not have the CamVid layout: expected {split}/ and {split}annot/ folders")
    fmt = MaskFormat(mode="index", num_classes=len(CAMVID_CLASSES), ignore_index=11)
    pairs = _pair_folders(root / split, root / f"{split}annot", "", skip_bad)
    return SegmentationDataset(pairs, list(CAMVID_CLASSES), fmt, colors=list(CAMVID_COLORS), name=f"camvid-{split}")


def is_camvid(root: str | Path) -> bool:
    root = Path(root)
    return all((root / s).is_dir() for s in ("train", "trainannot"))


def from_pairs(
    listing: str | Path,
    classes: int | Sequence[str] | None = None,
    mask_mode: str = "index",
    ignore_index: int | None = None,
    palette: str | Path | None = None,
    name: str | None = None,
) -> SegmentationDataset:
    """A data set from a CSV/text file of ``image,mask`` lines (header optional; paths relative to the file)."""
    listing = Path(listing)
    if not listing.is_file():
        raise DataError(f"pair list {listing} does not exist")
    pairs = []
    with listing.open(newline="") as f:
        for row in csv.reader(f, skipinitialspace=True):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise DataError(f"{listing}: line {row!r} is not 'image,mask'")
            if not pairs and row[0].strip().lower() in ("image", "images", "image_path"):
                continue
            pairs.append(tuple((listing.parent / c.strip()) for c in row[:2]))
    if not pairs:
        raise DataError(f"pair list {listing} is empty")
    return _dataset(pairs, classes, mask_mode, ignore_index, palette, name or listing.stem)
