"""Base classes and the functional math of the losses and metrics (1.0.1's ``segmentation_models.base``)."""

from . import functional
from .objects import KerasObject, Loss, Metric, MultipliedLoss, SumOfLosses

__all__ = ["KerasObject", "Loss", "Metric", "MultipliedLoss", "SumOfLosses", "functional"]
