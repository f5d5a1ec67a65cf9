"""1.0.1's loss bases: a Keras 3 loss that keeps 1.0.1's names and operators.

``Loss`` subclasses combine like in 1.0.1: ``loss_a + loss_b`` is a :class:`SumOfLosses` named
``"{a}_plus_{b}"`` and ``0.5 * loss`` a :class:`MultipliedLoss` named ``"0.5{name}"``. Both are registered,
serialisable Keras losses, so a model compiled with them saves to ``.keras`` and reloads compiled.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import threading

import keras

from ..metrics.base import KerasObject
from ..metrics.functional import Tensor

_PACKAGE = "segmentation_models"

try:  # Keras' scaling of a replica's loss (1 / replicas under a tf.distribute strategy, else nothing)
    from keras.src.losses.loss import (
        scale_loss_for_distribution as _scale_for_replicas,
        unscale_loss_for_distribution as _unscale_for_replicas,
    )
except ImportError:  # pragma: no cover - a Keras without it has no such scaling to match

    def _scale_for_replicas(value: Tensor) -> Tensor:
        return value

    _unscale_for_replicas = _scale_for_replicas

_AVERAGING = ("sum_over_batch_size", "mean", "mean_with_sample_weight")  # the reductions Keras divides
_NESTING = threading.local()  # .depth: package losses being called on this thread (a sum calls its parts)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Loss(KerasObject, keras.losses.Loss):
    """Base loss: a Keras loss that supports ``+`` with another ``Loss`` and ``*`` with a number.

    Subclasses implement ``call(y_true, y_pred)`` returning a scalar. A subclass whose ``call`` also takes
    ``sample_weight`` (all the package's losses) gets Keras' ``sample_weight`` there: per-pixel weights act
    inside the loss (weight-0 pixels are left out of its sums and means) and the returned scalar is not weighted
    again. Without that parameter Keras weights the returned value as usual (the scalar times ``mean(w)``).
    """

    def __call__(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        # Under tf.distribute each replica's loss must be divided by the replicas (their gradients are summed):
        # the outermost package loss divides once, the parts of a sum do not. Keras' reduction divides only what it
        # averages itself: a ``call`` returns a scalar, which Keras averages only when it weights it.
        outermost = getattr(_NESTING, "depth", 0) == 0
        _NESTING.depth = getattr(_NESTING, "depth", 0) + 1
        try:
            if sample_weight is None or not _call_takes_sample_weight(type(self)):
                value = super().__call__(y_true, y_pred, sample_weight=sample_weight)
                divided = sample_weight is not None and self.reduction in _AVERAGING
            else:
                with keras.name_scope(self.name):
                    y_true = keras.ops.convert_to_tensor(y_true, dtype=self.dtype)
                    y_pred = keras.ops.convert_to_tensor(y_pred, dtype=self.dtype)
                    # a scalar: every Keras reduction ("sum_over_batch_size", "sum", "mean_with_sample_weight",
                    # None) leaves it as it is
                    value = keras.ops.cast(self.call(y_true, y_pred, sample_weight=sample_weight), self.dtype)
                divided = False
            if outermost and not divided:
                return _scale_for_replicas(value)
            return _unscale_for_replicas(value) if divided and not outermost else value
        finally:
            _NESTING.depth -= 1

    def __add__(self, other: Loss) -> SumOfLosses:
        if isinstance(other, Loss):
            return SumOfLosses(self, other)
        raise ValueError(
            f"Only segmentation_models losses (subclasses of segmentation_models.losses.Loss) can be added to "
            f"{self.name!r}; got {type(other).__name__}."
        )

    def __radd__(self, other: Loss | int) -> Loss:
        if isinstance(other, numbers.Number) and other == 0:  # lets sum([loss_a, loss_b]) work
            return self
        return self.__add__(other)

    def __mul__(self, value: float) -> MultipliedLoss:
        if isinstance(value, numbers.Number) and not isinstance(value, bool):
            return MultipliedLoss(self, value)
        raise ValueError(f"A loss can only be multiplied by a number; got {type(value).__name__}.")

    def __rmul__(self, other: float) -> MultipliedLoss:
        return self.__mul__(other)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MultipliedLoss(Loss):
    """``multiplier * loss``; named like 1.0.1 (``"0.5dice_loss"``)."""

    def __init__(self, loss: Loss | dict, multiplier: float, name: str | None = None, **kwargs: object) -> None:
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        if name is None:
            base = loss.name
            name = f"{multiplier}({base})" if len(base.split("+")) > 1 else f"{multiplier}{base}"
        super().__init__(name=name, **kwargs)
        self.loss = loss
        self.multiplier = multiplier

    def call(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        return self.multiplier * self.loss(y_true, y_pred, sample_weight=sample_weight)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "loss": keras.saving.serialize_keras_object(self.loss),
            "multiplier": self.multiplier,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SumOfLosses(Loss):
    """``l1 + l2``; named like 1.0.1 (``"binary_crossentropy_plus_jaccard_loss"``)."""

    def __init__(self, l1: Loss | dict, l2: Loss | dict, name: str | None = None, **kwargs: object) -> None:
        if isinstance(l1, dict):
            l1 = keras.saving.deserialize_keras_object(l1)
        if isinstance(l2, dict):
            l2 = keras.saving.deserialize_keras_object(l2)
        super().__init__(name=name or f"{l1.name}_plus_{l2.name}", **kwargs)
        self.l1 = l1
        self.l2 = l2

    def call(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        return self.l1(y_true, y_pred, sample_weight=sample_weight) + self.l2(
            y_true, y_pred, sample_weight=sample_weight
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "l1": keras.saving.serialize_keras_object(self.l1),
            "l2": keras.saving.serialize_keras_object(self.l2),
        }


@functools.cache
def _call_takes_sample_weight(cls: type) -> bool:
    return "sample_weight" in inspect.signature(cls.call).parameters
