"""`segmentation-models train`: train a model on a folder of images and masks, CamVid, or a list of pairs.

The run folder holds config.json (the resolved configuration), history.csv/json (metrics per epoch),
training_curves.png, val_predictions.png (+ overlays), best.keras, last.keras and checkpoints/ (one per
completed epoch, written atomically). `--resume` continues a run from its last completed epoch with the same
optimizer state and data order.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import common
from .data_args import add_data_arguments, data_config, open_train_val

CHECKPOINTS = "checkpoints"
BN_BATCHES = 10  # segmentation_models.batchnorm.DEFAULT_STEPS, without importing Keras to build the parser
_CKPT = re.compile(r"^epoch_(\d{4,})\.keras$")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a segmentation model (run folder with config, curves, checkpoints, best/last model)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(p)
    m = p.add_argument_group("model")
    m.add_argument("--arch", default="unet", help="architecture (see `segmentation-models info`; default unet)")
    m.add_argument("--backbone", default="resnet34", help="encoder backbone (default resnet34)")
    m.add_argument("--encoder-weights", default="imagenet", help="'imagenet' (default), 'none' or a weights file")
    m.add_argument("--encoder-freeze", action="store_true", help="freeze the encoder (BatchNorm excepted)")
    m.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra builder argument, VALUE as JSON (e.g. decoder_filters=[64,32,16,8,8]); repeatable",
    )
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    t.add_argument(
        "--schedule",
        choices=("constant", "cosine", "poly"),
        default="cosine",
        help="learning-rate schedule over all steps (default cosine)",
    )
    t.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up (cosine schedule)")
    t.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    t.add_argument("--weight-decay", type=float, default=None, help="weight decay (adamw, sgd)")
    t.add_argument(
        "--loss",
        default="categorical_crossentropy",
        help="loss by name (the package's losses, or a Keras loss); default categorical_crossentropy",
    )
    t.add_argument(
        "--metrics", default="mean_iou,accuracy", help="comma-separated metric names (default mean_iou,accuracy)"
    )
    t.add_argument(
        "--precision",
        choices=("float32", "mixed_float16", "mixed_bfloat16"),
        default="float32",
        help="mixed precision policy (default float32)",
    )
    t.add_argument(
        "--crop",
        type=_size,
        default=None,
        metavar="N|HxW",
        help="random training crop, a multiple of 32 (default: whole images padded to 32)",
    )
    t.add_argument("--scale", type=float, default=1.0, help="resize every image by this factor first (e.g. 0.5)")
    t.add_argument("--no-augment", dest="augment", action="store_false", help="no flip/affine/color augmentation")
    t.add_argument(
        "--bn-batches",
        type=int,
        default=None,
        metavar="N",
        help="re-estimate BatchNorm statistics from N batches of training images (no augmentation) "
        f"before each validation and save (default {BN_BATCHES}; 0 keeps Keras' moving averages)",
    )
    t.add_argument("--steps-per-epoch", type=int, default=None, help="cap the batches per epoch")
    t.add_argument("--val-steps", type=int, default=None, help="cap the validation batches")
    t.add_argument("--workers", type=int, default=2, help="data loading threads (default 2)")
    t.add_argument("--multiprocessing", action="store_true", help="load data in processes instead of threads")
    t.add_argument(
        "--cache-mb",
        type=float,
        default=1024,
        help="keep decoded images in memory up to this size, so later epochs skip decoding (default "
        "1024; 0 disables; threads only)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower; exact resumes)")
    o = p.add_argument_group("output")
    o.add_argument("--output", default=None, help="run folder (default runs/<arch>-<backbone>)")
    o.add_argument("--resume", action="store_true", help="continue the run in --output from its last completed epoch")
    o.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    o.add_argument("--overlays", type=int, default=4, help="validation images drawn at the end (default 4)")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _size(text: str) -> tuple[int, int]:
    parts = [int(v) for v in text.lower().split("x")]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or any(v <= 0 for v in parts):
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}")
    return parts[0], parts[1]


def _model_args(items) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError as err:
            if value.strip()[:1] in ("[", "{", '"') or value.strip()[:1].isdigit():  # meant as JSON, not a word
                raise ValueError(
                    f"--model-arg {item!r}: the value is not valid JSON ({err.msg} at character "
                    f"{err.pos}); e.g. decoder_filters=[64,32,16,8,8] (a bare word is a string)"
                ) from None
            out[key.strip()] = value
    return out


def config_from_args(args: argparse.Namespace) -> dict:
    weights = None if str(args.encoder_weights).lower() in ("none", "null", "") else args.encoder_weights
    for name, value in (("epochs", args.epochs), ("batch-size", args.batch_size)):
        if value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    bn_batches = BN_BATCHES if args.bn_batches is None else args.bn_batches
    if bn_batches < 0:
        raise ValueError(f"--bn-batches must be >= 0 (0: no re-estimation), got {bn_batches}")
    return {
        "data": data_config(args),
        "model": {
            "arch": args.arch,
            "backbone": args.backbone,
            "encoder_weights": weights,
            "encoder_freeze": args.encoder_freeze,
            "options": _model_args(args.model_arg),
        },
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "schedule": args.schedule,
            "warmup_epochs": args.warmup_epochs,
            "optimizer": args.optimizer,
            "weight_decay": args.weight_decay,
            "loss": args.loss,
            "metrics": [m.strip() for m in args.metrics.split(",") if m.strip()],
            "precision": args.precision,
            "crop": list(args.crop) if args.crop else None,
            "scale": args.scale,
            "augment": args.augment,
            "bn_batches": bn_batches,
            "steps_per_epoch": args.steps_per_epoch,
            "val_steps": args.val_steps,
            "workers": args.workers,
            "multiprocessing": args.multiprocessing,
            "cache_mb": args.cache_mb,
            "seed": args.seed,
            "deterministic": args.deterministic,
            "overlays": args.overlays,
        },
    }


def run(args: argparse.Namespace) -> int:
    out = Path(args.output or f"runs/{args.arch}-{args.backbone}")
    if args.resume:
        if not (out / common.CONFIG_FILE).is_file():
            raise ValueError(f"--resume: {out / common.CONFIG_FILE} does not exist (nothing to resume there)")
        config = json.loads((out / common.CONFIG_FILE).read_text())
        print(f"resuming {out} with its recorded configuration (other options are ignored)")
    else:
        config = config_from_args(args)
    args.run_folder = out  # named by the hint printed when the run is interrupted
    train(
        config,
        out,
        resume=args.resume,
        overwrite=args.overwrite,
        skip_bad=args.skip_bad,
        verbose=0 if args.quiet else 1,
    )
    return 0


# ----------------------------------------------------------------------------------------- pieces
def prepare_run_folder(out: Path, resume: bool, overwrite: bool, inputs=()) -> None:
    """Create (and mark) the run folder, after the inputs were checked. An existing folder is continued
    (``resume``), or replaced (``overwrite``) only when it is a run folder of this package; a marked run that never
    completed an epoch (a failed start) is started again. Never a folder that is or holds the data ``inputs``."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    common.check_disjoint(out, inputs, "run folder")
    if resume:
        out.mkdir(parents=True, exist_ok=True)
        for stale in list(out.glob(".*.tmp*")) + list((out / CHECKPOINTS).glob(".*.tmp*")):
            stale.unlink(missing_ok=True)  # temporary files of a run killed while writing
    elif out.is_dir() and any(out.iterdir()):
        never_started = common.is_marked(out, common.RUN_MARKER) and not _has_results(out)
        if not (overwrite or never_started):
            raise ValueError(
                f"run folder {out} already exists and is not empty: --resume continues it, --overwrite "
                "replaces it, or choose another --output"
            )
        if never_started and not overwrite:
            print(f"{out} holds a run that never completed an epoch: starting it again")
        common.remove_marked_folder(out, common.RUN_MARKER, "choose another --output (or remove it yourself)")
    out.mkdir(parents=True, exist_ok=True)
    if not common.is_marked(out, common.RUN_MARKER):
        common.write_marker(out, common.RUN_MARKER, "train")


def _has_results(out: Path) -> bool:
    """True when a run folder holds a model or a completed epoch."""
    return any((out / n).exists() for n in ("best.keras", "last.keras", "history.json")) or bool(_checkpoints(out))


def _checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of the epoch checkpoints of a run folder, newest first."""
    folder = out / CHECKPOINTS
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT.match(p.name))] if folder.is_dir() else []
    return sorted(found, reverse=True)


def latest_checkpoint(out: Path) -> tuple[int, Path | None]:
    """(completed epochs, checkpoint path) of the newest intact checkpoint of a run folder, (0, None) for a run
    that never completed an epoch. A missing or corrupt newer one is reported; a run whose every checkpoint is
    lost is an error (it is never restarted silently)."""
    from ..utils import verify_keras_archive

    found = _checkpoints(out)
    history = out / "history.json"
    recorded = len(json.loads(history.read_text())) if history.is_file() else 0
    newest = max([recorded] + [e for e, _ in found])
    for epoch, path in found:
        try:
            verify_keras_archive(path)
        except ValueError as err:
            print(f"warning: not resuming from {path}: {err}")
            continue
        if epoch < newest:
            print(
                f"the checkpoint of epoch {newest} is missing or corrupt: resuming from the newest intact one, "
                f"{path} (epochs {epoch + 1}..{newest} are trained again)"
            )
        return epoch, path
    if newest or _has_results(out):
        raise ValueError(
            f"--resume: {out / CHECKPOINTS} has no intact checkpoint, although {newest} epoch(s) were "
            "completed: the run cannot continue; --overwrite starts it again, or choose another --output"
        )
    print(f"{out} has no completed epoch: training starts at epoch 1")
    return 0, None


def check_crop(crop, scale: float, dataset) -> None:
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


def get_loss(name: str):
    """A loss by name: the package's losses first, then Keras'.

    The data come as ``(x, one-hot y, pixel weights w)`` with ``w = 0`` at ignored pixels (void, padding). The
    package's losses apply ``w`` inside (ignored pixels are left out of every sum and mean). Keras' own losses
    are per-pixel: they are made with ``reduction="mean_with_sample_weight"`` (``sum(w * loss) / sum(w)``), so
    that ignored pixels neither count nor dilute the mean (Keras' default divides by all pixels).
    """
    from .. import losses as sm_losses

    loss = sm_losses.get(name)  # ValueError with close names when unknown
    if isinstance(loss, sm_losses.Loss):
        return loss
    return _pixel_mean_keras_loss(name, loss)


def _pixel_mean_keras_loss(name: str, loss):
    """Keras' loss ``loss`` (a ``keras.losses.Loss`` or one of Keras' loss functions) with the reduction
    ``"mean_with_sample_weight"``."""
    import keras

    reduction = "mean_with_sample_weight"
    if isinstance(loss, keras.losses.Loss):
        return type(loss).from_config({**loss.get_config(), "reduction": reduction})
    for candidate in vars(keras.losses).values():  # the Loss class that wraps this function, e.g. "mse"
        if isinstance(candidate, type) and issubclass(candidate, keras.losses.Loss):
            try:
                instance = candidate(reduction=reduction)
            except (TypeError, ValueError):  # a class that needs arguments: not a plain function's wrapper
                continue
            if getattr(instance, "fn", None) is loss:
                return instance
    raise ValueError(
        f"loss {name!r} is not one of Keras' loss functions or classes: use a name of "
        "segmentation_models.losses or keras.losses (e.g. categorical_crossentropy)"
    )


def get_metrics(names, num_classes: int) -> list:
    """Metrics by name: 'mean_iou' and 'accuracy' are Keras metrics, other names come from the package's metrics,
    then Keras'. Compile them as ``weighted_metrics`` so that ignored pixels (weight 0) are left out."""
    import keras

    out = []
    for name in names:
        key = name.lower().replace("-", "_")
        if key in ("iou", "mean_iou", "miou"):
            out.append(keras.metrics.OneHotMeanIoU(num_classes=num_classes, name="mean_iou"))
        elif key in ("accuracy", "acc"):
            out.append(keras.metrics.CategoricalAccuracy(name="accuracy"))
        else:
            metric = None
            try:
                from .. import metrics as sm_metrics

                if hasattr(sm_metrics, "get"):
                    metric = sm_metrics.get(name)
            except (ImportError, ValueError, KeyError):
                metric = None
            if metric is None:
                try:
                    metric = keras.metrics.get(name)
                except (ValueError, TypeError):
                    raise ValueError(
                        f"unknown metric {name!r}: use mean_iou, accuracy, or a name of "
                        "segmentation_models.metrics / keras.metrics"
                    ) from None
            out.append(metric)
    return out


def learning_rate_schedule(cfg: dict, steps_per_epoch: int):
    """The learning rate of a training config: a Keras schedule over all steps (cosine with optional warm-up,
    poly), or a float (constant). The optimizer update number ``n`` (0-based) uses ``schedule(n)``."""
    import keras

    total = max(1, cfg["epochs"] * steps_per_epoch)
    lr = cfg["lr"]
    if cfg["schedule"] == "cosine":
        warmup = int(cfg.get("warmup_epochs", 0) * steps_per_epoch)
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                lr * 0.01, max(1, total - warmup), alpha=0.01, warmup_target=lr, warmup_steps=warmup
            )
        return keras.optimizers.schedules.CosineDecay(lr, total, alpha=0.01)
    if cfg["schedule"] == "poly":
        return keras.optimizers.schedules.PolynomialDecay(lr, total, end_learning_rate=lr * 0.01, power=0.9)
    return lr


def make_optimizer(cfg: dict, steps_per_epoch: int):
    import keras

    schedule = learning_rate_schedule(cfg, steps_per_epoch)
    wd = cfg.get("weight_decay")
    if cfg["optimizer"] == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=wd if wd is not None else 1e-4)
    if cfg["optimizer"] == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=wd)
    return keras.optimizers.Adam(schedule, weight_decay=wd)


def compile_for_training(model, cfg: dict, steps_per_epoch: int, num_classes: int) -> None:
    """Compile ``model`` with the training config's optimizer, loss and metrics. The metrics are weighted: the
    loader's pixel weights (0 at void and padding) reach them (Keras passes sample weights only to
    ``weighted_metrics``; plain ``metrics`` would count those pixels as class 0)."""
    model.compile(
        make_optimizer(cfg, steps_per_epoch),
        loss=get_loss(cfg["loss"]),
        weighted_metrics=get_metrics(cfg["metrics"], num_classes),
    )


def build_model(model_cfg: dict, num_classes: int):
    from ..factory import create_model

    options = model_cfg.get("options", {})
    try:
        return create_model(
            model_cfg["arch"],
            backbone_name=model_cfg["backbone"],
            input_shape=(None, None, 3),
            classes=num_classes,
            activation="softmax",
            encoder_weights=model_cfg["encoder_weights"],
            encoder_freeze=model_cfg.get("encoder_freeze", False),
            **options,
        )
    except TypeError as err:  # a keyword the builder does not take, or a value of the wrong type
        given = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "none"
        raise ValueError(
            f"{err} (--model-arg options given: {given}; `segmentation-models info` and "
            "docs/architectures.md list each architecture's arguments)"
        ) from None


def init_input_normalization(model, loader, batches: int = 4) -> None:
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


def input_statistics(loader, batches: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance of the (preprocessed) images of the loader's first ``batches`` batches."""
    xs = np.concatenate([loader[i][0] for i in range(min(batches, len(loader)))])
    return xs.mean(axis=(0, 1, 2)), xs.var(axis=(0, 1, 2))


def set_determinism(seed: int, deterministic: bool) -> None:
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


def _make_callbacks(out: Path, loader, monitor: str, history: list[dict], verbose: int, bn_batches: int = 0):
    import keras

    from ..batchnorm import BatchNormRecalibration

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
            common.write_json(out / "history.json", history)
            common.write_csv(out / "history.csv", history)
            try:
                common.plot_history(history, out / "training_curves.png")
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
            common.atomic_save_model(self.model, ckpt, links=[out / "best.keras"] if improved else [])
            if improved:
                self.best = value
                if verbose:
                    print(f"\n{monitor} improved to {value:.4f}: saved best.keras")
            for old in folder.iterdir():
                match = _CKPT.match(old.name)
                if match and int(match.group(1)) < epoch:  # the previous one stays: --resume falls back to it
                    old.unlink(missing_ok=True)
            common.atomic_link(ckpt, out / "last.keras")

    # BatchNorm statistics first: validation and every model file written after it see the re-estimated ones
    recalibration = [BatchNormRecalibration(loader.inference_batches(bn_batches), bn_batches)] if bn_batches else []
    return [*recalibration, EpochSync(), RunRecorder(), keras.callbacks.TerminateOnNaN()]


# ----------------------------------------------------------------------------------------- train
def train(
    config: dict,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    skip_bad: bool = False,
    verbose: int = 1,
) -> dict:
    """Train as described by ``config`` (see `config_from_args`) into run folder ``out``; returns a summary."""
    import keras

    from .. import data
    from .._version import __version__

    out = Path(out)
    tcfg, mcfg = config["train"], config["model"]
    set_determinism(tcfg["seed"], tcfg.get("deterministic", False))
    keras.config.set_dtype_policy(tcfg.get("precision", "float32"))
    try:
        skip_bad = skip_bad or config.get("skip_bad", False)
        train_set, val_set = open_train_val(config["data"], tcfg["seed"], skip_bad)
        train_set = train_set.check(skip_bad=skip_bad, verbose=bool(verbose))
        val_set = val_set.check(skip_bad=skip_bad, verbose=bool(verbose))
        if val_set.class_names != train_set.class_names:
            raise data.DataError(
                f"validation classes {val_set.class_names} differ from training classes {train_set.class_names}"
            )
        check_crop(tcfg["crop"], tcfg["scale"], train_set)
        from ..preprocessing import get_preprocessing

        preprocessing = get_preprocessing(mcfg["backbone"])
        loader_kw = dict(
            preprocessing=preprocessing,
            scale=tcfg["scale"],
            workers=tcfg["workers"],
            use_multiprocessing=tcfg["multiprocessing"],
            cache_mb=tcfg.get("cache_mb", 1024),
            seed=tcfg["seed"],
        )
        train_loader = data.SegmentationLoader(
            train_set,
            tcfg["batch_size"],
            training=True,
            crop_size=tcfg["crop"],
            augment=tcfg["augment"],
            max_batches=tcfg["steps_per_epoch"],
            **loader_kw,
        )
        val_loader = data.SegmentationLoader(
            val_set, tcfg["batch_size"], max_batches=tcfg.get("val_steps"), **loader_kw
        )

        resolved = dict(config, skip_bad=skip_bad)
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
        history: list[dict] = []
        initial_epoch, ckpt = latest_checkpoint(out) if resume else (0, None)
        if ckpt is not None:
            model = common.load_model(ckpt, compile=True)
            if (out / "history.json").is_file():
                history = json.loads((out / "history.json").read_text())[:initial_epoch]
            print(f"resumed from {ckpt} ({initial_epoch} completed epoch(s))")
        else:
            model = build_model(mcfg, train_set.num_classes)
            if mcfg["encoder_weights"] is None:
                init_input_normalization(model, train_loader)
            compile_for_training(model, tcfg, len(train_loader), train_set.num_classes)
        monitor = "val_" + _monitor_name(tcfg["metrics"])
        # every input is checked and the model built: only now is the run folder made (or replaced)
        prepare_run_folder(out, resume, overwrite, _input_paths(config["data"], train_set, val_set))
        if not (out / common.CONFIG_FILE).is_file():
            common.write_json(out / common.CONFIG_FILE, resolved)
        train_loader.epoch = initial_epoch
        started = time.time()
        if initial_epoch < tcfg["epochs"]:
            with warnings.catch_warnings():
                # Keras' IoU metrics count in integers and warn about float sample weights; the loader's pixel
                # weights are 0 or 1, so the cast is exact
                warnings.filterwarnings("ignore", message="You are passing weight as `float`")
                model.fit(
                    train_loader,
                    validation_data=val_loader,
                    epochs=tcfg["epochs"],
                    initial_epoch=initial_epoch,
                    shuffle=False,
                    verbose=verbose,
                    callbacks=_make_callbacks(
                        out, train_loader, monitor, history, verbose, tcfg.get("bn_batches", BN_BATCHES)
                    ),
                )
        elapsed = time.time() - started
        if not history:
            raise RuntimeError("training produced no epoch (stopped by NaN loss?)")
        summary = finish_run(out, resolved, history, val_set, preprocessing, tcfg, monitor, elapsed)
    finally:
        keras.config.set_dtype_policy("float32")
    return summary


def _input_paths(dcfg: dict, *datasets) -> set:
    """The data paths of a run (config entries and the folders of every image and mask)."""
    paths = {dcfg.get(k) for k in ("data", "images", "masks", "val_data", "palette")} - {None}
    return paths | {p.parent for ds in datasets for pair in ds.pairs for p in pair}


def _monitor_name(metrics) -> str:
    keys = [m.lower().replace("-", "_") for m in metrics]
    if any(k in ("iou", "mean_iou", "miou") for k in keys):
        return "mean_iou"
    return "loss"


def finish_run(
    out: Path, config: dict, history: list[dict], val_set, preprocessing, tcfg: dict, monitor: str, elapsed: float
) -> dict:
    """Overlays of a few validation images (best model), summary.json, and a printed summary."""
    model_path = out / "best.keras" if (out / "best.keras").is_file() else out / "last.keras"
    model = common.load_model(model_path)
    n = min(tcfg.get("overlays", 4), len(val_set))
    pictures = []
    if n:
        images, truths, preds, names = [], [], [], []
        (out / "val_predictions").mkdir(exist_ok=True)
        for i in range(n):
            image, truth = val_set.load(i)
            prob = common.predict_probabilities(model, [image], preprocessing, tcfg["scale"])[0]
            pred = prob.argmax(-1).astype("uint8")
            images.append(image), truths.append(truth), preds.append(pred), names.append(val_set.pairs[i][0].name)
            path = out / "val_predictions" / f"{val_set.pairs[i][0].stem}_overlay.png"
            common.save_rgb_png(path, common.overlay(image, pred, val_set.colors))
        common.plot_predictions(images, truths, preds, val_set.colors, out / "val_predictions.png", names)
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
    common.write_json(out / "summary.json", summary)
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
