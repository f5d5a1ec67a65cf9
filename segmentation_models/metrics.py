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

import keras
from keras import ops

from ._objects_util import check_common, config_value, copy_object, lookup
from .base import Metric, functional as F
from .base.functional import SMOOTH, get_stats, score_from_stats

_PACKAGE = "segmentation_models"
register = keras.saving.register_keras_serializable(package=_PACKAGE)


class ConfusionMetric(Metric):
    """Accumulates per-class tp, fp, fn, tn (and per-image scores when ``per_image``); subclasses give the score.

    State variables are created on the first ``update_state`` (when the number of classes is known; Keras does
    this while building the compiled model).
    """

    default_name = "confusion"

    def __init__(
        self,
        class_weights=None,
        class_indexes=None,
        threshold=None,
        per_image=False,
        smooth=SMOOTH,
        name=None,
        *,
        mode=None,
        from_logits=False,
        ignore_index=None,
        dtype=None,
    ):
        check_common(
            type(self).__name__,
            mode=mode,
            class_indexes=class_indexes,
            class_weights=class_weights,
            smooth=smooth,
            per_image=per_image,
            threshold=threshold,
        )
        super().__init__(name=name or self.default_name, dtype=dtype)
        self.class_weights = class_weights if class_weights is not None else 1
        self.class_indexes = class_indexes
        self.threshold = threshold
        self.per_image = per_image
        self.smooth = smooth
        self.mode = mode
        self.from_logits = bool(from_logits)
        self.ignore_index = ignore_index
        self._num_classes = None
        self._weights = 1.0

    # -- the score --------------------------------------------------------------------------------------
    def score(self, tp, fp, fn):
        """Per-class score from (soft) counts."""
        raise NotImplementedError

    def functional(self, y_true, y_pred):
        """1.0.1's value on one batch."""
        raise NotImplementedError

    def _options(self) -> dict:
        return {"mode": self.mode, "from_logits": self.from_logits, "ignore_index": self.ignore_index}

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

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add the counts of one batch. ``sample_weight``: per image (B,) or per pixel (B, H, W)."""
        try:
            p = F.prepare(
                y_true, y_pred, class_indexes=self.class_indexes, sample_weight=sample_weight, **self._options()
            )
        except ValueError as error:
            raise ValueError(f"{self.name}: {error}") from None
        classes = p.gt.shape[-1]
        self._weights = F.check_class_weights(self.class_weights, classes, p.pred_shape, self.class_indexes)
        if self._num_classes != classes:
            self._build_state(classes)
        valid = p.valid
        tp, fp, fn = F._confusion(p, per_image=True, threshold=self.threshold)  # (B, C), weighted by valid
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

    def result_per_class(self):
        """Score of each (selected) class over everything seen since the last reset."""
        if self._num_classes is None:
            return ops.zeros((0,), "float32")
        if self.per_image:
            return self.image_score_sum / ops.maximum(self.image_count, 1.0)
        return self.score(self.true_positives, self.false_positives, self.false_negatives)

    def result(self):
        if self._num_classes is None:
            return ops.convert_to_tensor(0.0, "float32")
        return F.average(self.result_per_class(), False, self._weights)

    def __call__(self, y_true, y_pred, sample_weight=None):
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

    def _functional_kwargs(self) -> dict:
        return dict(
            class_weights=self.class_weights,
            class_indexes=self.class_indexes,
            smooth=self.smooth,
            per_image=self.per_image,
            threshold=self.threshold,
            **self._options(),
        )


@register
class IOUScore(ConfusionMetric):
    r"""Jaccard index / IoU :math:`(tp + s) / (tp + fp + fn + s)` of the data set (see the module doc).

    Args (1.0.1): class_weights, class_indexes, threshold (predictions ``> threshold`` count as positive;
    None: soft counts), per_image, smooth, name. New: mode, from_logits, ignore_index.
    """

    default_name = "iou_score"

    def score(self, tp, fp, fn):
        return (tp + self.smooth) / (tp + fp + fn + self.smooth)

    def functional(self, y_true, y_pred):
        return F.iou_score(y_true, y_pred, **self._functional_kwargs())


@register
class FScore(ConfusionMetric):
    r"""F-beta score :math:`((1+\beta^2) tp + s) / ((1+\beta^2) tp + \beta^2 fn + fp + s)`; name ``f{beta}-score``."""

    def __init__(
        self,
        beta=1,
        class_weights=None,
        class_indexes=None,
        threshold=None,
        per_image=False,
        smooth=SMOOTH,
        name=None,
        **kwargs,
    ):
        super().__init__(class_weights, class_indexes, threshold, per_image, smooth, name or f"f{beta}-score", **kwargs)
        self.beta = beta

    def score(self, tp, fp, fn):
        b2 = self.beta**2
        return ((1 + b2) * tp + self.smooth) / ((1 + b2) * tp + b2 * fn + fp + self.smooth)

    def functional(self, y_true, y_pred):
        return F.f_score(y_true, y_pred, beta=self.beta, **self._functional_kwargs())

    def get_config(self) -> dict:
        return {**super().get_config(), "beta": self.beta}


@register
class Precision(ConfusionMetric):
    r"""Precision :math:`(tp + s) / (tp + fp + s)` of the data set."""

    default_name = "precision"

    def score(self, tp, fp, fn):
        return (tp + self.smooth) / (tp + fp + self.smooth)

    def functional(self, y_true, y_pred):
        return F.precision(y_true, y_pred, **self._functional_kwargs())


@register
class Recall(ConfusionMetric):
    r"""Recall :math:`(tp + s) / (tp + fn + s)` of the data set."""

    default_name = "recall"

    def score(self, tp, fp, fn):
        return (tp + self.smooth) / (tp + fn + self.smooth)

    def functional(self, y_true, y_pred):
        return F.recall(y_true, y_pred, **self._functional_kwargs())


# 1.0.1 aliases
iou_score = IOUScore()
f1_score = FScore(beta=1)
f2_score = FScore(beta=2)
precision = Precision()
recall = Recall()

INSTANCES = {
    "iou_score": iou_score,
    "f1_score": f1_score,
    "f2_score": f2_score,
    "precision": precision,
    "recall": recall,
}
CLASSES = {cls.__name__: cls for cls in (IOUScore, FScore, Precision, Recall)}


def _table() -> dict:
    table = {name: (lambda obj=obj: copy_object(obj)) for name, obj in INSTANCES.items()}
    for obj in INSTANCES.values():  # object names: "f1-score", "f2-score"
        table.setdefault(obj.name, lambda obj=obj: copy_object(obj))
    table.update(CLASSES)
    return table


def get(identifier):
    """A fresh metric from a name or object: 1.0.1 instance names (``"iou_score"``, ``"f1_score"``), object
    names (``"f1-score"``), class names (``"IOUScore"``, default arguments), then Keras' own metrics
    (``"accuracy"``). Unknown names raise ValueError with close suggestions."""
    return lookup("metric", identifier, _table(), keras.metrics.get)


def available() -> list[str]:
    """Names accepted by :func:`get` (besides Keras' own)."""
    return sorted(_table())


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
