"""The whole workflow on generated shapes, no download, about a minute: `segmentation-models demo`, or
``segmentation_models.demo.run_demo()`` from Python."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import runs
from .data.shapes import SHAPE_CLASSES, write_shapes_dataset
from .training.config import DataConfig, ModelConfig, TrainConfig, TrainingOptions

__all__ = ["DemoResult", "demo_config", "run_demo"]


@dataclass
class DemoResult:
    """Where the demo wrote what, and the validation mean IoU of its model (inference mode)."""

    root: Path
    run_folder: Path
    predictions: Path
    mean_iou: float


def demo_config(data_dir: str | Path, backbone: str = "resnet18", epochs: int = 6) -> TrainConfig:
    """The demo's training configuration for the shapes in ``data_dir``."""
    return TrainConfig(
        data=DataConfig(data=str(Path(data_dir).resolve()), classes=list(SHAPE_CLASSES)),
        model=ModelConfig(
            arch="unet", backbone=backbone, encoder_weights=None, options={"decoder_filters": [128, 64, 32, 16, 8]}
        ),
        # the recipe the demo's >= 0.90 validation mean IoU was measured with, whatever the defaults become
        train=TrainingOptions(
            epochs=epochs, batch_size=8, lr=2e-3, schedule="cosine", optimizer="adam", loss="categorical_crossentropy"
        ),
    )


def run_demo(
    output: str | Path = "runs/demo",
    epochs: int = 6,
    size: int = 64,
    samples: int = 192,
    backbone: str = "resnet18",
    verbose: bool = True,
) -> DemoResult:
    """Write generated images and masks under ``output``, train on them, evaluate on the validation split and
    predict four new images. A previous demo in ``output`` is replaced; any other folder there is refused."""
    from .evaluation import evaluate
    from .prediction import predict
    from .training import train

    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % 32:
        raise ValueError(f"size must be a positive multiple of 32, got {size!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 10:
        raise ValueError(f"samples must be an integer >= 10 (training and validation images), got {samples!r}")
    root = Path(output)
    config = demo_config(root / "data", backbone, epochs)  # a bad option fails before anything is touched
    runs.remove_marked_folder(root, runs.DEMO_MARKER, "choose another output folder")
    root.mkdir(parents=True)
    runs.write_marker(root, runs.DEMO_MARKER, "demo")
    if verbose:
        print(f"writing {samples} generated images and masks to {root / 'data'}")
    write_shapes_dataset(root / "data", samples, size, seed=0)
    new_dir = write_shapes_dataset(root / "new", 4, size, seed=123) / "images"
    run_folder = root / "run"
    train(config, run_folder, verbose=int(verbose))
    results = evaluate(run_folder, split="val", verbose=verbose)
    predict(run_folder, [new_dir], output=root / "predictions", verbose=verbose)
    return DemoResult(root, run_folder, root / "predictions", float(results["mean_iou"]))
