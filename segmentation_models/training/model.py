"""The model of a training run and what it is compiled with: `build_model`, the loss and metrics by name
(`get_loss`, `get_metrics`), the learning-rate schedule and optimizer, `compile_for_training`.

The functions take the configuration's sections (`ModelConfig`, `TrainingOptions`) or the same sections as dicts
(a run folder's config.json); options missing from a dict take their defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .config import ModelConfig, TrainingOptions

if TYPE_CHECKING:
    import keras

__all__ = [
    "build_model",
    "get_loss",
    "get_metrics",
    "learning_rate_schedule",
    "make_optimizer",
    "compile_for_training",
]


def _section(cfg: Mapping | ModelConfig | TrainingOptions) -> Mapping:
    """A configuration section as a mapping (a dataclass's fields, or the dict itself)."""
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg


def get_loss(name: str) -> keras.losses.Loss:
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


def _pixel_mean_keras_loss(name: str, loss: Any) -> keras.losses.Loss:
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


def get_metrics(names: Sequence[str], num_classes: int) -> list:
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


def learning_rate_schedule(
    cfg: TrainingOptions | Mapping, steps_per_epoch: int
) -> keras.optimizers.schedules.LearningRateSchedule | float:
    """The learning rate of a training config: a Keras schedule over all steps (cosine with optional warm-up,
    poly), or a float (constant). The optimizer update number ``n`` (0-based) uses ``schedule(n)``."""
    import keras

    cfg = _section(cfg)

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


def make_optimizer(cfg: TrainingOptions | Mapping, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer of a training config (Adam, AdamW or SGD with Nesterov momentum 0.9) on its schedule."""
    import keras

    cfg = _section(cfg)

    schedule = learning_rate_schedule(cfg, steps_per_epoch)
    wd = cfg.get("weight_decay")
    if cfg["optimizer"] == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=wd if wd is not None else 1e-4)
    if cfg["optimizer"] == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=wd)
    return keras.optimizers.Adam(schedule, weight_decay=wd)


def compile_for_training(
    model: keras.Model, cfg: TrainingOptions | Mapping, steps_per_epoch: int, num_classes: int
) -> None:
    """Compile ``model`` with the training config's optimizer, loss and metrics. The metrics are weighted: the
    loader's pixel weights (0 at void and padding) reach them (Keras passes sample weights only to
    ``weighted_metrics``; plain ``metrics`` would count those pixels as class 0)."""
    cfg = _section(cfg)
    model.compile(
        make_optimizer(cfg, steps_per_epoch),
        loss=get_loss(cfg["loss"]),
        weighted_metrics=get_metrics(cfg["metrics"], num_classes),
    )


def build_model(model_cfg: ModelConfig | Mapping, num_classes: int) -> keras.Model:
    """The run's model: ``create_model`` with its architecture, backbone, encoder weights and options, for RGB
    images of any size and ``num_classes`` softmax outputs. A builder argument it does not take is a ValueError
    naming the options given."""
    from ..factory import create_model

    model_cfg = _section(model_cfg)

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
