"""The data sets a run configuration names: its ``data`` section (`segmentation_models.training.DataConfig`, or
that section of a run folder's config.json) opened as training and validation sets."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .datasets import SegmentationDataset, from_camvid, from_folders, from_pairs, is_camvid
from .io import DataError


def open_source(
    path: str | Path | None,
    cfg: Mapping,
    split: str,
    skip_bad: bool,
    images: str | Path | None = None,
    masks: str | Path | None = None,
) -> SegmentationDataset:
    """A data set from a CamVid folder (``split``), an images/ + masks/ folder, a CSV, or two folders."""
    kw = dict(
        classes=cfg.get("classes"),
        mask_mode=cfg.get("mask_mode", "index"),
        ignore_index=cfg.get("ignore_index"),
        palette=cfg.get("palette"),
    )
    if images and masks:
        return from_folders(images, masks, mask_suffix=cfg.get("mask_suffix", ""), skip_bad=skip_bad, **kw)
    p = Path(path)
    if p.is_file():
        return from_pairs(p, **kw)
    if is_camvid(p):
        return from_camvid(p, split, skip_bad=skip_bad)
    if (p / "images").is_dir() and (p / "masks").is_dir():
        return from_folders(
            p / "images", p / "masks", mask_suffix=cfg.get("mask_suffix", ""), skip_bad=skip_bad, name=p.name, **kw
        )
    if not p.exists():
        raise DataError(f"data {p} does not exist")
    raise DataError(
        f"{p}: expected a CamVid layout (train/, trainannot/, ...), images/ + masks/ folders, "
        "or a CSV file of image,mask pairs"
    )


def open_train_val(cfg: Mapping, seed: int, skip_bad: bool) -> tuple[SegmentationDataset, SegmentationDataset]:
    """(train, val) data sets of a run config."""
    full = open_source(cfg["data"], cfg, "train", skip_bad, cfg.get("images"), cfg.get("masks"))
    if cfg.get("val_data"):
        return full, open_source(cfg["val_data"], cfg, "val", skip_bad)
    if cfg.get("data") and is_camvid(cfg["data"]):
        return full, from_camvid(cfg["data"], "val", skip_bad=skip_bad)
    return full.split(cfg.get("val_fraction", 0.2), seed=seed)
