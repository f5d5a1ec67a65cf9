"""1.0.1's import paths ``segmentation_models.base``, ``.base.functional`` and ``.base.objects``: re-exports of
:mod:`segmentation_models.losses` and :mod:`segmentation_models.metrics`."""

from . import functional
from .objects import KerasObject, Loss, Metric, MultipliedLoss, SumOfLosses

__all__ = ["KerasObject", "Loss", "Metric", "MultipliedLoss", "SumOfLosses", "functional"]
