"""`train`: a training run into a run folder, what `segmentation-models train` does.

The run folder holds config.json (the resolved configuration), history.csv/json (metrics per epoch),
training_curves.png, val_predictions.png (+ overlays in val_predictions/), summary.json, best.keras, last.keras and
checkpoints/ (one per completed epoch, written atomically). ``resume=True`` continues a run from its last
completed epoch with the same optimizer state and data order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import runs
from ..runs import _CKPT, CHECKPOINTS, latest_checkpoint, prepare_run_folder
from .config import DataConfig, TrainConfig, TrainingOptions
from .distribute import (
    Distribution,
    lost_process_errors,
    portable_batchnorm,
    set_synchronized_batchnorm,
    setup_distribution,
)
from .model import build_model, compile_for_training

if TYPE_CHECKING:
    import keras

    from ..data import SegmentationDataset, SegmentationLoader

__all__ = ["train", "set_determinism", "init_input_normalization", "input_statistics", "check_crop", "finish_run"]


def check_crop(crop: list[int] | None, scale: float, dataset: SegmentationDataset) -> None:
    """A training crop larger than every image would pad each sample to the crop (memory without data)."""
    if not crop:
        return
    sizes = dataset.image_sizes()
    high = max(round(h * scale) for h, _ in sizes)
    wide = max(round(w * scale) for _, w in sizes)
    if crop[0] > high or crop[1] > wide:
        raise ValueError(
            f"--crop {crop[0]}x{crop[1]} is larger than every training image (the largest are "
            f"{high} pixels high and {wide} wide{f' after --scale {scale}' if scale != 1 else ''}): "
            f"choose a crop of at most {high // 32 * 32}x{wide // 32 * 32}, or no --crop"
        )


def init_input_normalization(model: keras.Model, loader: SegmentationLoader, batches: int = 4) -> None:
    """From-scratch models: set the moving statistics of a BatchNormalization applied directly to the input
    (ResNet's ``bn_data``) to the training data's per-channel mean and variance. Its defaults (0 and 1) would make
    inference on 0..255 inputs wrong until the moving averages catch up, hundreds of steps later."""
    import keras

    layers = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization) and any(layer.input is t for t in model.inputs)
    ]
    if not layers:
        return
    mean, var = input_statistics(loader, batches)
    for layer in layers:
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(var.astype(layer.moving_variance.dtype))


def input_statistics(loader: SegmentationLoader, batches: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance of the (preprocessed) images of the loader's first ``batches`` batches (whole
    global batches: every process of a data-parallel run gets the same statistics)."""
    xs = np.concatenate(
        [
            loader.collate([loader.load_sample(j) for j in loader.batch_indices(i)])[0]
            for i in range(min(batches, len(loader)))
        ]
    )
    return xs.mean(axis=(0, 1, 2)), xs.var(axis=(0, 1, 2))


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and the backend; with ``deterministic``, deterministic kernels too (TensorFlow's op
    determinism, PyTorch's deterministic algorithms)."""
    import keras

    from ..utils import set_random_seed

    set_random_seed(seed)
    if not deterministic:
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)


def _make_callbacks(
    out: Path,
    loader: SegmentationLoader,
    monitor: str,
    history: list[dict],
    verbose: int,
    bn_batches: int = 0,
    writes: bool = True,
    unscoped: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> list[keras.callbacks.Callback]:
    """The run's callbacks; ``writes=False`` (the other processes of a data-parallel run): the history is kept
    in memory and nothing is written (the chief writes the run folder); ``unscoped``: the context the chief saves
    models in (`Distribution.chief_only`)."""
    import keras

    from ..batchnorm import BatchNormRecalibration
    from ..plots import plot_history

    class EpochSync(keras.callbacks.Callback):
        """Keeps the loader's epoch (its seeded order and augmentation) equal to the training epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            loader.epoch = epoch

    class RunRecorder(keras.callbacks.Callback):
        """After each epoch: history (CSV/JSON), curves, best.keras, then the epoch checkpoint and last.keras,
        each written atomically; the checkpoint, written last, is what `--resume` trusts."""

        def __init__(self):
            super().__init__()
            values = [r[monitor] for r in history if r.get(monitor) is not None]
            self.mode = "min" if monitor.endswith("loss") else "max"
            self.best = (min(values) if self.mode == "min" else max(values)) if values else None
            self.started = time.time()

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch + 1}
            try:
                row["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            except Exception:  # pragma: no cover - exotic optimizers
                pass
            row.update({k: float(v) for k, v in (logs or {}).items()})
            row["seconds"] = round(time.time() - self.started, 2)
            del history[epoch:]
            history.append(row)
            if not writes:
                return
            runs.write_json(out / "history.json", history)
            runs.write_csv(out / "history.csv", history)
            try:
                plot_history(history, out / "training_curves.png")
            except Exception as err:  # a picture must never stop training
                print(f"warning: training curves not drawn: {err}", file=sys.stderr)
            value = row.get(monitor)
            improved = value is not None and (
                self.best is None or (value < self.best if self.mode == "min" else value > self.best)
            )
            folder = out / CHECKPOINTS
            folder.mkdir(exist_ok=True)
            ckpt = folder / f"epoch_{epoch + 1:04d}.keras"
            # one write: best.keras is the same file (a hard link), in place before the checkpoint commits
            with portable_batchnorm(self.model), unscoped():
                runs.atomic_save_model(self.model, ckpt, links=[out / "best.keras"] if improved else [])
            if improved:
                self.best = value
                if verbose:
                    print(f"\n{monitor} improved to {value:.4f}: saved best.keras")
            for old in folder.iterdir():
                match = _CKPT.match(old.name)
                if match and int(match.group(1)) < epoch:  # the previous one stays: --resume falls back to it
                    old.unlink(missing_ok=True)
            runs.atomic_link(ckpt, out / "last.keras")

    # BatchNorm statistics first: validation and every model file written after it see the re-estimated ones
    recalibration = [BatchNormRecalibration(loader.inference_batches(bn_batches), bn_batches)] if bn_batches else []
    return [*recalibration, EpochSync(), RunRecorder(), keras.callbacks.TerminateOnNaN()]


# ----------------------------------------------------------------------------------------- train
def train(
    config: TrainConfig | Mapping | None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    skip_bad: bool = False,
    verbose: int = 1,
) -> dict:
    """Train as ``segmentation-models train`` does: the run ``config`` into the run folder ``out``.

    Args:
        config: a `TrainConfig`, or its dict (`TrainConfig.to_dict`, a run folder's config.json); None with
            ``resume``: the run folder's own config.json.
        out: the run folder (default ``runs/<arch>-<backbone>``).
        resume: continue the run in ``out`` from its last completed epoch (same optimizer state, data order).
        overwrite: replace an existing run folder of the package (a folder it did not make never is).
        skip_bad: skip unreadable or inconsistent image/mask pairs with a warning (or ``config.skip_bad``).
        verbose: 1 for Keras' progress bars, 0 for none (the summary is printed either way).

    Returns:
        The summary also written to ``out/summary.json``: epochs, best epoch and score, the last epoch's
        metrics, the paths of the best and last models, curves and pictures.
    """
    import keras

    from .. import data
    from .._version import __version__
    from ..data.sources import open_train_val
    from ..preprocessing import get_preprocessing

    if config is None:
        if not resume or out is None:
            raise ValueError("config=None reads a run folder's config.json: give out=RUN_FOLDER and resume=True")
        config_file = Path(out) / runs.CONFIG_FILE
        if not config_file.is_file():
            raise ValueError(f"{config_file} does not exist (nothing to resume there)")
        config = json.loads(config_file.read_text())
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    options = cfg.train
    out = Path(out) if out is not None else cfg.default_output()
    # first: a multi-worker engine is configured before any other TensorFlow / JAX computation
    dist = setup_distribution(options.distribute, options.sync_bn, options.distribute_timeout)
    dist.check_batch(options.batch_size)
    set_determinism(options.seed, options.deterministic)
    keras.config.set_dtype_policy(options.precision)
    try:
        skip_bad = skip_bad or cfg.skip_bad
        train_set, val_set = open_train_val(dataclasses.asdict(cfg.data), options.seed, skip_bad)
        train_set = train_set.check(skip_bad=skip_bad, verbose=bool(verbose))
        val_set = val_set.check(skip_bad=skip_bad, verbose=bool(verbose))
        if val_set.class_names != train_set.class_names:
            raise data.DataError(
                f"validation classes {val_set.class_names} differ from training classes {train_set.class_names}"
            )
        check_crop(options.crop, options.scale, train_set)
        preprocessing = get_preprocessing(cfg.model.backbone)
        loader_kw = dict(
            preprocessing=preprocessing,
            scale=options.scale,
            workers=options.workers,
            use_multiprocessing=options.multiprocessing,
            cache_mb=options.cache_mb,
            seed=options.seed,
        )
        train_loader = data.SegmentationLoader(
            train_set,
            options.batch_size,
            training=True,
            crop_size=options.crop,
            augment=options.augment,
            max_batches=options.steps_per_epoch,
            shard=dist.shard,
            **loader_kw,
        )
        # each process evaluates its part of every validation batch; the engine reduces the metrics' state
        # (confusion matrices, sums) over all replicas: data-set-level scores, the same as on one device
        val_loader = data.SegmentationLoader(
            val_set,
            options.batch_size,
            max_batches=options.val_steps,
            shard=dist.shard,
            pad_last=dist.replicas if dist.active else 0,
            **loader_kw,
        )

        resolved = dict(cfg.to_dict(), skip_bad=skip_bad)
        resolved["classes"] = {
            "names": train_set.class_names,
            "colors": train_set.colors,
            "ignore_index": train_set.mask_format.ignore_index,
            "mask_format": train_set.mask_format.mode,
        }
        resolved["preprocessing"] = getattr(preprocessing, "mode", None)
        resolved["counts"] = {"train": len(train_set), "val": len(val_set), "steps_per_epoch": len(train_loader)}
        resolved["versions"] = {
            "segmentation_models": __version__,
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
        }
        resolved["distribution"] = dist.describe(options.batch_size, options.lr)
        if dist.active:
            _print_distribution(dist, options)
        history: list[dict] = []
        if resume and not dist.is_chief and not (out / runs.CONFIG_FILE).is_file():
            raise ValueError(
                f"process {dist.process_index} cannot read the run folder {out}: --resume needs the run folder "
                "on storage that every process of the run reads (the chief writes it)"
            )
        initial_epoch, ckpt = latest_checkpoint(out) if resume else (0, None)
        with dist.scope():  # variables made in the engine's scope are mirrored / laid out over the devices
            if ckpt is not None:
                model = runs.load_model(ckpt, compile=True)
                if (out / "history.json").is_file():
                    history = json.loads((out / "history.json").read_text())[:initial_epoch]
                print(f"resumed from {ckpt} ({initial_epoch} completed epoch(s))")
            else:
                model = build_model(cfg.model, train_set.num_classes)
                if cfg.model.encoder_weights is None:
                    init_input_normalization(model, train_loader)
                compile_for_training(model, options, len(train_loader), train_set.num_classes)
        set_synchronized_batchnorm(model, dist)
        monitor = "val_" + _monitor_name(options.metrics)
        # every input is checked and the model built: only now is the run folder made (or replaced), by the
        # chief alone
        if dist.is_chief:
            prepare_run_folder(out, resume, overwrite, _input_paths(cfg.data, train_set, val_set))
            if not (out / runs.CONFIG_FILE).is_file():
                runs.write_json(out / runs.CONFIG_FILE, resolved)
        train_loader.epoch = initial_epoch
        started = time.time()
        if initial_epoch < options.epochs:
            callbacks = _make_callbacks(
                out,
                train_loader,
                monitor,
                history,
                verbose,
                options.bn_batches,
                writes=dist.is_chief,
                unscoped=dist.chief_only,
            )
            with warnings.catch_warnings(), dist.fit_scope(), lost_process_errors(dist, out):
                # Keras' IoU metrics count in integers and warn about float sample weights; the loader's pixel
                # weights are 0 or 1, so the cast is exact
                warnings.filterwarnings("ignore", message="You are passing weight as `float`")
                model.fit(
                    train_loader,
                    validation_data=val_loader,
                    epochs=options.epochs,
                    initial_epoch=initial_epoch,
                    shuffle=False,
                    verbose=verbose,
                    callbacks=callbacks,
                )
        elapsed = time.time() - started
        if not history:
            raise RuntimeError("training produced no epoch (stopped by NaN loss?)")
        if not dist.is_chief:
            return {"run_folder": str(out), "epochs": len(history), "final": history[-1], "process": dist.process_index}
        summary = finish_run(out, resolved, history, val_set, preprocessing, options, monitor, elapsed)
    finally:
        keras.config.set_dtype_policy("float32")
    return summary


def _print_distribution(dist: Distribution, options: TrainingOptions) -> None:
    print(
        f"data-parallel ({dist.engine}): {dist.replicas} replicas in {dist.processes} process(es), this is process "
        f"{dist.process_index}{' (chief: writes the run folder)' if dist.is_chief else ''}; global batch "
        f"{options.batch_size} = {options.batch_size // dist.replicas} per replica; learning rate {options.lr:g} "
        f"(not scaled: --lr is the rate of the global batch); batch-norm statistics over "
        f"{'the global batch' if dist.sync_bn else 'each replica'}"
    )


def _input_paths(dcfg: DataConfig, *datasets: SegmentationDataset) -> set:
    """The data paths of a run (config entries and the folders of every image and mask)."""
    paths = {getattr(dcfg, k) for k in ("data", "images", "masks", "val_data", "palette")} - {None}
    return paths | {p.parent for ds in datasets for pair in ds.pairs for p in pair}


def _monitor_name(metrics: Sequence[str]) -> str:
    keys = [m.lower().replace("-", "_") for m in metrics]
    if any(k in ("iou", "mean_iou", "miou") for k in keys):
        return "mean_iou"
    return "loss"


def finish_run(
    out: Path,
    config: dict,
    history: list[dict],
    val_set: SegmentationDataset,
    preprocessing: Callable | None,
    options: TrainingOptions,
    monitor: str,
    elapsed: float,
) -> dict:
    """Overlays of a few validation images (best model), summary.json, and a printed summary."""
    model_path = out / "best.keras" if (out / "best.keras").is_file() else out / "last.keras"
    from ..inference import predict_probabilities
    from ..plots import overlay, plot_predictions, save_rgb_png

    model = runs.load_model(model_path)
    n = min(options.overlays, len(val_set))
    pictures = []
    if n:
        images, truths, preds, names = [], [], [], []
        (out / "val_predictions").mkdir(exist_ok=True)
        for i in range(n):
            image, truth = val_set.load(i)
            prob = predict_probabilities(model, [image], preprocessing, options.scale)[0]
            pred = prob.argmax(-1).astype("uint8")
            images.append(image), truths.append(truth), preds.append(pred), names.append(val_set.pairs[i][0].name)
            path = out / "val_predictions" / f"{val_set.pairs[i][0].stem}_overlay.png"
            save_rgb_png(path, overlay(image, pred, val_set.colors))
        plot_predictions(images, truths, preds, val_set.colors, out / "val_predictions.png", names)
        pictures.append(str(out / "val_predictions.png"))
    best_row = (
        max(history, key=lambda r: r.get(monitor, float("-inf")))
        if not monitor.endswith("loss")
        else min(history, key=lambda r: r.get(monitor, float("inf")))
    )
    summary = {
        "run_folder": str(out),
        "epochs": len(history),
        "best_epoch": best_row["epoch"],
        f"best_{monitor}": best_row.get(monitor),
        "final": history[-1],
        "seconds_this_session": round(elapsed, 1),
        "best_model": str(out / "best.keras"),
        "last_model": str(out / "last.keras"),
        "training_curves": str(out / "training_curves.png"),
        "pictures": pictures,
    }
    if config.get("distribution", {}).get("engine", "none") != "none":
        summary["distribution"] = config["distribution"]
    runs.write_json(out / "summary.json", summary)
    print("\n" + "=" * 72)
    print(
        f"trained {config['model']['arch']}-{config['model']['backbone']} on {config['counts']['train']} images "
        f"({config['counts']['val']} for validation), {len(history)} epoch(s), {elapsed:.0f} s this session"
    )
    final = history[-1]
    shown = ", ".join(f"{k} {v:.4f}" for k, v in final.items() if k not in ("epoch", "seconds"))
    print(f"last epoch: {shown}")
    if best_row.get(monitor) is not None:
        print(f"best {monitor}: {best_row[monitor]:.4f} (epoch {best_row['epoch']})")
    print(f"run folder: {out}\n  best model: {out / 'best.keras'}\n  curves:     {out / 'training_curves.png'}")
    if pictures:
        print(f"  overlays:   {pictures[0]}")
    print("=" * 72)
    return summary
