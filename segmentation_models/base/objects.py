"""1.0.1's import path of the loss and metric bases: they live in :mod:`segmentation_models.losses.base` and
:mod:`segmentation_models.metrics.base`."""

from ..losses.base import Loss, MultipliedLoss, SumOfLosses
from ..metrics.base import KerasObject, Metric

__all__ = ["KerasObject", "Loss", "Metric", "MultipliedLoss", "SumOfLosses"]
