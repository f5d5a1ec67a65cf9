"""Evaluation of a trained model over a whole data set: per-class IoU/F1/precision/recall, mean IoU, pixel
accuracy and the confusion matrix (what `segmentation-models evaluate` writes).

Scores are computed once per data set from its confusion matrix (not averaged over images or batches), with the
formulas of `segmentation_models.metrics.score_from_stats` (`segmentation_models.metrics.functional.score_from_counts`).
Ignored pixels (void, e.g. CamVid's class 11) are left out of every count.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import runs

if TYPE_CHECKING:
    from .data import SegmentationDataset

__all__ = ["OUTPUTS", "confusion_matrix", "scores_from_confusion", "format_table", "open_eval_set", "evaluate"]

OUTPUTS = ("results.json", "per_class.csv", "confusion_matrix.png")


# ----------------------------------------------------------------------------------------- scores
def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts, rows truth; ignored truth pixels (255) are left out."""
    keep = truth < num_classes
    idx = truth[keep].astype("int64") * num_classes + pred[keep].astype("int64")
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores_from_confusion(matrix: np.ndarray, class_names: Sequence[str]) -> dict:
    """Per-class IoU/F1/precision/recall over the whole data set, mean IoU (over classes present in the truth or
    the prediction), pixel accuracy. A class absent from truth and prediction has no score (None)."""
    from .metrics.functional import score_from_counts

    tp = np.diag(matrix).astype("float64")
    fp = matrix.sum(0) - tp
    fn = matrix.sum(1) - tp
    present = tp + fp + fn > 0
    iou, f1, precision, recall = (
        score_from_counts(tp, fp, fn, metric=metric) for metric in ("iou", "fscore", "precision", "recall")
    )
    per_class = {
        name: {
            "iou": _f(iou[i]),
            "f1": _f(f1[i]),
            "precision": _f(precision[i]),
            "recall": _f(recall[i]),
            "pixels": int(matrix[i].sum()),
        }
        for i, name in enumerate(class_names)
    }
    total = matrix.sum()
    return {
        "mean_iou": _f(np.nanmean(iou)) if present.any() else None,
        "mean_f1": _f(np.nanmean(f1)) if present.any() else None,
        "pixel_accuracy": _f(tp.sum() / total) if total else None,
        "per_class": per_class,
        "pixels": int(total),
    }


def _f(v) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 6)


def format_table(scores: dict) -> str:
    """The scores of `scores_from_confusion` as a text table (one row per class, then the means)."""
    lines = [f"{'class':16s} {'IoU':>7s} {'F1':>7s} {'prec':>7s} {'recall':>7s} {'pixels':>11s}"]
    fmt = lambda v: f"{v:7.4f}" if v is not None else f"{'-':>7s}"  # noqa: E731
    for name, s in scores["per_class"].items():
        lines.append(
            f"{name:16s} {fmt(s['iou'])} {fmt(s['f1'])} {fmt(s['precision'])} {fmt(s['recall'])} {s['pixels']:11d}"
        )
    lines.append(f"{'mean':16s} {fmt(scores['mean_iou'])} {fmt(scores['mean_f1'])}")
    lines.append(f"pixel accuracy {fmt(scores['pixel_accuracy'])}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- evaluate
def open_eval_set(
    config: Mapping,
    data: str | Path | None,
    images: str | Path | None,
    masks: str | Path | None,
    split: str | None,
    skip_bad: bool,
) -> SegmentationDataset:
    """The data set to evaluate a run on: ``data`` (or ``images`` + ``masks``), else the run's own data (CamVid's
    ``split``, default test; otherwise the run's val split, or ``split="train"``)."""
    from . import data as sm_data
    from .data.sources import open_source, open_train_val

    dcfg = dict(config["data"])
    names = config["classes"]["names"]
    if dcfg.get("classes") is None and dcfg.get("mask_mode") != "binary":
        dcfg["classes"] = names
    if data or (images and masks):
        ds = open_source(data, dcfg, split or "test", skip_bad, images, masks)
    elif dcfg.get("data") and sm_data.is_camvid(dcfg["data"]) and (split or "test") != "val":
        ds = sm_data.from_camvid(dcfg["data"], split or "test", skip_bad=skip_bad)
    else:
        if split not in (None, "val", "train"):
            raise ValueError(f"--split {split!r}: this run's data has only its train and val split; give --data")
        train_set, val_set = open_train_val(dcfg, config["train"]["seed"], skip_bad)
        ds = train_set if split == "train" else val_set
    if ds.class_names != names:
        raise sm_data.DataError(f"the data's classes {ds.class_names} differ from the model's {names}")
    return ds


def evaluate(
    model_path: str | Path,
    data: str | Path | None = None,
    images: str | Path | None = None,
    masks: str | Path | None = None,
    split: str | None = None,
    output: str | Path | None = None,
    batch_size: int = 4,
    limit: int | None = None,
    workers: int = 2,
    skip_bad: bool = False,
    verbose: bool = True,
    overwrite: bool = False,
    tile: int | tuple[int, int] | None = None,
    overlap: float = 0.25,
    blend: str = "gaussian",
    tta: str | Sequence[str] | None = None,
) -> dict:
    """Evaluate a run folder (its best.keras) or a .keras file with the run's config.json beside it on a data set
    (see `open_eval_set`); writes results.json, per_class.csv and confusion_matrix.png to ``output`` (default
    ``<run>/eval-<split>``), prints the table of scores, and returns the results dict.

    tile: None predicts each image whole; a size (a multiple of 32) predicts by sliding windows of that size
    sharing ``overlap`` (a fraction of the tile), blended with ``blend`` weights (``gaussian`` or ``uniform``).
    tta: test-time augmentation (``"hflip"``, ``"flips"``, ``"d4"`` or a list of transforms; None: none)."""
    import keras

    from .inference import check_inference_options, predict_probabilities
    from .plots import plot_confusion
    from .preprocessing import get_preprocessing

    check_inference_options(tile, overlap, blend, tta)

    config, model_file = runs.load_run_config(model_path)
    ds = open_eval_set(config, data, images, masks, split, skip_bad)
    if limit:
        ds = ds.subset(range(min(limit, len(ds))))
    name = split or ("test" if "camvid" in ds.name and ds.name.endswith("test") else ds.name)
    out = Path(output) if output else model_file.parent / f"eval-{name}"
    model = runs.load_run_model(model_file, config)
    runs.prepare_output_folder(out, runs.EVALUATION_MARKER, [out / n for n in OUTPUTS], overwrite, "evaluate")
    preprocessing = get_preprocessing(config["model"]["backbone"])
    scale = config["train"].get("scale", 1.0)
    n_classes = ds.num_classes
    matrix = np.zeros((n_classes, n_classes), "int64")
    batches = [list(range(i, min(i + batch_size, len(ds)))) for i in range(0, len(ds), batch_size)]
    if verbose:
        print(f"evaluating {model_file} on {len(ds)} images of {ds.name!r}")
    bar = keras.utils.Progbar(len(ds), unit_name="image") if verbose else None
    started = time.time()
    bad: list[str] = []
    windows = dict(tile=tile, overlap=overlap, blend=blend)

    def load(i):
        try:
            return ds.load(i)
        except Exception as err:
            if not skip_bad:
                raise
            bad.append(str(err))
            return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures = [pool.map(load, b) for b in batches[:2]]
        done = 0
        for k in range(len(batches)):
            pairs = [p for p in futures[k] if p is not None]
            if k + 2 < len(batches):
                futures.append(pool.map(load, batches[k + 2]))
            if pairs:
                images = [p[0] for p in pairs]
                probs = predict_probabilities(model, images, preprocessing, scale, tta=tta, **windows)
                for (_image, truth), prob in zip(pairs, probs):
                    matrix += confusion_matrix(truth, prob.argmax(-1), n_classes)
            done += len(batches[k])
            if bar:
                bar.update(done)
    for message in bad:
        print(f"warning: skipped: {message}")
    scores = scores_from_confusion(matrix, ds.class_names)
    results = {
        "model": str(model_file),
        "data": ds.name,
        "images": len(ds) - len(bad),
        "skipped": bad,
        "ignore_index": ds.mask_format.ignore_index,
        "seconds": round(time.time() - started, 1),
        "inference": {**windows, "tta": tta},
        **scores,
        "class_names": ds.class_names,
        "confusion_matrix": matrix.tolist(),
    }
    runs.write_json(out / "results.json", results)
    runs.write_csv(out / "per_class.csv", [{"class": k, **v} for k, v in scores["per_class"].items()])
    plot_confusion(matrix, ds.class_names, out / "confusion_matrix.png")
    print(format_table(scores))
    print(f"results: {out / 'results.json'}\nconfusion matrix: {out / 'confusion_matrix.png'}")
    return results
