"""Metrics: data-set values over several batches equal a numpy reference on the concatenated data, options,
per-class results, reset, 1.0.1 call behaviour, SMP-style get_stats / reductions, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segmentation_models import metrics as M
from segmentation_models.base import functional as F

import seg_reference as ref
from helpers import pick


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """No models here: seeds only (clear_session costs ~1 s per test on TensorFlow)."""
    keras.utils.set_random_seed(0)
    yield


METRIC_CASES = [  # (id, data kind, make_data options, metric options)
    ("binary", "binary", {}, {}),
    ("binary-threshold-logits", "binary", dict(logits=True), dict(threshold=0.5, from_logits=True)),
    ("onehot-weights", "multiclass", {}, dict(class_weights=[0.1, 0.2, 0.3, 0.4])),
    ("onehot-per_image-threshold", "multiclass", {}, dict(per_image=True, threshold=0.3)),
    (
        "int-ignore-indexes",
        "multiclass",
        dict(target="int", ignore=255),
        dict(ignore_index=255, class_indexes=[0, 3], class_weights=[2.0, 1.0]),
    ),
    (
        "int1-logits-per_image-ignore",
        "multiclass",
        dict(target="int1", logits=True, ignore=255),
        dict(from_logits=True, per_image=True, ignore_index=255, smooth=1.0),
    ),
    (
        "multilabel-ignore-threshold",
        "multilabel",
        dict(ignore=-1),
        dict(mode="multilabel", ignore_index=-1, threshold=0.5, class_indexes=1),
    ),
]
# JAX and torch run a subset in which every option still occurs (JAX compiles each eager op per new shape)
METRIC_CASES = pick(METRIC_CASES, [METRIC_CASES[i] for i in (1, 3, 4, 5, 6)])
METRICS = {
    "iou": (M.IOUScore, {}),
    "fscore": (M.FScore, {"beta": 2}),
    "precision": (M.Precision, {}),
    "recall": (M.Recall, {}),
}
REF_KEYS = ("class_weights", "class_indexes", "per_image", "threshold", "smooth", "from_logits", "ignore_index")


@pytest.mark.parametrize("kind", list(METRICS))
def test_dataset_value_over_batches_equals_numpy_on_all_data(kind):
    cls, extra = METRICS[kind]
    for case_id, data_kind, data_opts, options in METRIC_CASES:
        y, p = ref.make_data(data_kind, seed=len(case_id), batch=5, **data_opts)
        metric = cls(**extra, **options)
        for part in (slice(0, 2), slice(2, 3), slice(3, 5)):  # uneven batches
            metric.update_state(y[part], p[part])
        mode = options.get("mode") or ("binary" if data_kind == "binary" else "multiclass")
        ref_opts = {k: options[k] for k in REF_KEYS if k in options}
        want = ref.score(kind, y, p, mode, beta=extra.get("beta", 1.0), **ref_opts)
        np.testing.assert_allclose(float(metric.result()), want, rtol=1e-4, atol=1e-6, err_msg=f"{kind} {case_id}")
        gt, pr, keep, _ = ref.prepare(
            y, p, mode, ref_opts.get("from_logits", False), ref_opts.get("ignore_index"), ref_opts.get("class_indexes")
        )
        per_class = ref.per_class_score(
            kind,
            gt,
            pr,
            keep,
            ref_opts.get("per_image", False),
            ref_opts.get("threshold"),
            ref_opts.get("smooth", 1e-5),
            extra.get("beta", 1.0),
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(metric.result_per_class()),
            per_class,
            rtol=1e-4,
            atol=1e-6,
            err_msg=f"{kind} {case_id} per class",
        )


def test_accumulation_is_not_a_mean_of_batch_scores():
    # batch 1: a large object found exactly; batch 2: a small object missed. Data-set IoU != mean of batch IoUs.
    y1, p1 = np.ones((1, 4, 4, 1), "float32"), np.ones((1, 4, 4, 1), "float32")
    y2 = np.zeros((1, 4, 4, 1), "float32")
    y2[0, 0, 0, 0] = 1
    p2 = np.zeros((1, 4, 4, 1), "float32")
    metric = M.IOUScore(threshold=0.5)
    metric.update_state(y1, p1)
    metric.update_state(y2, p2)
    dataset = float(metric.result())
    np.testing.assert_allclose(dataset, (16 + 1e-5) / (17 + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(dataset, float(metric(np.concatenate([y1, y2]), np.concatenate([p1, p2]))), rtol=1e-6)
    batch_mean = (float(metric(y1, p1)) + float(metric(y2, p2))) / 2  # 1.0.1's Keras 2 logging
    assert abs(batch_mean - 0.5) < 1e-4 and abs(dataset - batch_mean) > 0.4


def test_reset_state_call_and_reuse_with_other_class_count():
    y, p = ref.make_data("multiclass", seed=1)
    metric = M.IOUScore()
    assert float(metric.result()) == 0.0 and metric.result_per_class().shape == (0,)
    batch_value = float(metric(y, p))  # 1.0.1 behaviour: the batch's value, state untouched
    assert metric.variables == [] or float(keras.ops.sum(metric.true_positives)) == 0.0
    metric.update_state(y, p)
    metric.update_state(y[:1], 1 - p[:1])
    assert float(metric.result()) != pytest.approx(batch_value)
    metric.reset_state()
    metric.update_state(y, p)
    np.testing.assert_allclose(float(metric.result()), batch_value, rtol=1e-6)
    # the same (alias) object used for a model with another number of classes rebuilds its state
    yb, pb = ref.make_data("binary", seed=2)
    metric.update_state(yb, pb)
    np.testing.assert_allclose(float(metric.result()), ref.score("iou", yb, pb, "binary"), rtol=1e-5)


def test_sample_weight_per_image_and_per_pixel():
    y, p = ref.make_data("multiclass", seed=3)
    metric = M.Precision()
    metric.update_state(y, p, sample_weight=np.array([0.0, 1.0], "float32"))
    want = ref.score("precision", y[1:], p[1:], "multiclass")
    np.testing.assert_allclose(float(metric.result()), want, rtol=1e-5)
    pixel_w = (np.random.default_rng(0).random(y.shape[:3]) > 0.3).astype("float32")
    metric.reset_state()
    metric.update_state(y, p, sample_weight=pixel_w)
    ignored = np.where(pixel_w[..., None] > 0, y, 255)
    np.testing.assert_allclose(
        float(metric.result()), ref.score("precision", ignored, p, "multiclass", ignore_index=255), rtol=1e-5
    )
    with pytest.raises(ValueError, match=r"sample_weight with shape \(3, 2\)"):
        metric.update_state(y, p, sample_weight=np.ones((3, 2), "float32"))


def test_names_aliases_config_and_get():
    assert [m.name for m in (M.iou_score, M.f1_score, M.f2_score, M.precision, M.recall)] == [
        "iou_score",
        "f1-score",
        "f2-score",
        "precision",
        "recall",
    ]
    assert M.iou_score.__name__ == "iou_score" and M.f2_score.beta == 2
    metric = M.FScore(
        beta=0.5,
        class_weights=np.array([1.0, 3.0]),
        class_indexes=[1, 2],
        threshold=0.4,
        per_image=True,
        name="f_half",
        ignore_index=255,
        from_logits=True,
    )
    copy = M.FScore.from_config(metric.get_config())
    assert copy.get_config() == metric.get_config() and copy.class_weights == [1.0, 3.0]
    fresh = M.get("iou_score")
    assert isinstance(fresh, M.IOUScore) and fresh is not M.iou_score
    assert M.get("f1-score").name == "f1-score" and isinstance(M.get("Recall"), M.Recall)
    assert M.get("accuracy") is not None
    with pytest.raises(ValueError, match="Did you mean 'iou_score'"):
        M.get("iou_scor")


def test_errors_name_shapes():
    y, p = ref.make_data("multiclass", seed=4)
    with pytest.raises(ValueError, match=r"class_weights has 2 values but y_pred with shape \(2, 6, 6, 4\)"):
        M.IOUScore(class_weights=[1, 2]).update_state(y, p)
    with pytest.raises(ValueError, match=r"class_indexes \[7\] out of range"):
        M.Recall(class_indexes=7).update_state(y, p)
    with pytest.raises(ValueError, match=r"y_true shape \(2, 6, 6, 2\) does not match y_pred shape \(2, 6, 6, 4\)"):
        M.iou_score.update_state(y[..., :2], p)
    with pytest.raises(ValueError, match="threshold must be a number"):
        M.IOUScore(threshold="0.5")


# ---------------------------------------------------------------------------------------------------------
#   SMP-style statistics
# ---------------------------------------------------------------------------------------------------------


def _np_reduce(stats, metric, reduction, weights=None, beta=1.0):
    tp, fp, fn, tn = stats

    def score(tp, fp, fn, tn):
        num, den = {
            "iou": (tp, tp + fp + fn),
            "fscore": ((1 + beta**2) * tp, (1 + beta**2) * tp + beta**2 * fn + fp),
            "precision": (tp, tp + fp),
            "recall": (tp, tp + fn),
            "accuracy": (tp + tn, tp + fp + fn + tn),
            "specificity": (tn, tn + fp),
        }[metric]
        return np.where(den > 0, num / np.where(den > 0, den, 1), 1.0)

    w = None if weights is None else np.asarray(weights) / np.sum(weights)
    if reduction == "micro":
        return score(tp.sum(), fp.sum(), fn.sum(), tn.sum())
    if reduction in ("macro", "weighted"):
        s = score(tp.sum(0), fp.sum(0), fn.sum(0), tn.sum(0))
        return s.mean() if w is None else (s * w).sum()
    if reduction == "micro-imagewise":
        return score(tp.sum(1), fp.sum(1), fn.sum(1), tn.sum(1)).mean()
    if reduction in ("macro-imagewise", "weighted-imagewise"):
        s = score(tp, fp, fn, tn).mean(0)
        return s.mean() if w is None else (s * w).sum()
    return score(tp, fp, fn, tn)


def test_get_stats_and_reductions_match_numpy():
    rng = np.random.default_rng(5)
    y, p = ref.make_data("multiclass", seed=5, ignore=255, target="int")
    labels = p.argmax(-1)
    cases = [
        ("multiclass-scores", (p, y, "multiclass"), dict(ignore_index=255)),
        ("multiclass-labels", (labels, y[..., None], "multiclass"), dict(ignore_index=255, num_classes=4)),
        ("multilabel", ref.make_data("multilabel", seed=6)[::-1] + ("multilabel",), dict(threshold=0.5)),
        (
            "binary-ignore",
            ref.make_data("binary", seed=7, ignore=255)[::-1] + ("binary",),
            dict(threshold=0.5, ignore_index=255),
        ),
    ]
    for case_id, (output, target, mode), opts in cases:
        got = np.stack([keras.ops.convert_to_numpy(s) for s in F.get_stats(output, target, mode, **opts)])
        want = ref.get_stats(output, target, mode, **opts)
        np.testing.assert_array_equal(got, want, err_msg=case_id)
        for reduction in F.REDUCTIONS:
            for metric in ("iou", "fscore", "precision", "recall", "accuracy", "specificity"):
                weights = rng.random(got.shape[-1]) + 0.1 if "weighted" in reduction else None
                value = F.score_from_stats(
                    *got.astype("int32"),
                    metric=metric,
                    reduction=reduction,
                    class_weights=weights,
                    beta=2.0 if metric == "fscore" else 1.0,
                )
                np.testing.assert_allclose(
                    keras.ops.convert_to_numpy(value),
                    _np_reduce(want, metric, reduction, weights, 2.0),
                    rtol=1e-5,
                    err_msg=f"{case_id} {metric} {reduction}",
                )
    with pytest.raises(ValueError, match="needs class_weights"):
        F.score_from_stats(*got, reduction="weighted")
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.score_from_stats(*got, reduction="mean")
    with pytest.raises(ValueError, match="pass threshold"):
        F.get_stats(p, (p > 0.5).astype("float32"), "multilabel")
    with pytest.raises(ValueError, match="num_classes is needed"):
        F.get_stats(labels, y, "multiclass")
    assert M.get_stats is F.get_stats and M.score_from_stats is F.score_from_stats
