"""The typed configuration of a training run, with the defaults of `segmentation-models train`.

A run folder's config.json holds the same configuration as a nested dict, ``{"data": ..., "model": ...,
"train": ...}`` (plus what the run found: classes, preprocessing, counts, versions); `TrainConfig.to_dict` and
`TrainConfig.from_dict` convert between the two, so run folders written before this module existed keep working.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..validation import check_choice, check_positive_int

__all__ = [
    "BN_BATCHES",
    "SCHEDULES",
    "OPTIMIZERS",
    "PRECISIONS",
    "MASK_MODES",
    "DISTRIBUTE_MODES",
    "DataConfig",
    "ModelConfig",
    "TrainingOptions",
    "TrainConfig",
]

BN_BATCHES = 10  # segmentation_models.batchnorm.DEFAULT_STEPS, without importing Keras to build the parser
SCHEDULES = ("constant", "cosine", "poly")
OPTIMIZERS = ("adam", "adamw", "sgd")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
MASK_MODES = ("index", "palette", "binary")
DISTRIBUTE_MODES = ("auto", "none", "data-parallel")  # distribute.DISTRIBUTE_MODES, without importing Keras


def _check_positive_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_count(name: str, value: Any, meaning: str) -> None:
    """None or an integer >= 0 (``meaning`` says what 0 does)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{name} must be None or an integer >= 0 ({meaning}), got {value!r}")


def _from_mapping(cls, values: Mapping | None, strict: bool):
    """``cls`` from the entries of ``values`` that are its fields; others are an error when ``strict``."""
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown and strict:
        raise ValueError(f"{cls.__name__}: unknown option(s) {unknown}; the options are {sorted(names)}")
    return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class DataConfig:
    """The data of a run (`segmentation-models train`'s data options; paths are made absolute).

    Args:
        data: a CamVid-layout folder, a folder with images/ and masks/, or a CSV of ``image,mask`` lines.
        images, masks: folders of images and masks paired by file name (instead of ``data``).
        val_data: validation data (same forms as ``data``); default CamVid's val/, else a split of ``data``.
        val_fraction: the validation share when splitting.
        classes: number of classes or class names (CamVid and palettes: automatic).
        mask_mode: "index" (class indices), "palette" (colors of ``palette``) or "binary" (0/255 values).
        palette: JSON class->color map for color masks.
        ignore_index: class index ignored in losses and metrics (CamVid: 11, automatic).
        mask_suffix: mask name = image stem + this (e.g. "_mask").
    """

    data: str | None = None
    images: str | None = None
    masks: str | None = None
    val_data: str | None = None
    val_fraction: float = 0.2
    classes: int | list[str] | None = None
    mask_mode: str = "index"
    palette: str | None = None
    ignore_index: int | None = None
    mask_suffix: str = ""

    def __post_init__(self) -> None:
        for name in ("data", "images", "masks", "val_data", "palette"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, str(Path(value).resolve()))
        if not self.data and not (self.images and self.masks):
            raise ValueError("give the data: data=FOLDER_OR_CSV, or images=FOLDER and masks=FOLDER")
        check_choice("mask_mode", self.mask_mode, MASK_MODES)
        if isinstance(self.classes, tuple):
            self.classes = list(self.classes)


@dataclass
class ModelConfig:
    """The model of a run: ``create_model(arch, backbone_name=backbone, encoder_weights=..., **options)``.

    Args:
        arch: architecture name (see `segmentation_models.available_architectures`).
        backbone: encoder backbone name.
        encoder_weights: "imagenet", a weights file, or None (from scratch).
        encoder_freeze: freeze the encoder (BatchNorm excepted).
        options: other builder arguments, e.g. ``{"decoder_filters": [64, 32, 16, 8, 8]}``.
    """

    arch: str = "unet"
    backbone: str = "resnet34"
    encoder_weights: str | None = "imagenet"
    encoder_freeze: bool = False
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if str(self.encoder_weights).lower() in ("none", "null", ""):
            self.encoder_weights = None
        for name in ("arch", "backbone"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a name (a non-empty string), got {getattr(self, name)!r}")
        if not isinstance(self.options, Mapping):
            raise ValueError(f"options must be a dict of builder arguments, got {self.options!r}")
        self.options = dict(self.options)


@dataclass
class TrainingOptions:
    """How a run trains (`segmentation-models train`'s training options, same names and defaults).

    Args:
        epochs, batch_size: at least 1.
        lr: the (peak) learning rate, positive.
        schedule: "constant", "cosine" or "poly", over all steps.
        warmup_epochs: linear warm-up (cosine schedule).
        optimizer: "adam", "adamw" or "sgd"; weight_decay: its weight decay (default: AdamW 1e-4, others none).
        loss: a loss name (the package's losses, or a Keras loss).
        metrics: metric names ("mean_iou" and "accuracy" are Keras', others the package's, then Keras').
        precision: "float32", "mixed_float16" or "mixed_bfloat16".
        crop: random training crop (height, width), multiples of 32; None: whole images padded to 32.
        scale: resize every image by this factor first.
        augment: flip/affine/color augmentation.
        bn_batches: re-estimate BatchNorm statistics from this many training batches before each validation and
            save (0: Keras' moving averages).
        steps_per_epoch, val_steps: cap the batches per epoch / of validation.
        workers, multiprocessing: data loading threads (or processes).
        cache_mb: keep decoded images in memory up to this size (0 disables; threads only).
        seed: seed of the model's initialisation, the data order and augmentation.
        deterministic: deterministic kernels (slower; exact resumes).
        overlays: validation images drawn at the end.
        distribute: "auto" (data-parallel over all local devices when there are several, or over the processes
            of a KERAS_DISTRIBUTION_* cluster (JAX); else one device), "none" or "data-parallel" (an error
            without several devices or processes). ``batch_size`` is the global batch and ``lr`` is used as
            given (not scaled with the replicas); see `segmentation_models.training.distribute`.
        sync_bn: batch-norm statistics over the global batch (TensorFlow: synchronized BatchNormalization,
            default off: each replica's own batch; JAX's data-parallel training always uses the global batch).
        distribute_timeout: seconds after which a process that stopped answering ends a multi-process run with
            an error instead of a hang.
    """

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    optimizer: str = "adam"
    weight_decay: float | None = None
    loss: str = "cce_dice_loss"
    metrics: list[str] = field(default_factory=lambda: ["mean_iou", "accuracy"])
    precision: str = "float32"
    crop: list[int] | None = None
    scale: float = 1.0
    augment: bool = True
    bn_batches: int = BN_BATCHES
    steps_per_epoch: int | None = None
    val_steps: int | None = None
    workers: int = 2
    multiprocessing: bool = False
    cache_mb: float = 1024
    seed: int = 0
    deterministic: bool = False
    overlays: int = 4
    distribute: str = "auto"
    sync_bn: bool = False
    distribute_timeout: float = 300.0

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        _check_positive_number("lr", self.lr)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("distribute", self.distribute, DISTRIBUTE_MODES)
        _check_positive_number("distribute_timeout", self.distribute_timeout)
        if not isinstance(self.sync_bn, bool):
            raise ValueError(f"sync_bn must be True or False, got {self.sync_bn!r}")
        if isinstance(self.bn_batches, bool) or not isinstance(self.bn_batches, int) or self.bn_batches < 0:
            raise ValueError(f"bn_batches must be an integer >= 0 (0: no re-estimation), got {self.bn_batches!r}")
        _check_count("steps_per_epoch", self.steps_per_epoch, "None or 0: every batch")
        _check_count("val_steps", self.val_steps, "None or 0: every batch")
        if isinstance(self.metrics, str):
            self.metrics = [m.strip() for m in self.metrics.split(",") if m.strip()]
        self.metrics = list(self.metrics)
        if self.crop is not None:
            crop = [self.crop, self.crop] if isinstance(self.crop, int) else list(self.crop)
            if len(crop) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in crop):
                raise ValueError(f"crop must be None, N or (height, width) of positive integers, got {self.crop!r}")
            self.crop = crop


@dataclass
class TrainConfig:
    """Everything `segmentation_models.training.train` needs to know about a run (what `segmentation-models
    train` records in the run folder's config.json)::

        config = TrainConfig(
            data=DataConfig(data="data/shapes"),
            model=ModelConfig(arch="unet", backbone="resnet18", encoder_weights=None),
            train=TrainingOptions(epochs=5, batch_size=8),
        )

    ``data``, ``model`` and ``train`` may also be given as dicts of their fields. ``skip_bad`` skips unreadable
    or inconsistent image/mask pairs with a warning.
    """

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainingOptions = field(default_factory=TrainingOptions)
    skip_bad: bool = False

    def __post_init__(self) -> None:
        for name, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainingOptions)):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                setattr(self, name, _from_mapping(cls, value, strict=True))
            elif not isinstance(value, cls):
                raise ValueError(f"{name} must be a {cls.__name__} or a dict of its fields, got {value!r}")

    def to_dict(self) -> dict:
        """The nested dict of a run folder's config.json: ``{"data": ..., "model": ..., "train": ...}`` (the
        ``skip_bad`` entry and what the run finds are added by `train`)."""
        return {
            "data": dataclasses.asdict(self.data),
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
        }

    @classmethod
    def from_dict(cls, config: Mapping, strict: bool = False) -> TrainConfig:
        """A configuration from the dict of `to_dict` or a run folder's config.json. Options missing (files
        written by earlier versions) take their defaults; unknown ones (e.g. the ``classes`` and ``counts`` a run
        recorded) are ignored, or an error when ``strict``."""
        extra = set(config) - {"data", "model", "train", "skip_bad", "classes", "preprocessing", "counts", "versions"}
        if extra and strict:
            raise ValueError(f"unknown section(s) {sorted(extra)}: a run config has data, model and train")
        return cls(
            data=_from_mapping(DataConfig, config.get("data"), strict),
            model=_from_mapping(ModelConfig, config.get("model"), strict),
            train=_from_mapping(TrainingOptions, config.get("train"), strict),
            skip_bad=bool(config.get("skip_bad", False)),
        )

    def default_output(self) -> Path:
        """The run folder when none is given: ``runs/<arch>-<backbone>``."""
        return default_run_folder(self.model.arch, self.model.backbone)


def default_run_folder(arch: str, backbone: str) -> Path:
    """``runs/<arch>-<backbone>``, the backbone as one folder name (a keras-hub ``hub:/path/to/preset`` becomes
    ``hub_path_to_preset``)."""
    return Path(f"runs/{arch}-{re.sub(r'[^0-9A-Za-z_.-]+', '_', backbone).strip('_')}")
