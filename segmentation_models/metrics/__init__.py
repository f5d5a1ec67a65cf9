"""Segmentation metrics: 1.0.1's IOUScore, FScore, Precision, Recall as stateful Keras metrics.

They accumulate true/false positives/negatives per class over everything passed to ``update_state`` (a whole
``model.evaluate`` or epoch), so ``result()`` is the score of the data set, not a mean of per-batch scores
(1.0.1's value). ``per_image=True`` gives the mean of per-image scores over the data set. Per-class values are
available from :meth:`result_per_class` after evaluation.

Calling a metric object directly, ``iou_score(y_true, y_pred)``, returns the 1.0.1 value of that batch and leaves
the state untouched (Keras' ``compile``/``fit``/``evaluate`` use ``update_state``/``result``).

SMP-style counts and reductions: :func:`get_stats` and :func:`score_from_stats`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from . import functional as F
from .base import Catalog, Metric, SegmentationOptions, config_value
from .functional import SMOOTH, Tensor, get_stats, score_from_stats

register = keras.saving.register_keras_serializable(package="segmentation_models")


class ConfusionMetric(SegmentationOptions, Metric):
    """Accumulates per-class tp, fp, fn, tn (and per-image scores when ``per_image``) of the region score
    ``metric`` (a key of :func:`segmentation_models.metrics.functional.fraction`).

    State variables are created on the first ``update_state`` (when the number of classes is known; Keras does
    this while building the compiled model).
    """

    default_name = "confusion"
    metric: str

    def __init__(
        self,
        class_weights: object = None,
        class_indexes: object = None,
        threshold: float | None = None,
        per_image: bool = False,
        smooth: float = SMOOTH,
        name: str | None = None,
        *,
        mode: str | None = None,
        from_logits: bool = False,
        ignore_index: float | None = None,
        dtype: str | None = None,
    ) -> None:
        self._set_options(mode, from_logits, ignore_index)
        super().__init__(name=name or self.default_name, dtype=dtype)
        self._set_region_options(class_weights, class_indexes, per_image, smooth, threshold)
        self.threshold = threshold
        self._num_classes = None
        self._weights = 1.0

    # -- the score --------------------------------------------------------------------------------------
    def _score_params(self) -> dict:
        return {}

    def score(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        """Per-class score from (soft) counts."""
        return F.smoothed_score(self.metric, tp, fp, fn, self.smooth, **self._score_params())

    def functional(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        """1.0.1's value on one batch."""
        return F.region_score(self.metric, **self._score_params())(
            y_true,
            y_pred,
            class_weights=self.class_weights,
            class_indexes=self.class_indexes,
            smooth=self.smooth,
            per_image=self.per_image,
            threshold=self.threshold,
            **self._options(),
        )

    # -- state -------------------------------------------------------------------------------------------
    def _build_state(self, classes: int) -> None:
        if self._num_classes is not None:  # reused with another number of classes (e.g. a module-level alias)
            self._variables.clear()
        self._num_classes = classes
        zeros = keras.initializers.Zeros()
        self.true_positives = self.add_variable((classes,), zeros, dtype="float32", name="true_positives")
        self.false_positives = self.add_variable((classes,), zeros, dtype="float32", name="false_positives")
        self.false_negatives = self.add_variable((classes,), zeros, dtype="float32", name="false_negatives")
        self.true_negatives = self.add_variable((classes,), zeros, dtype="float32", name="true_negatives")
        if self.per_image:
            self.image_score_sum = self.add_variable((classes,), zeros, dtype="float32", name="image_score_sum")
            self.image_count = self.add_variable((), zeros, dtype="float32", name="image_count")

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> None:
        """Add the counts of one batch. ``sample_weight``: per image (B,) or per pixel (B, H, W)."""
        try:
            p = F.prepare(
                y_true, y_pred, class_indexes=self.class_indexes, sample_weight=sample_weight, **self._options()
            )
        except ValueError as error:
            raise ValueError(f"{self.name}: {error}") from None
        classes = p.gt.shape[-1]
        self._weights = F.class_weights_for(p, self.class_weights, self.class_indexes)
        if self._num_classes != classes:
            self._build_state(classes)
        valid = p.valid
        tp, fp, fn = F.confusion(p, per_image=True, threshold=self.threshold)  # (B, C), weighted by valid
        axes = list(range(1, len(p.pr.shape) - 1))
        ones = ops.ones_like(p.pr) if valid is None else ops.ones_like(p.pr) * valid
        tn = ops.sum(ones, axis=axes) - tp - fp - fn
        self.true_positives.assign_add(ops.sum(tp, axis=0))
        self.false_positives.assign_add(ops.sum(fp, axis=0))
        self.false_negatives.assign_add(ops.sum(fn, axis=0))
        self.true_negatives.assign_add(ops.sum(tn, axis=0))
        if self.per_image:
            self.image_score_sum.assign_add(ops.sum(self.score(tp, fp, fn), axis=0))
            self.image_count.assign_add(ops.cast(ops.shape(tp)[0], "float32"))

    def result_per_class(self) -> Tensor:
        """Score of each (selected) class over everything seen since the last reset."""
        if self._num_classes is None:
            return ops.zeros((0,), "float32")
        if self.per_image:
            return self.image_score_sum / ops.maximum(self.image_count, 1.0)
        return self.score(self.true_positives, self.false_positives, self.false_negatives)

    def result(self) -> Tensor:
        if self._num_classes is None:
            return ops.convert_to_tensor(0.0, "float32")
        return F.average(self.result_per_class(), False, self._weights)

    def __call__(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """1.0.1 behaviour: the score of this batch alone; the accumulated state is not touched."""
        return self.functional(y_true, y_pred)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "class_weights": config_value(self.class_weights),
            "class_indexes": config_value(self.class_indexes),
            "threshold": self.threshold,
            "per_image": self.per_image,
            "smooth": self.smooth,
            **self._options(),
        }


@register
class IOUScore(ConfusionMetric):
    r"""Jaccard index / IoU :math:`(tp + s) / (tp + fp + fn + s)` of the data set (see the module doc).

    Args (1.0.1): class_weights, class_indexes, threshold (predictions ``> threshold`` count as positive;
    None: soft counts), per_image, smooth, name. New: mode, from_logits, ignore_index.
    """

    default_name = "iou_score"
    metric = "iou"


@register
class FScore(ConfusionMetric):
    r"""F-beta score :math:`((1+\beta^2) tp + s) / ((1+\beta^2) tp + \beta^2 fn + fp + s)`; name ``f{beta}-score``."""

    metric = "fscore"

    def __init__(self, beta: float = 1, *args: Any, **kwargs: Any) -> None:
        self.beta = beta
        super().__init__(*args, **kwargs)

    @property
    def default_name(self) -> str:
        return f"f{self.beta}-score"

    def _score_params(self) -> dict:
        return {"beta": self.beta}

    def get_config(self) -> dict:
        return {**super().get_config(), "beta": self.beta}


@register
class Precision(ConfusionMetric):
    r"""Precision :math:`(tp + s) / (tp + fp + s)` of the data set."""

    default_name = "precision"
    metric = "precision"


@register
class Recall(ConfusionMetric):
    r"""Recall :math:`(tp + s) / (tp + fn + s)` of the data set."""

    default_name = "recall"
    metric = "recall"


# 1.0.1 aliases
INSTANCES = {
    "iou_score": IOUScore(),
    "f1_score": FScore(beta=1),
    "f2_score": FScore(beta=2),
    "precision": Precision(),
    "recall": Recall(),
}
iou_score, f1_score, f2_score, precision, recall = INSTANCES.values()
CLASSES = {cls.__name__: cls for cls in (IOUScore, FScore, Precision, Recall)}


_CATALOG = Catalog("metric", INSTANCES, CLASSES, keras.metrics.get)
get = _CATALOG.get  # e.g. get("iou_score"), get("f1-score"), get("IOUScore"), get("accuracy")
available = _CATALOG.available

__all__ = [
    "Metric",
    "ConfusionMetric",
    "get",
    "available",
    "get_stats",
    "score_from_stats",
    "SMOOTH",
    *CLASSES,
    *INSTANCES,
]
