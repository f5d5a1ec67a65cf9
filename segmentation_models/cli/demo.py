"""`segmentation-models demo`: the whole workflow on generated shapes, no download, about a minute.

Writes a generated data set (PNG images and masks) to <output>/data, then runs the same code as
`segmentation-models train`, `evaluate` and `predict` on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .. import runs
from ..training.config import BN_BATCHES

MARKER = runs.DEMO_MARKER
SHAPE_CLASSES = ["background", "disc", "square"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="train, evaluate and predict on generated shapes (no download, about a minute)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--output", default="runs/demo", help="demo folder (default runs/demo; a previous demo there is replaced)"
    )
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--size", type=int, default=64, help="image size, a multiple of 32")
    p.add_argument("--samples", type=int, default=192)
    p.add_argument("--backbone", default="resnet18")
    p.set_defaults(func=run)


def generated_shapes(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images of noisy backgrounds with discs (class 1) and squares (class 2); masks of class indices."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(110, 25, (n, size, size, 3))
    masks = np.zeros((n, size, size), "int64")
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            cls = int(rng.integers(1, 3))
            r = rng.integers(size // 10, size // 4)
            cy, cx = rng.integers(r, size - r, 2)
            region = (
                ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) if cls == 1 else ((abs(yy - cy) <= r) & (abs(xx - cx) <= r))
            )
            masks[i][region] = cls
            images[i][region] = rng.normal([200, 60, 60] if cls == 1 else [60, 80, 200], 25)
    return np.clip(images, 0, 255).astype("float32"), masks


def write_shapes_dataset(folder: str | Path, n: int, size: int, seed: int = 0) -> Path:
    """Write `generated_shapes` as ``folder/images/*.png`` and ``folder/masks/*.png`` (class indices)."""
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    images, masks = generated_shapes(n, size, seed)
    for i, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image.astype("uint8")).save(folder / "images" / f"shape_{i:04d}.png")
        Image.fromarray(mask.astype("uint8")).save(folder / "masks" / f"shape_{i:04d}.png")
    return folder


def demo_config(data_dir: Path, backbone: str, epochs: int) -> dict:
    """The demo's training configuration (that of `segmentation-models train`) for the shapes in ``data_dir``."""
    return {
        "data": {
            "data": str(Path(data_dir).resolve()),
            "images": None,
            "masks": None,
            "val_data": None,
            "val_fraction": 0.2,
            "classes": SHAPE_CLASSES,
            "mask_mode": "index",
            "palette": None,
            "ignore_index": None,
            "mask_suffix": "",
        },
        "model": {
            "arch": "unet",
            "backbone": backbone,
            "encoder_weights": None,
            "encoder_freeze": False,
            "options": {"decoder_filters": [128, 64, 32, 16, 8]},
        },
        "train": {
            "epochs": epochs,
            "batch_size": 8,
            "lr": 2e-3,
            "schedule": "cosine",
            "warmup_epochs": 0,
            "optimizer": "adam",
            "weight_decay": None,
            "loss": "categorical_crossentropy",
            "metrics": ["mean_iou", "accuracy"],
            "precision": "float32",
            "crop": None,
            "scale": 1.0,
            "augment": True,
            "bn_batches": BN_BATCHES,
            "steps_per_epoch": None,
            "val_steps": None,
            "workers": 2,
            "multiprocessing": False,
            "seed": 0,
            "deterministic": False,
            "overlays": 4,
        },
    }


def run(args: argparse.Namespace) -> int:
    import keras

    from ..evaluation import evaluate
    from ..prediction import predict
    from ..training import train

    if args.size % 32:
        raise ValueError(f"--size must be a multiple of 32, got {args.size}")
    root = Path(args.output)
    runs.remove_marked_folder(root, MARKER, "choose another --output")
    root.mkdir(parents=True)
    runs.write_marker(root, MARKER, "demo")
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    print(f"writing {args.samples} generated images and masks to {root / 'data'}")
    data_dir = write_shapes_dataset(root / "data", args.samples, args.size, seed=0)
    new_dir = write_shapes_dataset(root / "new", 4, args.size, seed=123) / "images"
    config = demo_config(data_dir, args.backbone, args.epochs)
    run_dir = root / "run"
    train(config, run_dir)
    results = evaluate(run_dir, split="val", verbose=True)
    predict(run_dir, [new_dir], output=root / "predictions")
    print("\ndemo done:")
    print(f"  run folder:        {run_dir}  (config.json, history.csv, best.keras, last.keras)")
    print(f"  training curves:   {run_dir / 'training_curves.png'}")
    print(f"  validation images: {run_dir / 'val_predictions.png'}")
    print(f"  confusion matrix:  {run_dir / 'eval-val' / 'confusion_matrix.png'}  (mean IoU {results['mean_iou']:.3f})")
    print(f"  new images:        {root / 'predictions'}  (*_mask.png, *_overlay.png)")
    return 0
