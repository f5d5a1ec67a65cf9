"""Accuracy side by side on CamVid: this package and segmentation-models-pytorch (SMP), one protocol, from scratch.

    python benchmarks/accuracy.py --epochs 10 --scale 0.5 --batch-size 8 --output runs/accuracy
    python benchmarks/accuracy.py --minutes 30 --scale 0.5 --output runs/accuracy-30min   # equal wall-clock
    python benchmarks/accuracy.py --quick --output /tmp/acc        # a few steps on small crops (smoke check)

Both contenders train a Unet (``--backbone``, default resnet34; no pretrained weights) on CamVid's train/ (367
frames), keep the epoch with the best validation mIoU (val/, 101 frames) and are scored on test/ (233 frames):
mean IoU over the 11 classes and per-class IoU, void (11) ignored.

- ``ours`` goes through the product's own path, in subprocesses: ``segmentation-models train`` (KERAS_BACKEND,
  default tensorflow) then ``segmentation-models evaluate`` on the run folder; its numbers are read from the run
  folder (summary.json, history.json, eval-test/results.json).
- ``smp`` is a plain torch loop around ``smp.Unet(<SMP encoder>, encoder_weights=None, classes=11)`` (SMP 0.6 from
  .bench/smp, see benchmarks/smp_env.py), in a subprocess with KERAS_BACKEND=torch. Everything but the model
  and the framework comes from this package, configured by parsing the very same ``train`` arguments: the data
  sets and the loader (scale, crop, augmentation, seeded order, batch size, steps, loading threads), the
  backbone's preprocessing, the learning-rate schedule (``learning_rate_schedule``), Adam (epsilon 1e-7 as in
  Keras), a loss equal to the CLI's (`cli_equivalent_loss`), the best-epoch choice on validation mIoU, and the
  test scoring (``predict_probabilities`` at the run's scale, ``confusion_matrix``, ``scores_from_confusion``).
  Where our backbone normalises inside the model (ResNets' ``bn_data``, initialised by the CLI from the first 4
  training batches), SMP's input is standardised with the same statistics (``input_statistics``).

Two budgets: equal epochs (``--epochs``, default) or equal wall-clock time (``--minutes M``): each contender first
trains two whole epochs (with validation) and takes the second one's time as its speed (the first includes
start-up costs: graph tracing, first-call allocations, file decoding), then trains from scratch for as many
epochs as fit in M minutes at that speed (the learning-rate schedule spans them); the table gives the actual
training seconds of each.

Writes ``<output>/accuracy.json`` and prints a markdown table (docs/benchmarks.md, "Accuracy side by side").
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import math
import os
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's package, not an installed copy

from benchmarks.worker import SMP_ENCODERS  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "camvid"
CONTENDERS = ("ours", "smp")
CALIBRATION_EPOCHS = 2  # equal wall-clock mode: the last one's time is the contender's epoch time
# --quick: a few steps on small crops, whole pipeline (train, validation, best epoch, test scoring)
QUICK = {
    "epochs": 1,
    "scale": 0.25,
    "crop": "64",
    "batch_size": 2,
    "steps_per_epoch": 3,
    "val_steps": 1,
    "eval_limit": 4,
}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------------------- the protocol
def cli_train_argv(args: argparse.Namespace, output: Path) -> list[str]:
    """The `segmentation-models train` arguments of the protocol (also parsed to configure the SMP side)."""
    argv = [
        "train",
        "--data",
        str(args.data),
        "--arch",
        "unet",
        "--backbone",
        args.backbone,
        "--encoder-weights",
        "none",
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--lr",
        repr(args.lr),
        "--schedule",
        args.schedule,
        "--optimizer",
        "adam",
        "--loss",
        args.loss,
        "--metrics",
        "mean_iou",
        "--scale",
        repr(args.scale),
        "--seed",
        str(args.seed),
        "--workers",
        str(args.workers),
        "--overlays",
        str(args.overlays),
        "--output",
        str(output),
        "--overwrite",
    ]
    if args.crop:
        argv += ["--crop", args.crop]
    if args.steps_per_epoch:
        argv += ["--steps-per-epoch", str(args.steps_per_epoch)]
    if args.val_steps:
        argv += ["--val-steps", str(args.val_steps)]
    return argv


def cli_evaluate_argv(args: argparse.Namespace, run_folder: Path) -> list[str]:
    argv = [
        "evaluate",
        str(run_folder),
        "--split",
        "test",
        "--output",
        str(run_folder / "eval-test"),
        "--workers",
        str(args.workers),
        "--quiet",
    ]
    if args.eval_limit:
        argv += ["--limit", str(args.eval_limit)]
    return argv


LOSSES = ("categorical_crossentropy", "cce_dice_loss")


def cli_equivalent_loss(logits, target, num_classes: int, loss: str = "categorical_crossentropy"):
    """The loss `segmentation-models train --loss LOSS` minimises, for NCHW logits and (B, H, W) int64 targets
    with ``IGNORE`` (255) at void/padded pixels.

    The CLI compiles the package's losses with the loader's pixel weights (0 at void and padding) as Keras
    ``sample_weight``, which they apply inside (ignored pixels are left out of every sum and mean).
    ``categorical_crossentropy`` (1.0.1's: ``-mean(gt * log(pr))`` over every pixel *and class*) is then
    ``sum of the cross-entropy over non-void pixels / (non-void pixels * classes)``. ``cce_dice_loss`` adds
    ``1 - mean over classes of (2 tp + s) / (2 tp + fp + fn + s)`` with soft counts summed over the batch and the
    non-void pixels (``DiceLoss()``: beta 1, per_image False, s = 1e-5).
    """
    import torch
    import torch.nn.functional as F

    from segmentation_models.data import IGNORE

    if loss not in LOSSES:
        raise ValueError(f"loss {loss!r}: the SMP side implements {LOSSES}")
    ce_sum = F.nll_loss(F.log_softmax(logits, dim=1), target, ignore_index=IGNORE, reduction="sum")
    valid = target != IGNORE
    value = ce_sum / (valid.sum().clamp(min=1) * num_classes)
    if loss == "cce_dice_loss":
        probabilities = torch.softmax(logits, dim=1) * valid[:, None]
        onehot = F.one_hot(torch.where(valid, target, 0), num_classes).permute(0, 3, 1, 2) * valid[:, None]
        tp = (onehot * probabilities).sum((0, 2, 3))
        fp = probabilities.sum((0, 2, 3)) - tp
        fn = onehot.sum((0, 2, 3)) - tp
        smooth = 1e-5
        value = value + 1.0 - ((2 * tp + smooth) / (2 * tp + fp + fn + smooth)).mean()
    return value


def target_indices(onehot, weights):
    """Class indices (B, H, W) int64 from the loader's one-hot targets and pixel weights, IGNORE where weight 0."""
    import numpy as np

    from segmentation_models.data import IGNORE

    return np.where(weights > 0, onehot.argmax(-1), IGNORE).astype("int64")


def prefetched(loader, workers: int):
    """The loader's batches for its current epoch, in order, prepared ``workers`` threads ahead (as Keras'
    PyDataset does for ``fit``)."""
    from concurrent.futures import ThreadPoolExecutor

    n = len(loader)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        queue = collections.deque(pool.submit(loader.__getitem__, i) for i in range(min(n, 2 * max(1, workers))))
        following = len(queue)
        while queue:
            batch = queue.popleft().result()
            if following < n:
                queue.append(pool.submit(loader.__getitem__, following))
                following += 1
            yield batch


class TorchSegmenter:
    """An NCHW torch segmentation model seen as a channels-last model: ``segmenter(x, training=False)`` maps
    preprocessed NHWC images to softmax probabilities (what `predict_probabilities` calls); ``logits(x)`` is
    the NCHW training forward. ``mean``/``std`` (per channel, or None) standardise the input first."""

    def __init__(self, model, mean=None, std=None):
        import torch

        self.model = model
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def logits(self, x):
        import torch

        x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.model(x)

    def __call__(self, x, training: bool = False):
        import torch

        self.model.train(training)
        with torch.inference_mode():
            return torch.softmax(self.logits(x), dim=1).permute(0, 2, 3, 1).numpy()


# ----------------------------------------------------------------------------------------- SMP side
def run_smp(args: argparse.Namespace, out: Path) -> dict:
    """Train and test SMP under the protocol in this process; writes history.json, summary.json and
    eval-test/results.json under ``out`` and returns the summary."""
    import numpy as np
    import torch

    from benchmarks.smp_env import import_smp
    from segmentation_models import data, evaluation, runs
    from segmentation_models.cli import build_parser
    from segmentation_models.cli.train import config_from_args
    from segmentation_models.data.sources import open_train_val
    from segmentation_models.preprocessing import get_preprocessing
    from segmentation_models.training import input_statistics, learning_rate_schedule

    if args.backbone not in SMP_ENCODERS:
        raise ValueError(
            f"no SMP encoder mapped for {args.backbone!r} (benchmarks/worker.py SMP_ENCODERS has "
            f"{sorted(SMP_ENCODERS)})"
        )
    smp = import_smp()
    config = config_from_args(build_parser().parse_args(cli_train_argv(args, out)))
    tcfg = config["train"]
    torch.set_num_threads(args.torch_threads)
    # python, numpy and torch generators, as the CLI seeds them (keras.utils.set_random_seed would import TF)
    random.seed(tcfg["seed"])
    np.random.seed(tcfg["seed"])
    torch.manual_seed(tcfg["seed"])
    out.mkdir(parents=True, exist_ok=True)

    train_set, val_set = open_train_val(config["data"], tcfg["seed"], skip_bad=False)
    classes = train_set.num_classes
    preprocessing = get_preprocessing(args.backbone)
    loader_kw = dict(preprocessing=preprocessing, scale=tcfg["scale"], workers=tcfg["workers"], seed=tcfg["seed"])
    train_loader = data.SegmentationLoader(
        train_set,
        tcfg["batch_size"],
        training=True,
        crop_size=tcfg["crop"],
        augment=tcfg["augment"],
        max_batches=tcfg["steps_per_epoch"],
        **loader_kw,
    )
    val_loader = data.SegmentationLoader(val_set, tcfg["batch_size"], max_batches=tcfg["val_steps"], **loader_kw)

    encoder = SMP_ENCODERS[args.backbone]
    model = smp.Unet(encoder_name=encoder, encoder_weights=None, classes=classes)
    mean = std = None
    if preprocessing.mode == "identity":  # our model normalises inside (bn_data, set from these statistics)
        mean, var = input_statistics(train_loader)
        std = np.sqrt(var + 1e-3)
    segmenter = TorchSegmenter(model, mean, std)
    schedule = learning_rate_schedule(tcfg, len(train_loader))
    optimizer = torch.optim.Adam(model.parameters(), lr=_lr_at(schedule, 0), eps=1e-7)

    history, best, best_state, best_epoch, step = [], None, None, None, 0
    started = time.perf_counter()
    for epoch in range(tcfg["epochs"]):
        epoch_started = time.perf_counter()
        train_loader.epoch = epoch
        model.train()
        losses = []
        for x, y, w in prefetched(train_loader, tcfg["workers"]):
            lr = _lr_at(schedule, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            target = torch.from_numpy(target_indices(y, w))
            loss = cli_equivalent_loss(segmenter.logits(x), target, classes, tcfg["loss"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if not math.isfinite(losses[-1]):
                raise RuntimeError(f"SMP loss is {losses[-1]} at step {step}")
        matrix = np.zeros((classes, classes), "int64")
        for x, y, w in prefetched(val_loader, tcfg["workers"]):
            prediction = segmenter(x).argmax(-1)
            matrix += evaluation.confusion_matrix(target_indices(y, w), prediction, classes)
        val_miou = evaluation.scores_from_confusion(matrix, train_set.class_names)["mean_iou"]
        if val_miou is not None and (best is None or val_miou > best):
            best, best_state, best_epoch = val_miou, copy.deepcopy(model.state_dict()), epoch + 1
        history.append(
            {
                "epoch": epoch + 1,
                "lr": lr,
                "loss": float(np.mean(losses)),
                "val_mean_iou": val_miou,
                "seconds": round(time.perf_counter() - epoch_started, 2),
            }
        )
        runs.write_json(out / "history.json", history)
        shown = "-" if val_miou is None else f"{val_miou:.4f}"
        print(
            f"smp epoch {epoch + 1}/{tcfg['epochs']}: loss {history[-1]['loss']:.4f} val mIoU {shown} "
            f"({history[-1]['seconds']:.0f} s)",
            flush=True,
        )
    train_seconds = time.perf_counter() - started
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = len(history)

    results = _test_scores(segmenter, args, config, preprocessing)
    (out / "eval-test").mkdir(exist_ok=True)
    runs.write_json(out / "eval-test" / "results.json", results)
    summary = {
        "epochs": len(history),
        "best_epoch": best_epoch,
        "best_val_mean_iou": best,
        "seconds_this_session": round(train_seconds, 1),
        "steps_per_epoch": len(train_loader),
        "encoder": encoder,
        "torch_threads": torch.get_num_threads(),
        "input_standardisation": None if mean is None else {"mean": mean.tolist(), "std": std.tolist()},
        "params": int(sum(p.numel() for p in model.parameters())),
        "config": config,
    }
    runs.write_json(out / "summary.json", summary)
    return summary


def _lr_at(schedule, step: int) -> float:
    import keras

    if callable(schedule):
        return float(keras.ops.convert_to_numpy(schedule(step)))
    return float(schedule)


def _test_scores(segmenter, args, config: dict, preprocessing) -> dict:
    """Test-set scores as `segmentation-models evaluate` computes them (same functions, same batches of 4)."""
    import numpy as np

    from segmentation_models import data, evaluation, inference

    test_set = data.from_camvid(config["data"]["data"], "test")
    if args.eval_limit:
        test_set = test_set.subset(range(min(args.eval_limit, len(test_set))))
    classes = test_set.num_classes
    matrix = np.zeros((classes, classes), "int64")
    started = time.perf_counter()
    for first in range(0, len(test_set), 4):
        pairs = [test_set.load(i) for i in range(first, min(first + 4, len(test_set)))]
        images = [p[0] for p in pairs]
        probs = inference.predict_probabilities(segmenter, images, preprocessing, config["train"]["scale"])
        for (_, truth), prob in zip(pairs, probs):
            matrix += evaluation.confusion_matrix(truth, prob.argmax(-1), classes)
    scores = evaluation.scores_from_confusion(matrix, test_set.class_names)
    return {
        "data": test_set.name,
        "images": len(test_set),
        "ignore_index": test_set.mask_format.ignore_index,
        "seconds": round(time.perf_counter() - started, 1),
        **scores,
        "class_names": test_set.class_names,
        "confusion_matrix": matrix.tolist(),
    }


# ----------------------------------------------------------------------------------------- orchestration
def _subprocess(cmd: list[str], env: dict, log: Path, timeout: float | None) -> float:
    """Run ``cmd`` from the repository root with its output in ``log``; wall seconds. Raises on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=str(ROOT), env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{shlex.join(cmd)} failed with exit status {proc.returncode} (log {log}):\n{tail}")
    return time.perf_counter() - started


def _env(**overrides) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(overrides)
    return env


def run_ours(args: argparse.Namespace, out: Path) -> dict:
    """`segmentation-models train` then `evaluate`, each in a subprocess; the record read from the run folder."""
    cli = [sys.executable, "-m", "segmentation_models"]
    env = _env(KERAS_BACKEND=args.keras_backend)
    train_argv, eval_argv = cli_train_argv(args, out), cli_evaluate_argv(args, out)
    wall = _subprocess(cli + train_argv, env, out.parent / "logs" / "ours-train.log", args.timeout)
    _subprocess(cli + eval_argv, env, out.parent / "logs" / "ours-evaluate.log", args.timeout)
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    history = json.loads((out / "history.json").read_text())
    results = json.loads((out / "eval-test" / "results.json").read_text())
    monitor = "val_mean_iou"
    return _record(
        "ours",
        f"segmentation_models (Keras 3, {args.keras_backend})",
        args.backbone,
        history,
        config["counts"]["steps_per_epoch"],
        summary["seconds_this_session"],
        wall,
        summary["best_epoch"],
        summary.get(f"best_{monitor}"),
        results,
        out,
        ["segmentation-models " + shlex.join(train_argv), "segmentation-models " + shlex.join(eval_argv)],
    )


def run_smp_subprocess(args: argparse.Namespace, out: Path, argv: list[str]) -> dict:
    """`run_smp` in a fresh process (KERAS_BACKEND=torch: no TensorFlow loaded beside torch)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--smp-worker", str(out)]
    wall = _subprocess(cmd, _env(KERAS_BACKEND="torch"), out.parent / "logs" / "smp.log", args.timeout)
    return smp_record(
        args,
        out,
        wall,
        ["KERAS_BACKEND=torch python benchmarks/accuracy.py " + shlex.join([*argv, "--smp-worker", str(out)])],
    )


def smp_record(args: argparse.Namespace, out: Path, wall: float | None = None, commands: list[str] = ()) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    history = json.loads((out / "history.json").read_text())
    results = json.loads((out / "eval-test" / "results.json").read_text())
    return _record(
        "smp",
        "segmentation-models-pytorch 0.6.0 (torch)",
        summary["encoder"],
        history,
        summary["steps_per_epoch"],
        summary["seconds_this_session"],
        wall,
        summary["best_epoch"],
        summary["best_val_mean_iou"],
        results,
        out,
        list(commands),
        torch_threads=summary["torch_threads"],
    )


def _record(
    contender,
    label,
    encoder,
    history,
    steps_per_epoch,
    train_s,
    wall_s,
    best_epoch,
    best_val,
    results,
    folder,
    commands,
    **extra,
) -> dict:
    return {
        "contender": contender,
        "label": label,
        "model": f"Unet-{encoder}",
        "epochs": len(history),
        "steps_per_epoch": steps_per_epoch,
        "steps": steps_per_epoch * len(history),
        "train_seconds": round(float(train_s), 1),
        "seconds_per_epoch": [r.get("seconds") for r in history],
        "process_seconds": None if wall_s is None else round(wall_s, 1),
        "best_epoch": best_epoch,
        "best_val_mean_iou": best_val,
        "final_train_loss": history[-1].get("loss"),
        "test_mean_iou": results["mean_iou"],
        "test_pixel_accuracy": results.get("pixel_accuracy"),
        "test_images": results["images"],
        "test_pixels": results["pixels"],
        "per_class_iou": {name: v["iou"] for name, v in results["per_class"].items()},
        "folder": str(folder),
        "commands": commands,
        **extra,
    }


def markdown_table(records: list[dict]) -> str:
    """contender | model | epochs | steps | train time | best epoch | test mIoU | per-class IoU."""
    classes = list(records[0]["per_class_iou"]) if records else []
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    head = ["contender", "model", "epochs", "steps", "train time (s)", "best epoch", "test mIoU", *classes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        row = [
            r["label"],
            r["model"],
            str(r["epochs"]),
            str(r["steps"]),
            f"{r['train_seconds']:.0f}",
            str(r["best_epoch"]),
            fmt(r["test_mean_iou"]),
            *(fmt(r["per_class_iou"].get(c)) for c in classes),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def run_contender(args: argparse.Namespace, argv: list[str], contender: str, out: Path) -> dict:
    return run_ours(args, out) if contender == "ours" else run_smp_subprocess(args, out, argv)


def epochs_in_budget(minutes: float, epoch_seconds: float) -> int:
    """Whole epochs that fit in ``minutes`` at ``epoch_seconds`` each (at least one)."""
    return max(1, int(minutes * 60 // max(epoch_seconds, 1e-9)))


def calibrated(args: argparse.Namespace, argv: list[str], contender: str) -> tuple[argparse.Namespace, list[str], dict]:
    """Equal wall-clock mode: train ``contender`` for two epochs (with validation; the test scoring of the same
    path on one image) and take the second one's time; the arguments of the budgeted run with the epochs that
    fit."""
    probe_args = copy.copy(args)
    probe_args.epochs, probe_args.overlays, probe_args.eval_limit = CALIBRATION_EPOCHS, 0, 1
    probe_argv = [
        *_without_options(argv, ("--epochs", "--minutes", "--overlays", "--eval-limit")),
        "--epochs",
        str(CALIBRATION_EPOCHS),
        "--overlays",
        "0",
        "--eval-limit",
        "1",
    ]
    record = run_contender(probe_args, probe_argv, contender, args.output / "calibration" / contender)
    epoch_seconds = float(record["seconds_per_epoch"][-1])
    epochs = epochs_in_budget(args.minutes, epoch_seconds)
    run_args = copy.copy(args)
    run_args.epochs = epochs
    run_argv = [*_without_options(argv, ("--epochs", "--minutes")), "--epochs", str(epochs)]
    return run_args, run_argv, {"epoch_seconds": epoch_seconds, "epochs": epochs, "minutes": args.minutes}


def _without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` without the options ``names`` and their values (``--name value`` or ``--name=value``)."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in names:
            skip = True
            continue
        if item.split("=", 1)[0] in names:
            continue
        out.append(item)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CamVid folder (default ../shared/data/camvid)")
    p.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    p.add_argument("--backbone", default="resnet34", help=f"ours' backbone; SMP encoder by {SMP_ENCODERS}")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="equal wall-clock mode: each contender trains as many epochs as fit in this many minutes at "
        "its own speed (measured on a calibration epoch); replaces --epochs",
    )
    p.add_argument("--scale", type=float, default=0.5, help="resize factor of every image (default 0.5: 240x180)")
    p.add_argument("--crop", default=None, help="random training crop N or HxW (default: whole scaled images)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=("constant", "cosine", "poly"), default="cosine")
    p.add_argument("--loss", choices=LOSSES, default="cce_dice_loss", help="both contenders' loss (default: the CLI's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps-per-epoch", type=int, default=None, help="cap the training batches per epoch")
    p.add_argument("--val-steps", type=int, default=None, help="cap the validation batches")
    p.add_argument("--eval-limit", type=int, default=None, help="score only the first N test images")
    p.add_argument("--workers", type=int, default=2, help="data loading threads (both contenders)")
    p.add_argument("--overlays", type=int, default=4, help="ours: validation overlays drawn after training")
    p.add_argument(
        "--keras-backend",
        choices=("tensorflow", "jax", "torch"),
        default="tensorflow",
        help="ours' Keras backend (default tensorflow, the CLI's default)",
    )
    p.add_argument("--torch-threads", type=int, default=_cores(), help="SMP: torch.set_num_threads (default: cores)")
    p.add_argument("--output", type=Path, default=Path("runs/accuracy"), help="folder for run folders and results")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per subprocess")
    p.add_argument(
        "--quick", action="store_true", help="smoke check: " + ", ".join(f"{k}={v}" for k, v in QUICK.items())
    )
    p.add_argument("--smp-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:  # the quick settings replace the defaults; options given explicitly still win
        p.set_defaults(**QUICK, overlays=0)
        args = p.parse_args(argv)
    if args.minutes is not None and not args.minutes > 0:
        raise SystemExit("--minutes must be positive")
    for name in ("epochs", "batch_size", "workers", "torch_threads"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    args.data = args.data.resolve()
    args.output = args.output.resolve()
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.smp_worker is not None:
        run_smp(args, args.smp_worker)
        return 0
    if not (args.data / "train").is_dir():
        raise SystemExit(f"CamVid not found in {args.data} (give --data)")
    args.output.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/accuracy.py " + shlex.join(argv)
    report = {
        "command": command,
        "protocol": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("smp_worker",)
        },
        "machine": {"cores": _cores(), "load_average_start": os.getloadavg()},
        "results": [],
    }
    for contender in args.contenders:
        run_args, run_argv = args, argv
        if args.minutes is not None:
            run_args, run_argv, calibration = calibrated(args, argv, contender)
            report.setdefault("calibration", {})[contender] = calibration
            print(
                f"{contender}: {calibration['epoch_seconds']:.0f} s per epoch -> {run_args.epochs} epoch(s) in "
                f"{args.minutes:g} minutes",
                flush=True,
            )
        print(f"{contender}: training (log in {args.output / 'logs'})", flush=True)
        record = run_contender(run_args, run_argv, contender, args.output / contender)
        print(
            f"{contender}: test mIoU {record['test_mean_iou']:.4f} after {record['epochs']} epoch(s), "
            f"{record['train_seconds']:.0f} s training",
            flush=True,
        )
        report["results"].append(record)
        report["machine"]["load_average_end"] = os.getloadavg()
        (args.output / "accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + markdown_table(report["results"]))
    print(f"\ncommand: {command}\nresults: {args.output / 'accuracy.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
