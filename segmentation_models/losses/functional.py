"""The math of the losses, as plain functions on tensors (any Keras backend): cross-entropies, focal and Lovasz
losses. The region losses are ``1 -`` the scores of :mod:`segmentation_models.metrics.functional`, whose module doc
describes the inputs and the keyword-only options (``mode``, ``from_logits``, ``ignore_index``, ``sample_weight``)
every function here takes.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from ..metrics.functional import EPSILON, Prepared, Tensor, class_weights_for, masked_mean, prepare_call
from ..validation import check_class_weights

# ----------------------------------------------------------------------------------------------------------
#   Loss functions (1.0.1 signatures)
# ----------------------------------------------------------------------------------------------------------


def categorical_crossentropy(
    gt: Tensor, pr: Tensor, class_weights: object = 1.0, class_indexes: object = None, **options: Any
) -> Tensor:
    """1.0.1's categorical cross-entropy: ``-mean(gt * log(pr) * class_weights)`` over all elements.

    As in 1.0.1, predictions are renormalised over the selected classes and the mean runs over classes too
    (it is the usual per-pixel cross-entropy divided by the number of classes).
    """
    p = prepare_call(gt, pr, class_indexes, options)
    w = class_weights_for(p, class_weights, class_indexes)
    if p.logits is not None:
        logp = ops.log_softmax(p.logits, axis=-1)
    else:
        q = p.pr / ops.maximum(ops.sum(p.pr, axis=-1, keepdims=True), EPSILON)
        logp = ops.log(ops.clip(q, EPSILON, 1.0 - EPSILON))
    return -masked_mean(p.gt * logp * w, p.valid)


def _binary_log_probs(p: Prepared):
    """log(pr) and log(1 - pr), stable for logits and clipped for probabilities."""
    if p.logits is not None:
        return ops.log_sigmoid(p.logits), ops.log_sigmoid(-p.logits)
    q = ops.clip(p.pr, EPSILON, 1.0 - EPSILON)
    return ops.log(q), ops.log(1.0 - q)


def binary_crossentropy(gt: Tensor, pr: Tensor, *, class_weights: object = None, **options: Any) -> Tensor:
    """Mean binary cross-entropy over all elements (1.0.1); ``class_weights`` weight channels."""
    p = prepare_call(gt, pr, None, options, default_multi="multilabel")
    w = class_weights_for(p, class_weights, None)
    log_p, log_1mp = _binary_log_probs(p)
    loss = -(p.gt * log_p + (1.0 - p.gt) * log_1mp)
    return masked_mean(loss * w, p.valid)


def categorical_focal_loss(
    gt: Tensor,
    pr: Tensor,
    gamma: float = 2.0,
    alpha: float = 0.25,
    class_indexes: object = None,
    *,
    class_weights: object = None,
    **options: Any,
) -> Tensor:
    r"""Focal loss :math:`-gt \alpha (1 - pr)^\gamma \log(pr)`, mean over all elements (1.0.1)."""
    p = prepare_call(gt, pr, class_indexes, options)
    w = class_weights_for(p, class_weights, class_indexes)
    q = ops.clip(p.pr, EPSILON, 1.0 - EPSILON)
    loss = -p.gt * (alpha * ops.power(1.0 - q, gamma) * ops.log(q))
    return masked_mean(loss * w, p.valid)


def binary_focal_loss(gt: Tensor, pr: Tensor, gamma: float = 2.0, alpha: float = 0.25, **options: Any) -> Tensor:
    r"""Binary focal loss :math:`-gt\,\alpha(1-pr)^\gamma\log pr - (1-gt)(1-\alpha)pr^\gamma\log(1-pr)` (1.0.1)."""
    p = prepare_call(gt, pr, None, options, default_multi="multilabel")
    q = ops.clip(p.pr, EPSILON, 1.0 - EPSILON)
    loss_1 = -p.gt * (alpha * ops.power(1.0 - q, gamma) * ops.log(q))
    loss_0 = -(1.0 - p.gt) * ((1.0 - alpha) * ops.power(q, gamma) * ops.log(1.0 - q))
    return masked_mean(loss_0 + loss_1, p.valid)


def soft_binary_crossentropy(
    gt: Tensor, pr: Tensor, smooth_factor: float = 0.0, pos_weight: object = None, **options: Any
) -> Tensor:
    """SMP's SoftBCE: targets smoothed to ``(1 - y) * f + y * (1 - f)``; ``pos_weight`` weights positives."""
    p = prepare_call(gt, pr, None, options, default_multi="multilabel")
    target = (1.0 - p.gt) * smooth_factor + p.gt * (1.0 - smooth_factor)
    log_p, log_1mp = _binary_log_probs(p)
    pw = 1.0 if pos_weight is None else check_class_weights(pos_weight, p.gt.shape[-1], p.pred_shape)
    loss = -(pw * target * log_p + (1.0 - target) * log_1mp)
    return masked_mean(loss, p.valid)


def soft_categorical_crossentropy(
    gt: Tensor, pr: Tensor, smooth_factor: float = 0.0, class_weights: object = None, **options: Any
) -> Tensor:
    """Label-smoothed cross-entropy (SMP's SoftCrossEntropyLoss): per-pixel CE, mean over kept pixels.

    Targets become ``(1 - f) * y + f / C``; unlike 1.0.1's ``categorical_crossentropy`` this is not divided
    by the number of classes. ``class_weights`` weight each class's term.
    """
    p = prepare_call(gt, pr, None, {**options, "mode": options.get("mode") or "multiclass"})
    classes = p.gt.shape[-1]
    w = class_weights_for(p, class_weights, None)
    if p.logits is not None:
        logp = ops.log_softmax(p.logits, axis=-1)
    else:
        logp = ops.log(ops.clip(p.pr, EPSILON, 1.0))
    target = (1.0 - smooth_factor) * p.gt + smooth_factor / classes
    per_pixel = -ops.sum(target * logp * w, axis=-1, keepdims=True)
    return masked_mean(per_pixel, p.valid)


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


def lovasz_hinge(gt: Tensor, pr: Tensor, per_image: bool = False, **options: Any) -> Tensor:
    """Binary/multilabel Lovasz hinge loss (SMP's ``LovaszLoss`` in binary/multilabel mode).

    Probabilities are turned into logits (``log(p / (1 - p))``) unless ``from_logits``. All channels and pixels
    of an image (or of the batch) form one set, as in SMP. Weight-0 elements (``ignore_index``, ``sample_weight``)
    are left out; other weights act as a mask.
    """
    p = prepare_call(gt, pr, None, options, default_multi="multilabel")
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
    gt: Tensor, pr: Tensor, per_image: bool = False, class_indexes: object = None, **options: Any
) -> Tensor:
    """Multiclass Lovasz-softmax loss over the classes present in the ground truth (SMP's ``classes='present'``)."""
    p = prepare_call(gt, pr, class_indexes, {**options, "mode": options.get("mode") or "multiclass"})
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
