"""Plain numpy reference implementations of the losses and metrics (float64, explicit selections and loops).

Written independently of the package: ignored pixels are dropped by boolean selection, Lovasz follows the
paper's per-set algorithm, statistics are counted per image with loops.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def prepare(y_true, y_pred, mode, from_logits=False, ignore_index=None, class_indexes=None):
    """-> gt (B,H,W,C'), pr (B,H,W,C'), keep (B,H,W,C') booleans, logits (or None)."""
    y_pred = np.asarray(y_pred, np.float64)
    y_true = np.asarray(y_true, np.float64)
    classes = y_pred.shape[-1]
    logits = y_pred if from_logits else None
    if from_logits:
        y_pred = softmax(y_pred) if mode == "multiclass" else sigmoid(y_pred)
    if y_true.ndim == y_pred.ndim - 1:
        y_true = y_true[..., None]
    if y_true.shape[-1] == 1 and classes > 1:  # integer class mask
        labels = y_true[..., 0]
        gt = np.stack([(labels == c) for c in range(classes)], -1).astype(np.float64)
        keep = (
            np.ones_like(gt, bool)
            if ignore_index is None
            else np.repeat((labels != ignore_index)[..., None], classes, -1)
        )
    else:
        gt = y_true.copy()
        if ignore_index is None:
            keep = np.ones_like(gt, bool)
        else:
            keep = y_true != ignore_index
            if mode == "multiclass":
                keep = np.repeat(keep.all(-1, keepdims=True), classes, -1)
    gt = np.where(keep, gt, 0.0)
    if class_indexes is not None:
        idx = np.atleast_1d(class_indexes)
        gt, y_pred, keep = gt[..., idx], y_pred[..., idx], keep[..., idx]
        logits = logits[..., idx] if logits is not None else None
    return gt, y_pred, keep, logits


def class_counts(gt, pr, keep, threshold=None):
    """tp, fp, fn, tn (C,) of one set of pixels (leading axes flattened)."""
    c = gt.shape[-1]
    gt, pr, keep = gt.reshape(-1, c), pr.reshape(-1, c), keep.reshape(-1, c)
    if threshold is not None:
        pr = (pr > threshold).astype(np.float64)
    out = np.zeros((4, c))
    for k in range(c):
        g, p = gt[keep[:, k], k], pr[keep[:, k], k]
        tp = float(np.sum(g * p))
        out[:, k] = tp, p.sum() - tp, g.sum() - tp, len(g) - g.sum() - p.sum() + tp
    return out


SCORES = {
    "iou": lambda tp, fp, fn, s, beta: (tp + s) / (tp + fp + fn + s),
    "fscore": lambda tp, fp, fn, s, beta: ((1 + beta**2) * tp + s) / ((1 + beta**2) * tp + beta**2 * fn + fp + s),
    "precision": lambda tp, fp, fn, s, beta: (tp + s) / (tp + fp + s),
    "recall": lambda tp, fp, fn, s, beta: (tp + s) / (tp + fn + s),
}


def per_class_score(kind, gt, pr, keep, per_image=False, threshold=None, smooth=1e-5, beta=1.0, tversky=None):
    def one(g, p, k):
        tp, fp, fn, _ = class_counts(g, p, k, threshold)
        if tversky is not None:
            a, b = tversky
            return (tp + smooth) / (tp + a * fp + b * fn + smooth)
        return SCORES[kind](tp, fp, fn, smooth, beta)

    if per_image:
        return np.mean([one(gt[i], pr[i], keep[i]) for i in range(len(gt))], axis=0)
    return one(gt, pr, keep)


def score(
    kind,
    y_true,
    y_pred,
    mode,
    class_weights=None,
    class_indexes=None,
    per_image=False,
    threshold=None,
    smooth=1e-5,
    beta=1.0,
    from_logits=False,
    ignore_index=None,
    tversky=None,
):
    gt, pr, keep, _ = prepare(y_true, y_pred, mode, from_logits, ignore_index, class_indexes)
    s = per_class_score(kind, gt, pr, keep, per_image, threshold, smooth, beta, tversky)
    w = 1.0 if class_weights is None else np.asarray(class_weights, np.float64)
    return float(np.mean(s * w))


def _kept_mean(values, keep):
    return float(values[keep].sum() / max(keep.sum(), 1))


def categorical_crossentropy(
    y_true, y_pred, class_weights=None, class_indexes=None, from_logits=False, ignore_index=None
):
    gt, pr, keep, _ = prepare(y_true, y_pred, "multiclass", from_logits, ignore_index, class_indexes)
    pr = np.clip(pr / pr.sum(-1, keepdims=True), EPS, 1 - EPS)
    w = 1.0 if class_weights is None else np.asarray(class_weights)
    return -_kept_mean(gt * np.log(pr) * w, keep)


def binary_crossentropy(y_true, y_pred, mode, class_weights=None, from_logits=False, ignore_index=None):
    gt, pr, keep, logits = prepare(y_true, y_pred, mode, from_logits, ignore_index)
    if logits is not None:
        loss = np.maximum(logits, 0) - logits * gt + np.log1p(np.exp(-np.abs(logits)))
    else:
        p = np.clip(pr, EPS, 1 - EPS)
        loss = -(gt * np.log(p) + (1 - gt) * np.log(1 - p))
    w = 1.0 if class_weights is None else np.asarray(class_weights)
    return _kept_mean(loss * w, keep)


def categorical_focal(
    y_true, y_pred, alpha=0.25, gamma=2.0, class_indexes=None, class_weights=None, from_logits=False, ignore_index=None
):
    gt, pr, keep, _ = prepare(y_true, y_pred, "multiclass", from_logits, ignore_index, class_indexes)
    p = np.clip(pr, EPS, 1 - EPS)
    w = 1.0 if class_weights is None else np.asarray(class_weights)
    return _kept_mean(-gt * alpha * (1 - p) ** gamma * np.log(p) * w, keep)


def binary_focal(y_true, y_pred, mode, alpha=0.25, gamma=2.0, from_logits=False, ignore_index=None):
    gt, pr, keep, _ = prepare(y_true, y_pred, mode, from_logits, ignore_index)
    p = np.clip(pr, EPS, 1 - EPS)
    loss = -gt * alpha * (1 - p) ** gamma * np.log(p) - (1 - gt) * (1 - alpha) * p**gamma * np.log(1 - p)
    return _kept_mean(loss, keep)


def soft_bce(y_true, y_pred, mode, smooth_factor=0.0, pos_weight=None, from_logits=False, ignore_index=None):
    gt, pr, keep, logits = prepare(y_true, y_pred, mode, from_logits, ignore_index)
    t = (1 - gt) * smooth_factor + gt * (1 - smooth_factor)
    if logits is not None:
        log_p, log_q = -np.log1p(np.exp(-logits)), -np.log1p(np.exp(logits))
    else:
        p = np.clip(pr, EPS, 1 - EPS)
        log_p, log_q = np.log(p), np.log(1 - p)
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight)
    return _kept_mean(-(pw * t * log_p + (1 - t) * log_q), keep)


def soft_ce(y_true, y_pred, smooth_factor=0.0, class_weights=None, from_logits=False, ignore_index=None):
    gt, pr, keep, logits = prepare(y_true, y_pred, "multiclass", from_logits, ignore_index)
    c = gt.shape[-1]
    logp = (
        (logits - logits.max(-1, keepdims=True))
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        if logits is not None
        else np.log(np.clip(pr, EPS, 1))
    )
    w = 1.0 if class_weights is None else np.asarray(class_weights)
    per_pixel = -(((1 - smooth_factor) * gt + smooth_factor / c) * logp * w).sum(-1)
    pixel_keep = keep[..., 0]
    return float(per_pixel[pixel_keep].sum() / max(pixel_keep.sum(), 1))


def lovasz_grad(gt_sorted):
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum()
    union = gts + (1 - gt_sorted).cumsum()
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_hinge(y_true, y_pred, mode, per_image=False, from_logits=False, ignore_index=None):
    gt, pr, keep, logits = prepare(y_true, y_pred, mode, from_logits, ignore_index)
    if logits is None:
        p = np.clip(pr, EPS, 1 - EPS)
        logits = np.log(p / (1 - p))

    def one(g, x, k):
        g, x = g[k], x[k]
        if g.size == 0:
            return 0.0
        errors = 1.0 - x * (2 * g - 1)
        order = np.argsort(-errors, kind="stable")
        return float(np.dot(np.maximum(errors[order], 0), lovasz_grad(g[order])))

    if per_image:
        return float(np.mean([one(gt[i], logits[i], keep[i]) for i in range(len(gt))]))
    return one(gt, logits, keep)


def lovasz_softmax(y_true, y_pred, per_image=False, from_logits=False, ignore_index=None, class_indexes=None):
    gt, pr, keep, _ = prepare(y_true, y_pred, "multiclass", from_logits, ignore_index, class_indexes)
    c = gt.shape[-1]

    def one(g, p, k):
        pixels = k.reshape(-1, c)[:, 0]
        g, p = g.reshape(-1, c)[pixels], p.reshape(-1, c)[pixels]
        losses = []
        for j in range(c):
            fg = g[:, j]
            if fg.sum() == 0:
                continue
            errors = np.abs(fg - p[:, j])
            order = np.argsort(-errors, kind="stable")
            losses.append(np.dot(errors[order], lovasz_grad(fg[order])))
        return float(np.mean(losses)) if losses else 0.0

    if per_image:
        return float(np.mean([one(gt[i], pr[i], keep[i]) for i in range(len(gt))]))
    return one(gt, pr, keep)


def get_stats(output, target, mode, ignore_index=None, threshold=None, num_classes=None):
    """(B, C) counts, per image with loops."""
    output, target = np.asarray(output), np.asarray(target)
    b = output.shape[0]
    if mode == "multiclass":
        labels = output.argmax(-1) if output.dtype.kind == "f" else output.reshape(output.shape[:3])
        c = num_classes or output.shape[-1]
        tgt = target[..., 0] if target.ndim == 4 else target
        res = np.zeros((4, b, c))
        for i in range(b):
            k = np.ones(tgt[i].shape, bool) if ignore_index is None else tgt[i] != ignore_index
            o, t = labels[i][k], tgt[i][k]
            for j in range(c):
                tp = np.sum((o == j) & (t == j))
                fp = np.sum((o == j) & (t != j))
                fn = np.sum((o != j) & (t == j))
                res[:, i, j] = tp, fp, fn, len(o) - tp - fp - fn
        return res
    c = output.shape[-1]
    res = np.zeros((4, b, c))
    for i in range(b):
        for j in range(c):
            t = target[i, ..., j]
            k = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
            o = (output[i, ..., j][k] >= threshold) if threshold is not None else output[i, ..., j][k] > 0
            t = (t[k] >= threshold) if threshold is not None else t[k] > 0
            res[:, i, j] = np.sum(o & t), np.sum(o & ~t), np.sum(~o & t), np.sum(~o & ~t)
    return res


# ----------------------------------------------------------------------------------------------------------
#   Random test data
# ----------------------------------------------------------------------------------------------------------

CLASSES = {"binary": 1, "multiclass": 4, "multilabel": 3}


def make_data(kind, seed=0, batch=2, size=6, logits=False, ignore=None, target="dense"):
    """(y_true, y_pred) float32 arrays. ``target``: 'dense' (one-hot / 0-1), 'int' (B,H,W) or 'int1' (B,H,W,1)."""
    rng = np.random.default_rng(seed)
    c = CLASSES[kind]
    raw = rng.normal(size=(batch, size, size, c)) * 2
    pred = raw if logits else (softmax(raw) if kind == "multiclass" else sigmoid(raw))
    if kind == "multiclass":
        labels = rng.integers(0, c, (batch, size, size)).astype(np.float64)
        if ignore is not None:
            labels[rng.random(labels.shape) < 0.2] = ignore
        if target == "int":
            y = labels
        elif target == "int1":
            y = labels[..., None]
        else:
            y = np.stack([(labels == k) for k in range(c)], -1).astype(np.float64)
            if ignore is not None:
                y[labels == ignore] = ignore
    else:
        y = (rng.random((batch, size, size, c)) > 0.5).astype(np.float64)
        if ignore is not None:
            y[rng.random(y.shape) < 0.2] = ignore
    return y.astype("float32"), pred.astype("float32")
