"""The math of the losses and metrics, as plain functions on tensors (any Keras backend).

The 1.0.1 functions keep their signatures (``iou_score(gt, pr, class_weights=1., class_indexes=None,
smooth=1e-5, per_image=False, threshold=None)`` ...); their ``backend`` keyword argument is accepted and
ignored. New keyword-only options, shared by every function:

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

from typing import NamedTuple

import keras
import numpy as np
from keras import ops

SMOOTH = 1e-5
EPSILON = 1e-7
MODES = ("binary", "multilabel", "multiclass")
REDUCTIONS = ("micro", "macro", "weighted", "micro-imagewise", "macro-imagewise", "weighted-imagewise", "none")
STAT_SCORES = ("iou", "fscore", "precision", "recall", "accuracy", "specificity", "balanced_accuracy")
_IGNORED_KWARGS = {"backend", "layers", "models", "utils"}


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


def _check_kwargs(kwargs: dict) -> None:
    unknown = set(kwargs) - _IGNORED_KWARGS
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")


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


def check_class_indexes(class_indexes, classes: int, pred_shape: tuple) -> list[int] | None:
    """``class_indexes`` as a list of valid channel indexes (or None)."""
    if class_indexes is None:
        return None
    idx = [int(class_indexes)] if isinstance(class_indexes, (int, np.integer)) else [int(i) for i in class_indexes]
    if not idx:
        raise ValueError("class_indexes is empty; pass None to use all classes")
    bad = [i for i in idx if not 0 <= i < classes]
    if bad:
        raise ValueError(
            f"class_indexes {bad} out of range: y_pred has shape {pred_shape}, i.e. {classes} classes "
            f"(valid indexes 0..{classes - 1})"
        )
    return idx


def check_class_weights(class_weights, classes: int, pred_shape: tuple, class_indexes=None):
    """A float, or a float32 array of one weight per (selected) class; ValueError on a length mismatch."""
    if class_weights is None:
        return 1.0
    if isinstance(class_weights, (int, float, np.number)):
        return float(class_weights)
    w = np.asarray(
        keras.ops.convert_to_numpy(class_weights) if not isinstance(class_weights, (list, tuple)) else class_weights,
        dtype="float32",
    ).reshape(-1)
    if w.size == 1:
        return float(w[0])
    if w.size != classes:
        where = (
            f"{classes} classes selected by class_indexes={list(class_indexes)}"
            if class_indexes is not None
            else f"{classes} classes"
        )
        raise ValueError(
            f"class_weights has {w.size} values but y_pred with shape {pred_shape} has {where}; "
            f"give one weight per class"
        )
    return w


def pixel_weights(sample_weight, pred_shape: tuple):
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
    y_true,
    y_pred,
    *,
    mode: str | None = None,
    from_logits: bool = False,
    ignore_index=None,
    class_indexes=None,
    default_multi: str = "multiclass",
    sample_weight=None,
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


def _masked_mean(x, valid):
    """Mean of ``x`` weighted by ``valid`` (0: ignored): ``sum(x * valid) / sum(valid)``, 0 when all are ignored."""
    if valid is None:
        return ops.mean(x)
    total = ops.sum(ops.ones_like(x) * valid)
    return ops.sum(x * valid) / ops.where(total > 0, total, 1.0)


def _confusion(p: Prepared, per_image: bool, threshold=None):
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


def gather_channels(*xs, indexes=None, **kwargs):
    """Slice tensors along the channels axis by the given indexes (1.0.1)."""
    _check_kwargs(kwargs)
    if indexes is None:
        return xs
    if isinstance(indexes, int):
        indexes = [indexes]
    axis = -1 if keras.config.image_data_format() == "channels_last" else 1
    return [ops.take(x, indexes, axis=axis) for x in xs]


def get_reduce_axes(per_image: bool, **kwargs) -> list[int]:
    """Spatial axes (plus the batch axis unless ``per_image``) of a 4D tensor (1.0.1)."""
    _check_kwargs(kwargs)
    axes = [1, 2] if keras.config.image_data_format() == "channels_last" else [2, 3]
    return axes if per_image else [0] + axes


def round_if_needed(x, threshold, **kwargs):
    """``x > threshold`` as floats, or ``x`` when ``threshold`` is None (1.0.1)."""
    _check_kwargs(kwargs)
    if threshold is None:
        return x
    return ops.cast(ops.greater(x, threshold), x.dtype)


def average(x, per_image: bool = False, class_weights=None, **kwargs):
    """Mean over images (if ``per_image``), times class weights, mean (1.0.1)."""
    _check_kwargs(kwargs)
    if per_image:
        x = ops.mean(x, axis=0)
    if class_weights is not None:
        x = x * ops.convert_to_tensor(class_weights, dtype=x.dtype)
    return ops.mean(x)


def _options(
    gt, pr, class_indexes, mode, from_logits, ignore_index, kwargs, sample_weight=None, default_multi="multiclass"
):
    _check_kwargs(kwargs)
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


def _weights_for(p: Prepared, class_weights, class_indexes):
    return check_class_weights(class_weights, p.gt.shape[-1], p.pred_shape, class_indexes)


# ----------------------------------------------------------------------------------------------------------
#   Metric functions (1.0.1 signatures)
# ----------------------------------------------------------------------------------------------------------


def iou_score(
    gt,
    pr,
    class_weights=1.0,
    class_indexes=None,
    smooth=SMOOTH,
    per_image=False,
    threshold=None,
    *,
    mode=None,
    from_logits=False,
    ignore_index=None,
    sample_weight=None,
    **kwargs,
):
    r"""Jaccard index :math:`(tp + s) / (tp + fp + fn + s)` per class, averaged like 1.0.1 (see module doc)."""
    p = _options(gt, pr, class_indexes, mode, from_logits, ignore_index, kwargs, sample_weight)
    w = _weights_for(p, class_weights, class_indexes)
    tp, fp, fn = _confusion(p, per_image, threshold)
    return average((tp + smooth) / (tp + fp + fn + smooth), per_image, w)


def f_score(
    gt,
    pr,
    beta=1,
    class_weights=1,
    class_indexes=None,
    smooth=SMOOTH,
    per_image=False,
    threshold=None,
    *,
    mode=None,
    from_logits=False,
    ignore_index=None,
    sample_weight=None,
    **kwargs,
):
    r"""F-beta (Dice for beta=1): :math:`((1+b^2) tp + s) / ((1+b^2) tp + b^2 fn + fp + s)`."""
    p = _options(gt, pr, class_indexes, mode, from_logits, ignore_index, kwargs, sample_weight)
    w = _weights_for(p, class_weights, class_indexes)
    tp, fp, fn = _confusion(p, per_image, threshold)
    b2 = beta**2
    return average(((1 + b2) * tp + smooth) / ((1 + b2) * tp + b2 * fn + fp + smooth), per_image, w)


def precision(
    gt,
    pr,
    class_weights=1,
    class_indexes=None,
    smooth=SMOOTH,
    per_image=False,
    threshold=None,
    *,
    mode=None,
    from_logits=False,
    ignore_index=None,
    sample_weight=None,
    **kwargs,
):
    r"""Precision :math:`(tp + s) / (tp + fp + s)`."""
    p = _options(gt, pr, class_indexes, mode, from_logits, ignore_index, kwargs, sample_weight)
    w = _weights_for(p, class_weights, class_indexes)
    tp, fp, _ = _confusion(p, per_image, threshold)
    return average((tp + smooth) / (tp + fp + smooth), per_image, w)


def recall(
    gt,
    pr,
    class_weights=1,
    class_indexes=None,
    smooth=SMOOTH,
    per_image=False,
    threshold=None,
    *,
    mode=None,
    from_logits=False,
    ignore_index=None,
    sample_weight=None,
    **kwargs,
):
    r"""Recall :math:`(tp + s) / (tp + fn + s)`."""
    p = _options(gt, pr, class_indexes, mode, from_logits, ignore_index, kwargs, sample_weight)
    w = _weights_for(p, class_weights, class_indexes)
    tp, _, fn = _confusion(p, per_image, threshold)
    return average((tp + smooth) / (tp + fn + smooth), per_image, w)


def tversky_score(
    gt,
    pr,
    alpha=0.5,
    beta=0.5,
    class_weights=1,
    class_indexes=None,
    smooth=SMOOTH,
    per_image=False,
    threshold=None,
    *,
    mode=None,
    from_logits=False,
    ignore_index=None,
    sample_weight=None,
    **kwargs,
):
    r"""Tversky index :math:`(tp + s) / (tp + \alpha fp + \beta fn + s)` (alpha = beta = 0.5 is Dice)."""
    p = _options(gt, pr, class_indexes, mode, from_logits, ignore_index, kwargs, sample_weight)
    w = _weights_for(p, class_weights, class_indexes)
    tp, fp, fn = _confusion(p, per_image, threshold)
    return average((tp + smooth) / (tp + alpha * fp + beta * fn + smooth), per_image, w)


# ----------------------------------------------------------------------------------------------------------
#   Loss functions (1.0.1 signatures)
# ----------------------------------------------------------------------------------------------------------


def categorical_crossentropy(
    gt,
    pr,
    class_weights=1.0,
    class_indexes=None,
    *,
    from_logits=False,
    ignore_index=None,
    mode=None,
    sample_weight=None,
    **kwargs,
):
    """1.0.1's categorical cross-entropy: ``-mean(gt * log(pr) * class_weights)`` over all elements.

    As in 1.0.1, predictions are renormalised over the selected classes and the mean runs over classes too
    (it is the usual per-pixel cross-entropy divided by the number of classes).
    """
    p = _options(gt, pr, class_indexes, mode, from_logits, ignore_index, kwargs, sample_weight)
    w = _weights_for(p, class_weights, class_indexes)
    if p.logits is not None:
        logp = ops.log_softmax(p.logits, axis=-1)
    else:
        q = p.pr / ops.maximum(ops.sum(p.pr, axis=-1, keepdims=True), EPSILON)
        logp = ops.log(ops.clip(q, EPSILON, 1.0 - EPSILON))
    return -_masked_mean(p.gt * logp * w, p.valid)


def _binary_log_probs(p: Prepared):
    """log(pr) and log(1 - pr), stable for logits and clipped for probabilities."""
    if p.logits is not None:
        return ops.log_sigmoid(p.logits), ops.log_sigmoid(-p.logits)
    q = ops.clip(p.pr, EPSILON, 1.0 - EPSILON)
    return ops.log(q), ops.log(1.0 - q)


def binary_crossentropy(
    gt, pr, *, class_weights=None, from_logits=False, ignore_index=None, mode=None, sample_weight=None, **kwargs
):
    """Mean binary cross-entropy over all elements (1.0.1); ``class_weights`` weight channels."""
    p = _options(gt, pr, None, mode, from_logits, ignore_index, kwargs, sample_weight, default_multi="multilabel")
    w = _weights_for(p, class_weights, None)
    log_p, log_1mp = _binary_log_probs(p)
    loss = -(p.gt * log_p + (1.0 - p.gt) * log_1mp)
    return _masked_mean(loss * w, p.valid)


def categorical_focal_loss(
    gt,
    pr,
    gamma=2.0,
    alpha=0.25,
    class_indexes=None,
    *,
    class_weights=None,
    from_logits=False,
    ignore_index=None,
    mode=None,
    sample_weight=None,
    **kwargs,
):
    r"""Focal loss :math:`-gt \alpha (1 - pr)^\gamma \log(pr)`, mean over all elements (1.0.1)."""
    p = _options(gt, pr, class_indexes, mode, from_logits, ignore_index, kwargs, sample_weight)
    w = _weights_for(p, class_weights, class_indexes)
    q = ops.clip(p.pr, EPSILON, 1.0 - EPSILON)
    loss = -p.gt * (alpha * ops.power(1.0 - q, gamma) * ops.log(q))
    return _masked_mean(loss * w, p.valid)


def binary_focal_loss(
    gt, pr, gamma=2.0, alpha=0.25, *, from_logits=False, ignore_index=None, mode=None, sample_weight=None, **kwargs
):
    r"""Binary focal loss :math:`-gt\,\alpha(1-pr)^\gamma\log pr - (1-gt)(1-\alpha)pr^\gamma\log(1-pr)` (1.0.1)."""
    p = _options(gt, pr, None, mode, from_logits, ignore_index, kwargs, sample_weight, default_multi="multilabel")
    q = ops.clip(p.pr, EPSILON, 1.0 - EPSILON)
    loss_1 = -p.gt * (alpha * ops.power(1.0 - q, gamma) * ops.log(q))
    loss_0 = -(1.0 - p.gt) * ((1.0 - alpha) * ops.power(q, gamma) * ops.log(1.0 - q))
    return _masked_mean(loss_0 + loss_1, p.valid)


def soft_binary_crossentropy(
    gt,
    pr,
    smooth_factor=0.0,
    pos_weight=None,
    *,
    from_logits=False,
    ignore_index=None,
    mode=None,
    sample_weight=None,
    **kwargs,
):
    """SMP's SoftBCE: targets smoothed to ``(1 - y) * f + y * (1 - f)``; ``pos_weight`` weights positives."""
    p = _options(gt, pr, None, mode, from_logits, ignore_index, kwargs, sample_weight, default_multi="multilabel")
    target = (1.0 - p.gt) * smooth_factor + p.gt * (1.0 - smooth_factor)
    log_p, log_1mp = _binary_log_probs(p)
    pw = 1.0 if pos_weight is None else check_class_weights(pos_weight, p.gt.shape[-1], p.pred_shape)
    loss = -(pw * target * log_p + (1.0 - target) * log_1mp)
    return _masked_mean(loss, p.valid)


def soft_categorical_crossentropy(
    gt,
    pr,
    smooth_factor=0.0,
    class_weights=None,
    *,
    from_logits=False,
    ignore_index=None,
    mode=None,
    sample_weight=None,
    **kwargs,
):
    """Label-smoothed cross-entropy (SMP's SoftCrossEntropyLoss): per-pixel CE, mean over kept pixels.

    Targets become ``(1 - f) * y + f / C``; unlike 1.0.1's ``categorical_crossentropy`` this is not divided
    by the number of classes. ``class_weights`` weight each class's term.
    """
    p = _options(gt, pr, None, mode or "multiclass", from_logits, ignore_index, kwargs, sample_weight)
    classes = p.gt.shape[-1]
    w = _weights_for(p, class_weights, None)
    if p.logits is not None:
        logp = ops.log_softmax(p.logits, axis=-1)
    else:
        logp = ops.log(ops.clip(p.pr, EPSILON, 1.0))
    target = (1.0 - smooth_factor) * p.gt + smooth_factor / classes
    per_pixel = -ops.sum(target * logp * w, axis=-1, keepdims=True)
    return _masked_mean(per_pixel, p.valid)


# ----------------------------------------------------------------------------------------------------------
#   Lovasz losses (Berman et al. 2018), vectorised over images/classes with sorting
# ----------------------------------------------------------------------------------------------------------


def _lovasz_grad(gt_sorted):
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors, along the last axis."""
    gts = ops.sum(gt_sorted, axis=-1, keepdims=True)
    intersection = gts - ops.cumsum(gt_sorted, axis=-1)
    union = gts + ops.cumsum(1.0 - gt_sorted, axis=-1)
    jaccard = 1.0 - intersection / union
    previous = ops.concatenate([ops.zeros_like(jaccard[..., :1]), jaccard[..., :-1]], axis=-1)
    return jaccard - previous


def _sorted_desc(errors, *others):
    order = ops.argsort(-ops.stop_gradient(errors), axis=-1)
    return [ops.take_along_axis(t, order, axis=-1) for t in (errors,) + others]


def lovasz_hinge(
    gt, pr, per_image=False, *, from_logits=False, ignore_index=None, mode=None, sample_weight=None, **kwargs
):
    """Binary/multilabel Lovasz hinge loss (SMP's ``LovaszLoss`` in binary/multilabel mode).

    Probabilities are turned into logits (``log(p / (1 - p))``) unless ``from_logits``. All channels and pixels
    of an image (or of the batch) form one set, as in SMP. Weight-0 elements (``ignore_index``, ``sample_weight``)
    are left out; other weights act as a mask.
    """
    p = _options(gt, pr, None, mode, from_logits, ignore_index, kwargs, sample_weight, default_multi="multilabel")
    if p.mode == "multiclass":
        raise ValueError("lovasz_hinge is for mode 'binary' or 'multilabel'; use lovasz_softmax for 'multiclass'")
    if p.logits is not None:
        logits = p.logits
    else:
        q = ops.clip(p.pr, EPSILON, 1.0 - EPSILON)
        logits = ops.log(q) - ops.log(1.0 - q)
    errors = 1.0 - logits * (2.0 * p.gt - 1.0)
    gt = p.gt
    if p.valid is not None:
        valid = ops.ones_like(errors) * p.valid
        errors = ops.where(valid > 0, errors, -1e6)  # ignored elements sort last and add relu(-1e6) = 0
    batch = ops.shape(errors)[0]
    shape = (batch, -1) if per_image else (1, -1)
    errors, gt = ops.reshape(errors, shape), ops.reshape(gt, shape)
    errors_sorted, gt_sorted = _sorted_desc(errors, gt)
    losses = ops.sum(ops.relu(errors_sorted) * _lovasz_grad(gt_sorted), axis=-1)
    return ops.mean(losses)


def lovasz_softmax(
    gt,
    pr,
    per_image=False,
    class_indexes=None,
    *,
    from_logits=False,
    ignore_index=None,
    mode=None,
    sample_weight=None,
    **kwargs,
):
    """Multiclass Lovasz-softmax loss over the classes present in the ground truth (SMP's ``classes='present'``)."""
    p = _options(gt, pr, class_indexes, mode or "multiclass", from_logits, ignore_index, kwargs, sample_weight)
    errors = ops.abs(p.gt - p.pr)
    gt = p.gt
    batch = ops.shape(errors)[0]
    if p.valid is None:
        valid = ops.ones_like(errors[..., :1])
    elif p.valid.shape[-1] == 1:  # ignored pixels (weight 0) drop out; other weights act as a mask
        valid = ops.ones_like(errors[..., :1]) * ops.cast(p.valid > 0, "float32")
    else:
        raise ValueError(
            f"lovasz_softmax needs per-pixel (B, H, W) or per-image (B,) sample weights; got one "
            f"weight per class (y_pred has shape {p.pred_shape})"
        )
    errors = ops.where(valid > 0, errors, -1.0)

    def flat(x):  # (B, ..., c) -> (B', c, N)
        x = ops.reshape(x, (batch, -1, x.shape[-1])) if per_image else ops.reshape(x, (1, -1, x.shape[-1]))
        return ops.transpose(x, (0, 2, 1))

    errors, gt, valid = flat(errors), flat(gt), flat(valid)
    valid = ops.broadcast_to(valid, ops.shape(errors))
    errors_sorted, gt_sorted, valid_sorted = _sorted_desc(errors, gt, valid)
    per_class = ops.sum(errors_sorted * valid_sorted * _lovasz_grad(gt_sorted), axis=-1)  # (B', c)
    present = ops.cast(ops.sum(gt, axis=-1) > 0, "float32")
    per_set = ops.sum(per_class * present, axis=-1) / ops.maximum(ops.sum(present, axis=-1), 1.0)
    return ops.mean(per_set)


# ----------------------------------------------------------------------------------------------------------
#   SMP-style statistics and reductions
# ----------------------------------------------------------------------------------------------------------


def get_stats(output, target, mode: str, ignore_index=None, threshold=None, num_classes: int | None = None):
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
    """The score ``metric`` of counts: the one place of these formulas (tensors with ``ops.where``, NumPy arrays
    with ``np.where``, see `score_from_counts`)."""

    def ratio(num, den):
        return where(den > 0, num / where(den > 0, den, 1.0), zero_division)

    if metric == "iou":
        return ratio(tp, tp + fp + fn)
    if metric == "fscore":
        b2 = beta**2
        return ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)
    if metric == "precision":
        return ratio(tp, tp + fp)
    if metric == "recall":
        return ratio(tp, tp + fn)
    if metric == "accuracy":
        return ratio(tp + tn, tp + fp + fn + tn)
    if metric == "specificity":
        return ratio(tn, tn + fp)
    if metric == "balanced_accuracy":
        return (ratio(tp, tp + fn) + ratio(tn, tn + fp)) / 2
    raise ValueError(f"metric must be one of {STAT_SCORES}; got {metric!r}")


def score_from_counts(
    tp, fp, fn, tn=0, metric: str = "iou", beta: float = 1.0, zero_division: float = float("nan")
) -> np.ndarray:
    """The score ``metric`` (one of ``STAT_SCORES``) of exact counts, e.g. per class from a whole data set's
    confusion matrix, in NumPy float64 (no tensor, no rounding to float32): the formulas of
    `score_from_stats`. A 0/0 score is ``zero_division`` (default NaN: undefined)."""
    counts = (np.asarray(x, "float64") for x in (tp, fp, fn, tn))
    return _score(metric, *counts, beta=beta, zero_division=zero_division, where=np.where)


def score_from_stats(
    tp,
    fp,
    fn,
    tn,
    metric: str = "iou",
    reduction: str = "micro",
    class_weights=None,
    beta: float = 1.0,
    zero_division: float = 1.0,
):
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
