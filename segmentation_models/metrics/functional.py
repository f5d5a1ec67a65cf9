"""The math of the metrics, as plain functions on tensors (any Keras backend), and the input handling and soft
counts that :mod:`segmentation_models.losses.functional` builds on.

The 1.0.1 functions keep their signatures (``iou_score(gt, pr, class_weights=1., class_indexes=None,
smooth=1e-5, per_image=False, threshold=None)`` ...); their ``backend`` keyword argument is accepted and
ignored. New keyword-only options, shared by every function here and in the losses:

* ``mode``: ``'binary'`` (one sigmoid channel), ``'multilabel'`` (independent sigmoid channels) or
  ``'multiclass'`` (softmax over channels). ``None`` infers it: one channel -> binary, several -> multiclass
  (multilabel for the binary losses). The mode decides the activation ``from_logits`` applies and whether a
  one-channel ``y_true`` is an integer class mask.
* ``from_logits``: ``y_pred`` holds logits; sigmoid/softmax is applied here (cross-entropies use the stable
  log-space form).
* ``ignore_index``: a label value whose pixels are left out of every sum and mean. For integer masks, pixels
  with that label; for dense targets, elements equal to it (multiclass: pixels where any channel equals it).
* ``sample_weight``: weights of shape ``(B, H, W)`` or ``(B, H, W, 1)`` (per pixel), ``(B,)`` (per image,
  broadcast over its pixels) or ``y_pred``'s shape (per element; not for Lovasz-softmax). Weight-0 pixels are
  left out of every sum and mean exactly like ``ignore_index`` pixels (their targets count as zero); other
  weights weigh the pixels in the cross-entropy/focal means (``sum(w * loss) / sum(w)``) and in the soft
  tp/fp/fn sums of the region scores. The Lovasz losses use them as a mask (weight > 0).

``y_true`` may be dense (same shape as ``y_pred``: one-hot, multilabel or soft labels) or an integer class mask
of shape ``(B, H, W)`` or ``(B, H, W, 1)`` (multiclass mode). Tensors are channels-last; under
``keras.config.image_data_format() == 'channels_first'`` they are ``(B, C, H, W)``. Low-precision inputs
(float16/bfloat16) are computed in float32.

Also here: SMP-style :func:`get_stats` (per-image, per-class tp/fp/fn/tn counts) and
:func:`score_from_stats` with the reductions ``micro``, ``macro``, ``weighted``, ``micro-imagewise``,
``macro-imagewise``, ``weighted-imagewise`` and ``none``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import ops

from ..validation import MODES, check_class_indexes, check_class_weights, check_no_extra_kwargs

Tensor = Any  # a backend tensor, a NumPy array or anything ``keras.ops.convert_to_tensor`` accepts

SMOOTH = 1e-5
EPSILON = 1e-7
REDUCTIONS = ("micro", "macro", "weighted", "micro-imagewise", "macro-imagewise", "weighted-imagewise", "none")
STAT_SCORES = ("iou", "fscore", "precision", "recall", "accuracy", "specificity", "balanced_accuracy")


# ----------------------------------------------------------------------------------------------------------
#   Input handling
# ----------------------------------------------------------------------------------------------------------


class Prepared(NamedTuple):
    """Targets and predictions brought to one channels-last form."""

    gt: object  # dense targets (B, ..., C'), zero where ignored
    pr: object  # probabilities (B, ..., C')
    valid: object  # None, or weights (0: ignored) broadcastable to gt: (B, ..., 1) or (B, ..., C')
    logits: object  # None unless from_logits
    mode: str
    pred_shape: tuple  # y_pred's shape as given (for error messages)


def _float32(x):
    x = ops.convert_to_tensor(x)
    if keras.backend.standardize_dtype(x.dtype) != "float32":
        x = ops.cast(x, "float32")
    return x


def _shape(x) -> tuple:
    return tuple(x.shape)


def resolve_mode(mode: str | None, classes: int, default_multi: str = "multiclass") -> str:
    """``mode`` checked, or inferred from the number of channels when ``None``."""
    if mode is None:
        return "binary" if classes == 1 else default_multi
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} or None; got {mode!r}")
    if mode == "binary" and classes != 1:
        raise ValueError(
            f"mode='binary' needs y_pred with 1 channel; got {classes} channels. Use mode='multilabel' or 'multiclass'."
        )
    return mode


def pixel_weights(sample_weight: Tensor, pred_shape: tuple) -> Tensor:
    """``sample_weight`` as float32 channels-last weights broadcastable to ``y_pred``: (B, ..., 1) or (B, ..., C).

    Accepts per-image (B,), per-pixel (B, H, W) / (B, H, W, 1) and per-element (``y_pred``'s shape) weights;
    ``pred_shape`` is ``y_pred``'s shape as given (channels-first under that image data format).
    """
    w = _float32(sample_weight)
    given, rank = _shape(w), len(pred_shape)
    channels_first = keras.config.image_data_format() == "channels_first"
    pred = tuple(pred_shape[:1]) + tuple(pred_shape[2:]) + tuple(pred_shape[1:2]) if channels_first else pred_shape
    if len(given) == 1:
        w = ops.reshape(w, (-1,) + (1,) * (rank - 1))
    elif len(given) == rank - 1:
        w = ops.expand_dims(w, -1)
    elif len(given) == rank:
        if channels_first:
            w = ops.moveaxis(w, 1, -1)
    else:
        w = None
    ok = (
        w is not None
        and w.shape[-1] in (1, pred[-1], None)
        and all(a is None or b is None or a in (1, b) for a, b in zip(w.shape[:-1], pred[:-1]))
    )
    if not ok:
        raise ValueError(
            f"sample_weight with shape {given} does not fit y_pred with shape {tuple(pred_shape)}: "
            f"give per-pixel weights (B, H, W) or (B, H, W, 1), per-image weights (B,), or one "
            f"weight per element (y_pred's shape)"
        )
    return w


def prepare(
    y_true: Tensor,
    y_pred: Tensor,
    *,
    mode: str | None = None,
    from_logits: bool = False,
    ignore_index: float | None = None,
    class_indexes: object = None,
    default_multi: str = "multiclass",
    sample_weight: Tensor | None = None,
) -> Prepared:
    """Validate shapes, expand integer masks, apply the activation, mask ``ignore_index`` and weight-0 pixels
    of ``sample_weight`` (which joins ``valid``), gather classes."""
    y_pred = _float32(y_pred)
    y_true = _float32(y_true)
    pred_shape, true_shape = _shape(y_pred), _shape(y_true)
    rank = len(pred_shape)
    if rank < 3:
        raise ValueError(f"y_pred must have shape (batch, ..., classes); got shape {pred_shape}")
    if keras.config.image_data_format() == "channels_first":
        y_pred = ops.moveaxis(y_pred, 1, -1)
        if len(true_shape) == rank:
            y_true = ops.moveaxis(y_true, 1, -1)
    classes = y_pred.shape[-1]
    if classes is None:
        raise ValueError(f"the number of classes (last axis of y_pred) must be known; got shape {pred_shape}")
    mode = resolve_mode(mode, classes, default_multi)
    if len(y_true.shape) == rank - 1:
        y_true = ops.expand_dims(y_true, -1)
    if len(y_true.shape) != rank:
        raise ValueError(
            f"y_true with shape {true_shape} does not match y_pred with shape {pred_shape}: expected "
            f"y_true of the same shape, or an integer mask without the class axis"
        )
    for a, b in zip(y_true.shape[:-1], y_pred.shape[:-1]):
        if a is not None and b is not None and a != b:
            raise ValueError(f"y_true shape {true_shape} and y_pred shape {pred_shape} differ in batch/spatial size")
    true_channels = y_true.shape[-1]
    integer_mask = true_channels == 1 and classes > 1
    if integer_mask and mode != "multiclass":
        raise ValueError(
            f"y_true with shape {true_shape} has one channel but y_pred with shape {pred_shape} has "
            f"{classes}: an integer class mask needs mode='multiclass' (mode is {mode!r})"
        )
    if not integer_mask and true_channels is not None and true_channels != classes:
        raise ValueError(
            f"y_true shape {true_shape} does not match y_pred shape {pred_shape}: y_true needs "
            f"{classes} channels (one-hot/multilabel) or none/1 (integer class mask)"
        )

    logits = None
    if from_logits:
        logits = y_pred
        y_pred = ops.softmax(logits, axis=-1) if mode == "multiclass" else ops.sigmoid(logits)

    valid = None
    if integer_mask:
        labels = ops.round(y_true)
        gt = ops.cast(ops.equal(labels, ops.arange(classes, dtype="float32")), "float32")
        if ignore_index is not None:
            valid = ops.cast(ops.not_equal(labels, float(ignore_index)), "float32")
            gt = gt * valid
    else:
        gt = y_true
        if ignore_index is not None:
            keep = ops.not_equal(y_true, float(ignore_index))
            if mode == "multiclass":
                keep = ops.all(keep, axis=-1, keepdims=True)
            valid = ops.cast(keep, "float32")
            gt = ops.where(keep, gt, 0.0)
    if sample_weight is not None:
        weight = pixel_weights(sample_weight, pred_shape)
        valid = weight if valid is None else valid * weight
        gt = ops.where(weight > 0, gt, 0.0)

    idx = check_class_indexes(class_indexes, classes, pred_shape)
    if idx is not None:
        gt, y_pred = ops.take(gt, idx, axis=-1), ops.take(y_pred, idx, axis=-1)
        if logits is not None:
            logits = ops.take(logits, idx, axis=-1)
        if valid is not None and valid.shape[-1] == classes and classes > 1:
            valid = ops.take(valid, idx, axis=-1)
    return Prepared(gt, y_pred, valid, logits, mode, pred_shape)


def _reduce_axes(x, per_image: bool) -> list[int]:
    axes = list(range(1, len(x.shape) - 1))
    return axes if per_image else [0] + axes


def masked_mean(x: Tensor, valid: Tensor | None) -> Tensor:
    """Mean of ``x`` weighted by ``valid`` (0: ignored): ``sum(x * valid) / sum(valid)``, 0 when all are ignored."""
    if valid is None:
        return ops.mean(x)
    total = ops.sum(ops.ones_like(x) * valid)
    return ops.sum(x * valid) / ops.where(total > 0, total, 1.0)


def confusion(p: Prepared, per_image: bool, threshold: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Soft (or thresholded) tp, fp, fn summed over pixels (and over the batch unless ``per_image``)."""
    pr, gt = round_if_needed(p.pr, threshold), p.gt
    axes = _reduce_axes(pr, per_image)
    weight = 1.0 if p.valid is None else p.valid  # each pixel's weight counts once; weight-0 pixels nowhere
    gt = gt * weight
    tp = ops.sum(gt * pr, axis=axes)
    fp = ops.sum(pr * weight, axis=axes) - tp
    fn = ops.sum(gt, axis=axes) - tp
    return tp, fp, fn


# ----------------------------------------------------------------------------------------------------------
#   1.0.1 helpers
# ----------------------------------------------------------------------------------------------------------


def gather_channels(*xs: Tensor, indexes: object = None, **kwargs: Any) -> Sequence[Tensor]:
    """Slice tensors along the channels axis by the given indexes (1.0.1)."""
    check_no_extra_kwargs(kwargs)
    if indexes is None:
        return xs
    if isinstance(indexes, int):
        indexes = [indexes]
    axis = -1 if keras.config.image_data_format() == "channels_last" else 1
    return [ops.take(x, indexes, axis=axis) for x in xs]


def get_reduce_axes(per_image: bool, **kwargs: Any) -> list[int]:
    """Spatial axes (plus the batch axis unless ``per_image``) of a 4D tensor (1.0.1)."""
    check_no_extra_kwargs(kwargs)
    axes = [1, 2] if keras.config.image_data_format() == "channels_last" else [2, 3]
    return axes if per_image else [0] + axes


def round_if_needed(x: Tensor, threshold: float | None, **kwargs: Any) -> Tensor:
    """``x > threshold`` as floats, or ``x`` when ``threshold`` is None (1.0.1)."""
    check_no_extra_kwargs(kwargs)
    if threshold is None:
        return x
    return ops.cast(ops.greater(x, threshold), x.dtype)


def average(x: Tensor, per_image: bool = False, class_weights: object = None, **kwargs: Any) -> Tensor:
    """Mean over images (if ``per_image``), times class weights, mean (1.0.1)."""
    check_no_extra_kwargs(kwargs)
    if per_image:
        x = ops.mean(x, axis=0)
    if class_weights is not None:
        x = x * ops.convert_to_tensor(class_weights, dtype=x.dtype)
    return ops.mean(x)


def prepare_call(
    gt: Tensor, pr: Tensor, class_indexes: object, options: dict, default_multi: str = "multiclass"
) -> Prepared:
    """`prepare` for a functional loss or metric: ``options`` are its keyword-only ``mode``, ``from_logits``,
    ``ignore_index`` and ``sample_weight`` (1.0.1's ``backend`` & co. accepted and ignored)."""
    options = dict(options)
    mode = options.pop("mode", None)
    from_logits = options.pop("from_logits", False)
    ignore_index = options.pop("ignore_index", None)
    sample_weight = options.pop("sample_weight", None)
    check_no_extra_kwargs(options)
    return prepare(
        gt,
        pr,
        mode=mode,
        from_logits=from_logits,
        ignore_index=ignore_index,
        class_indexes=class_indexes,
        default_multi=default_multi,
        sample_weight=sample_weight,
    )


def class_weights_for(p: Prepared, class_weights: object, class_indexes: object) -> float | np.ndarray:
    """`check_class_weights` against the classes of ``p``."""
    return check_class_weights(class_weights, p.gt.shape[-1], p.pred_shape, class_indexes)


# ----------------------------------------------------------------------------------------------------------
#   Region scores (1.0.1 signatures)
# ----------------------------------------------------------------------------------------------------------


def fraction(
    metric: str, tp: Tensor, fp: Tensor, fn: Tensor, tn: Tensor = 0, beta: float = 1.0, alpha: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Numerator and denominator of the score ``metric`` of counts: the one place of these formulas."""
    if metric == "iou":
        return tp, tp + fp + fn
    if metric == "fscore":
        b2 = beta**2
        return (1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp
    if metric == "precision":
        return tp, tp + fp
    if metric == "recall":
        return tp, tp + fn
    if metric == "tversky":
        return tp, tp + alpha * fp + beta * fn
    if metric == "accuracy":
        return tp + tn, tp + fp + fn + tn
    if metric == "specificity":
        return tn, tn + fp
    raise ValueError(f"metric must be one of {STAT_SCORES}; got {metric!r}")


def smoothed_score(metric: str, tp: Tensor, fp: Tensor, fn: Tensor, smooth: float, **params: float) -> Tensor:
    """``(numerator + smooth) / (denominator + smooth)`` of `fraction` (the losses' and metrics' form)."""
    num, den = fraction(metric, tp, fp, fn, **params)
    return (num + smooth) / (den + smooth)


def region_score(
    metric: str, name: str | None = None, doc: str | None = None, **params: float
) -> Callable[..., Tensor]:
    """The functional form of the score ``metric`` with ``params`` (``beta``, ``alpha``), 1.0.1's signature."""

    def score(
        gt: Tensor,
        pr: Tensor,
        class_weights: object = 1.0,
        class_indexes: object = None,
        smooth: float = SMOOTH,
        per_image: bool = False,
        threshold: float | None = None,
        **options: Any,
    ) -> Tensor:
        p = prepare_call(gt, pr, class_indexes, options)
        w = class_weights_for(p, class_weights, class_indexes)
        tp, fp, fn = confusion(p, per_image, threshold)
        return average(smoothed_score(metric, tp, fp, fn, smooth, **params), per_image, w)

    score.__name__ = score.__qualname__ = name or metric
    score.__doc__ = doc
    return score


iou_score = region_score(
    "iou",
    "iou_score",
    r"""Jaccard index :math:`(tp + s) / (tp + fp + fn + s)` per class, averaged like 1.0.1 (see module doc).""",
)
precision = region_score("precision", "precision", r"""Precision :math:`(tp + s) / (tp + fp + s)`.""")
recall = region_score("recall", "recall", r"""Recall :math:`(tp + s) / (tp + fn + s)`.""")


def f_score(gt: Tensor, pr: Tensor, beta: float = 1, *args: Any, **kwargs: Any) -> Tensor:
    r"""F-beta (Dice for beta=1): :math:`((1+b^2) tp + s) / ((1+b^2) tp + b^2 fn + fp + s)`; the other
    arguments are :func:`iou_score`'s."""
    return region_score("fscore", "f_score", beta=beta)(gt, pr, *args, **kwargs)


def tversky_score(gt: Tensor, pr: Tensor, alpha: float = 0.5, beta: float = 0.5, *args: Any, **kwargs: Any) -> Tensor:
    r"""Tversky index :math:`(tp + s) / (tp + \alpha fp + \beta fn + s)` (alpha = beta = 0.5 is Dice); the other
    arguments are :func:`iou_score`'s."""
    return region_score("tversky", "tversky_score", alpha=alpha, beta=beta)(gt, pr, *args, **kwargs)


# ----------------------------------------------------------------------------------------------------------
#   SMP-style statistics and reductions
# ----------------------------------------------------------------------------------------------------------


def get_stats(
    output: Tensor,
    target: Tensor,
    mode: str,
    ignore_index: float | None = None,
    threshold: float | None = None,
    num_classes: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """True/false positives/negatives per image and class, as SMP's ``get_stats`` (channels-last).

    Args:
        output: ``'binary'``/``'multilabel'``: (B, H, W, C) scores (thresholded with ``threshold``) or 0/1;
            ``'multiclass'``: (B, H, W) integer labels (``num_classes`` needed) or (B, H, W, C) scores (argmax).
        target: same shape as a binary/multilabel ``output``; multiclass: integer labels (B, H, W) or
            (B, H, W, 1), or one-hot (B, H, W, C).
        mode: ``'binary'``, ``'multilabel'`` or ``'multiclass'``.
        ignore_index: label whose pixels (multiclass) / elements (binary, multilabel) are left out.
        threshold: binarisation threshold (``>=``, as SMP) for float binary/multilabel outputs.
        num_classes: number of classes, for multiclass label outputs.

    Returns:
        ``(tp, fp, fn, tn)``, int32 tensors of shape (B, C).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    output = ops.convert_to_tensor(output)
    target = _float32(target)
    out_float = keras.backend.standardize_dtype(output.dtype).startswith(("float", "bfloat"))
    output = _float32(output)
    if mode == "multiclass":
        if threshold is not None:
            raise ValueError("threshold is not used in 'multiclass' mode (the predicted class is the argmax)")
        if out_float:  # scores (B, ..., C): the predicted class is the argmax
            classes = output.shape[-1]
            labels_out = ops.cast(ops.argmax(output, axis=-1), "float32")
        else:  # integer labels (B, ...) or (B, ..., 1)
            if num_classes is None:
                raise ValueError("num_classes is needed in 'multiclass' mode when output holds integer labels")
            classes = int(num_classes)
            labels_out = output[..., 0] if len(output.shape) == 4 and output.shape[-1] == 1 else output
        if num_classes is not None and int(num_classes) != classes:
            raise ValueError(f"num_classes={num_classes} but output with shape {tuple(output.shape)} has {classes}")
        if len(target.shape) == len(labels_out.shape) + 1:
            if target.shape[-1] == 1:
                target = target[..., 0]
            elif target.shape[-1] == classes:
                target = ops.cast(ops.argmax(target, axis=-1), "float32")
            else:
                raise ValueError(
                    f"target shape {tuple(target.shape)} does not match output shape "
                    f"{tuple(output.shape)} ({classes} classes)"
                )
        if tuple(target.shape) != tuple(labels_out.shape):
            raise ValueError(f"target shape {tuple(target.shape)} does not match output shape {tuple(output.shape)}")
        class_ids = ops.arange(classes, dtype="float32")
        out_oh = ops.cast(ops.equal(ops.expand_dims(labels_out, -1), class_ids), "float32")
        tgt_oh = ops.cast(ops.equal(ops.expand_dims(ops.round(target), -1), class_ids), "float32")
        valid = (
            ops.ones_like(out_oh[..., :1])
            if ignore_index is None
            else ops.expand_dims(ops.cast(ops.not_equal(target, float(ignore_index)), "float32"), -1)
        )
    else:
        if tuple(output.shape) != tuple(target.shape):
            raise ValueError(f"output shape {tuple(output.shape)} and target shape {tuple(target.shape)} differ")
        if out_float and threshold is None:
            raise ValueError("output holds scores: pass threshold (e.g. 0.5) to binarise it, or pass 0/1 integers")
        valid = (
            ops.ones_like(target)
            if ignore_index is None
            else ops.cast(ops.not_equal(target, float(ignore_index)), "float32")
        )
        out_oh = ops.cast(output >= threshold, "float32") if threshold is not None else output
        tgt_oh = ops.cast(target >= threshold, "float32") if threshold is not None else target
        tgt_oh = tgt_oh * valid
    out_oh = out_oh * valid
    axes = list(range(1, len(out_oh.shape) - 1))
    tp = ops.sum(out_oh * tgt_oh, axis=axes)
    fp = ops.sum(out_oh, axis=axes) - tp
    fn = ops.sum(tgt_oh * valid, axis=axes) - tp
    tn = ops.sum(ops.ones_like(out_oh) * valid, axis=axes) - tp - fp - fn
    return tuple(ops.cast(ops.round(x), "int32") for x in (tp, fp, fn, tn))


def _score(metric: str, tp, fp, fn, tn, beta: float, zero_division: float, where=ops.where):
    """The score ``metric`` of counts, ``zero_division`` where 0/0 (tensors with ``ops.where``, NumPy arrays with
    ``np.where``, see `score_from_counts`)."""

    def ratio(num, den):
        return where(den > 0, num / where(den > 0, den, 1.0), zero_division)

    if metric not in STAT_SCORES:
        raise ValueError(f"metric must be one of {STAT_SCORES}; got {metric!r}")
    if metric == "balanced_accuracy":
        return (ratio(*fraction("recall", tp, fp, fn, tn)) + ratio(*fraction("specificity", tp, fp, fn, tn))) / 2
    return ratio(*fraction(metric, tp, fp, fn, tn, beta=beta))


def score_from_counts(
    tp: np.ndarray,
    fp: np.ndarray,
    fn: np.ndarray,
    tn: np.ndarray | int = 0,
    metric: str = "iou",
    beta: float = 1.0,
    zero_division: float = float("nan"),
) -> np.ndarray:
    """The score ``metric`` (one of ``STAT_SCORES``) of exact counts, e.g. per class from a whole data set's
    confusion matrix, in NumPy float64 (no tensor, no rounding to float32): the formulas of
    `score_from_stats`. A 0/0 score is ``zero_division`` (default NaN: undefined)."""
    counts = (np.asarray(x, "float64") for x in (tp, fp, fn, tn))
    return _score(metric, *counts, beta=beta, zero_division=zero_division, where=np.where)


def score_from_stats(
    tp: Tensor,
    fp: Tensor,
    fn: Tensor,
    tn: Tensor,
    metric: str = "iou",
    reduction: str = "micro",
    class_weights: object = None,
    beta: float = 1.0,
    zero_division: float = 1.0,
) -> Tensor:
    """A score from (B, C) statistics, reduced like SMP's metric functions.

    ``micro``: sum everything, then score. ``macro``: sum over images, score per class, mean over classes.
    ``weighted``: as macro with a weighted mean (weights normalised to sum 1). ``micro-imagewise``: sum over
    classes, score per image, mean over images. ``macro-imagewise`` / ``weighted-imagewise``: score per image and
    class, mean over images, (weighted) mean over classes. ``none``: the (B, C) scores. A 0/0 score is
    ``zero_division``.
    """
    if reduction not in REDUCTIONS and reduction is not None:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    tp, fp, fn, tn = (_float32(x) for x in (tp, fp, fn, tn))
    if len(tp.shape) != 2:
        raise ValueError(f"statistics must have shape (images, classes); got {tuple(tp.shape)}")
    if reduction is not None and "weighted" in reduction:
        if class_weights is None:
            raise ValueError(f"reduction={reduction!r} needs class_weights")
        w = check_class_weights(class_weights, tp.shape[-1], tuple(tp.shape))
        w = np.asarray(w, "float32")
        w = ops.convert_to_tensor(w / np.sum(w, dtype="float32"))
    else:
        w = None

    def score(*stats):
        return _score(metric, *stats, beta=beta, zero_division=zero_division)

    if reduction == "micro":
        return score(*(ops.sum(x) for x in (tp, fp, fn, tn)))
    if reduction in ("macro", "weighted"):
        per_class = score(*(ops.sum(x, axis=0) for x in (tp, fp, fn, tn)))
        return ops.mean(per_class) if w is None else ops.sum(per_class * w)
    if reduction == "micro-imagewise":
        return ops.mean(score(*(ops.sum(x, axis=1) for x in (tp, fp, fn, tn))))
    if reduction in ("macro-imagewise", "weighted-imagewise"):
        per_class = ops.mean(score(tp, fp, fn, tn), axis=0)
        return ops.mean(per_class) if w is None else ops.sum(per_class * w)
    return score(tp, fp, fn, tn)
