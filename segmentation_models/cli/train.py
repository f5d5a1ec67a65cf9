"""`segmentation-models train`: train a model on a folder of images and masks, CamVid, or a list of pairs.

The run folder holds config.json (the resolved configuration), history.csv/json (metrics per epoch),
training_curves.png, val_predictions.png (+ overlays), best.keras, last.keras and checkpoints/ (one per
completed epoch, written atomically). `--resume` continues a run from its last completed epoch with the same
optimizer state and data order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..training.config import BN_BATCHES, DISTRIBUTE_MODES, DataConfig, ModelConfig, TrainConfig, TrainingOptions
from .arguments import add_data_arguments, command_parser, data_config, keywords_for


def add_parser(sub) -> None:
    p = command_parser(
        sub,
        "train",
        "train a segmentation model (run folder with config, curves, checkpoints, best/last model)",
        __doc__,
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
        default="cce_dice_loss",
        help="loss by name (the package's losses, or a Keras loss); default cce_dice_loss (cross-entropy + Dice)",
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
    d = p.add_argument_group("several devices and machines (docs/scaling.md)")
    d.add_argument(
        "--distribute",
        choices=DISTRIBUTE_MODES,
        default="auto",
        help="data-parallel training: auto (all local devices when there are several, or the processes of a "
        "KERAS_DISTRIBUTION_* cluster (JAX); default), none (one device), data-parallel (an error without "
        "several devices or processes). TensorFlow and JAX; --batch-size is the global batch, --lr is not scaled",
    )
    d.add_argument(
        "--sync-bn",
        action="store_true",
        help="batch-norm statistics over the global batch (TensorFlow; default: each replica's own; JAX always "
        "uses the global batch)",
    )
    d.add_argument(
        "--distribute-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="a multi-process run ends with an error when a process does not answer for this long (default 300)",
    )
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


def _model_args(items: list[str]) -> dict:
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


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of parsed ``train`` arguments (flag names in the messages)."""
    weights = None if str(args.encoder_weights).lower() in ("none", "null", "") else args.encoder_weights
    for name, value in (("epochs", args.epochs), ("batch-size", args.batch_size)):
        if value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    bn_batches = BN_BATCHES if args.bn_batches is None else args.bn_batches
    if bn_batches < 0:
        raise ValueError(f"--bn-batches must be >= 0 (0: no re-estimation), got {bn_batches}")
    return TrainConfig(
        data=DataConfig(**data_config(args)),
        model=ModelConfig(
            arch=args.arch,
            backbone=args.backbone,
            encoder_weights=weights,
            encoder_freeze=args.encoder_freeze,
            options=_model_args(args.model_arg),
        ),
        train=TrainingOptions(
            **keywords_for(
                TrainingOptions,
                args,
                metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
                crop=list(args.crop) if args.crop else None,
                bn_batches=bn_batches,
            )
        ),
    )


def config_from_args(args: argparse.Namespace) -> dict:
    """The run config (config.json's layout: data, model and train sections) of parsed ``train`` arguments."""
    return train_config_from_args(args).to_dict()


def run(args: argparse.Namespace) -> int:
    from ..training import train
    from ..training.config import default_run_folder

    out = Path(args.output) if args.output else default_run_folder(args.arch, args.backbone)
    config = None if args.resume else train_config_from_args(args)  # a resumed run keeps its recorded config
    if args.resume:  # train() refuses a folder without config.json
        print(f"resuming {out} with its recorded configuration (other options are ignored)")
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
