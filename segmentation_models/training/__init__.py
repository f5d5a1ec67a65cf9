"""Training from Python, as `segmentation-models train` trains (the command calls this package)::

    import segmentation_models as sm
    from segmentation_models.training import DataConfig, ModelConfig, TrainConfig, TrainingOptions

    config = TrainConfig(
        data=DataConfig(data="data/shapes", classes=["background", "disc", "square"]),
        model=ModelConfig(arch="unet", backbone="resnet18", encoder_weights=None),
        train=TrainingOptions(epochs=5, batch_size=8, lr=2e-3),
    )
    summary = sm.train(config, "runs/shapes")  # run folder: config.json, history, curves, best.keras, ...

Modules: `config` (the typed configuration and its config.json form), `model` (the model, loss, metrics and
optimizer of a run), `loop` (`train`: data, callbacks, checkpoints, resume, the run folder's files).
"""

from __future__ import annotations

from .config import BN_BATCHES, DataConfig, ModelConfig, TrainConfig, TrainingOptions
from .loop import check_crop, finish_run, init_input_normalization, input_statistics, set_determinism, train
from .model import build_model, compile_for_training, get_loss, get_metrics, learning_rate_schedule, make_optimizer

__all__ = [
    "BN_BATCHES",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "TrainingOptions",
    "train",
    "build_model",
    "compile_for_training",
    "get_loss",
    "get_metrics",
    "learning_rate_schedule",
    "make_optimizer",
    "check_crop",
    "finish_run",
    "init_input_normalization",
    "input_statistics",
    "set_determinism",
]
