"""Shared pieces of the train / evaluate / predict commands: run folders, atomic files, pictures, models."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

CONFIG_FILE = "config.json"
# Marker files: a folder holding one was made by this package, and only such a folder is ever removed or
# replaced by a command (never a folder of the user's, e.g. the data or a folder given as --output by mistake).
RUN_MARKER = ".segmentation-models-run"
EXPORT_MARKER = ".segmentation-models-export"
PREDICTIONS_MARKER = ".segmentation-models-predictions"
EVALUATION_MARKER = ".segmentation-models-evaluation"
DEMO_MARKER = ".segmentation-models-demo"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


# ----------------------------------------------------------------------------------------- atomic files
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def atomic_save_model(model, path: Path, links: Sequence[Path] = ()) -> None:
    """``model.save`` to a temporary ``.keras`` file beside ``path``, then ``os.replace`` (a crash never leaves a
    half-written model under the final name). ``links`` get the same file first (`atomic_link`: one write for
    several names)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        for link in links:
            atomic_link(tmp, link)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_link(source: Path, path: Path) -> None:
    """``path`` becomes the file ``source`` (a hard link, or a copy where links fail), replaced atomically. Files
    are only ever replaced whole, never changed in place, so names sharing one file stay independent."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_marker(folder: Path, marker: str, what: str) -> None:
    """Mark ``folder`` as made by the package (see `remove_marked_folder`)."""
    atomic_write_text(Path(folder) / marker, f"made by segmentation-models ({what}); it may replace this folder\n")


def is_marked(folder: Path, marker: str) -> bool:
    return (Path(folder) / marker).is_file()


def remove_marked_folder(folder: Path, marker: str, hint: str) -> None:
    """Remove ``folder`` if the package marked it with ``marker``; refuse (ValueError with ``hint``) otherwise."""
    import shutil

    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir() or not is_marked(folder, marker):
        raise ValueError(
            f"{folder} exists and was not made by segmentation-models (no {marker} file in it): it is "
            f"never removed or replaced; {hint}"
        )
    shutil.rmtree(folder)


def prepare_output_folder(out: Path, marker: str, targets: Sequence[Path], overwrite: bool, what: str) -> None:
    """Make (and mark) an output folder for ``targets``. Files there are replaced only in a folder the package
    marked (its own earlier outputs) or with ``overwrite``; otherwise the first existing ones are named."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder: choose another --output")
    existing = [t for t in targets if Path(t).exists()]
    if existing and not overwrite and not is_marked(out, marker):
        shown = ", ".join(str(t) for t in existing[:3]) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        )
        raise ValueError(
            f"{shown} already exist(s) in {out}, which segmentation-models did not make: nothing was "
            "written; choose another --output, or --overwrite to replace these files"
        )
    out.mkdir(parents=True, exist_ok=True)
    if not is_marked(out, marker):
        write_marker(out, marker, what)


def check_disjoint(out: Path, inputs: Sequence[str | Path | None], what: str) -> None:
    """Refuse an output folder that is or holds one of the ``inputs`` (e.g. the training data); one inside a data
    folder (data/runs/x) is fine: the data's own files are never touched there."""
    out = Path(out).resolve()
    for item in inputs:
        if not item:
            continue
        src = Path(item).resolve()
        if out == src or out in src.parents:
            raise ValueError(f"{what} {out} is or holds the input {src}: choose an --output that holds no input data")


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------------------- run folders
def load_run_config(path: str | Path) -> tuple[dict, Path]:
    """(config, model path) of a run folder or of a ``.keras`` file (whose folder holds config.json)."""
    path = Path(path)
    if path.is_dir():
        folder = path
        model = next((folder / n for n in ("best.keras", "last.keras") if (folder / n).is_file()), None)
        if model is None:
            raise ValueError(
                f"{folder} has no best.keras or last.keras: is it a run folder of `segmentation-models train`?"
            )
    elif path.is_file():
        folder, model = path.parent, path
    else:
        raise ValueError(f"{path} does not exist (give a run folder or a .keras file)")
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise ValueError(f"{cfg_path} is missing: the run's classes and preprocessing are recorded there")
    return json.loads(cfg_path.read_text()), model


def load_model(path: Path, compile: bool = False):
    """A ``.keras`` file, checked first: a truncated or damaged file is reported as such (not "File not found")."""
    import keras

    import segmentation_models  # noqa: F401  (registers the package's Keras objects)

    from ..utils import verify_keras_archive

    verify_keras_archive(path)
    try:
        return keras.saving.load_model(path, compile=compile)
    except (zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path} is corrupt or truncated: {err}; use an intact copy") from None


def load_run_model(model_file: Path, config: dict):
    """`load_model`, then check that the model fits its run: classes, input channels and preprocessing."""
    model = load_model(model_file)
    check_model_fits_run(model, config, model_file)
    return model


def check_model_fits_run(model, config: dict, model_file: Path) -> None:
    """ValueError naming ``model_file`` when it does not predict the run's classes from RGB images, or when the
    run's recorded preprocessing is not its backbone's."""
    from ..preprocessing import get_preprocessing

    names = config["classes"]["names"]
    source = f"the run's {CONFIG_FILE} ({Path(model_file).parent / CONFIG_FILE})"
    classes = model.outputs[0].shape[-1]
    if classes != len(names):
        raise ValueError(
            f"{model_file} predicts {classes} classes, but {source} declares {len(names)} ({names}): "
            "the model is not of this run; give the run folder it was trained in"
        )
    channels = model.input_shape[-1]
    if channels != 3:
        raise ValueError(
            f"{model_file} takes {channels}-channel images, but the commands read images as RGB "
            "(3 channels): use a model trained on 3-channel input"
        )
    recorded = config.get("preprocessing")
    mode = getattr(get_preprocessing(config["model"]["backbone"]), "mode", None)
    if recorded is not None and recorded != mode:
        raise ValueError(
            f"{source} records {recorded!r} preprocessing, but its backbone "
            f"{config['model']['backbone']!r} uses {mode!r}: the config was edited; restore it"
        )


# ----------------------------------------------------------------------------------------- inference
def predict_probabilities(
    model, images: list[np.ndarray], preprocessing: Callable | None, scale: float = 1.0, max_pixels: int | None = None
) -> list[np.ndarray]:
    """Class probabilities (H, W, C) at each image's own size: rescale, pad to a multiple of 32, predict, crop,
    resize back (bilinear). A batch above ``max_pixels`` (default: what fits in memory, see
    `segmentation_models.inference`) goes image by image, and an image above it by overlapping tiles."""
    import cv2

    from ..data import rescale
    from ..inference import max_whole_pixels, predict_tiled

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


# ----------------------------------------------------------------------------------------- pictures
def colorize(mask: np.ndarray, colors: Sequence[Sequence[int]]) -> np.ndarray:
    """RGB picture of a class-index mask (ignored pixels black)."""
    table = np.zeros((256, 3), "uint8")
    table[: len(colors)] = np.asarray(colors, "uint8")
    return table[mask]


def overlay(image: np.ndarray, mask: np.ndarray, colors: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    from ..data import IGNORE

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


# ----------------------------------------------------------------------------------------- metrics
def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts, rows truth; ignored truth pixels (255) are left out."""
    keep = truth < num_classes
    idx = truth[keep].astype("int64") * num_classes + pred[keep].astype("int64")
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores_from_confusion(matrix: np.ndarray, class_names: Sequence[str]) -> dict:
    """Per-class IoU/F1/precision/recall over the whole data set, mean IoU (over classes present in the truth or
    the prediction), pixel accuracy."""
    tp = np.diag(matrix).astype("float64")
    fp = matrix.sum(0) - tp
    fn = matrix.sum(1) - tp
    union = tp + fp + fn
    present = union > 0
    iou = np.where(present, tp / np.maximum(union, 1), np.nan)
    f1 = np.where(present, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
    recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), np.nan)
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
    lines = [f"{'class':16s} {'IoU':>7s} {'F1':>7s} {'prec':>7s} {'recall':>7s} {'pixels':>11s}"]
    fmt = lambda v: f"{v:7.4f}" if v is not None else f"{'-':>7s}"  # noqa: E731
    for name, s in scores["per_class"].items():
        lines.append(
            f"{name:16s} {fmt(s['iou'])} {fmt(s['f1'])} {fmt(s['precision'])} {fmt(s['recall'])} {s['pixels']:11d}"
        )
    lines.append(f"{'mean':16s} {fmt(scores['mean_iou'])} {fmt(scores['mean_f1'])}")
    lines.append(f"pixel accuracy {fmt(scores['pixel_accuracy'])}")
    return "\n".join(lines)
