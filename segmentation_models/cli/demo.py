"""`segmentation-models demo`: the whole workflow on generated shapes, no download, about a minute.

Writes a generated data set (PNG images and masks) to <output>/data, then runs the same code as
`segmentation-models train`, `evaluate` and `predict` on it.
"""

from __future__ import annotations

import argparse

from .arguments import command_parser


def add_parser(sub) -> None:
    p = command_parser(
        sub, "demo", "train, evaluate and predict on generated shapes (no download, about a minute)", __doc__
    )
    p.add_argument(
        "--output", default="runs/demo", help="demo folder (default runs/demo; a previous demo there is replaced)"
    )
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--size", type=int, default=64, help="image size, a multiple of 32")
    p.add_argument("--samples", type=int, default=192)
    p.add_argument("--backbone", default="resnet18")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import keras

    from ..demo import run_demo

    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    result = run_demo(args.output, epochs=args.epochs, size=args.size, samples=args.samples, backbone=args.backbone)
    run_dir = result.run_folder
    print("\ndemo done:")
    print(f"  run folder:        {run_dir}  (config.json, history.csv, best.keras, last.keras)")
    print(f"  training curves:   {run_dir / 'training_curves.png'}")
    print(f"  validation images: {run_dir / 'val_predictions.png'}")
    print(f"  confusion matrix:  {run_dir / 'eval-val' / 'confusion_matrix.png'}  (mean IoU {result.mean_iou:.3f})")
    print(f"  new images:        {result.predictions}  (*_mask.png, *_overlay.png)")
    return 0
