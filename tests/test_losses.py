"""Losses: values equal a numpy reference for every option, names, combinations, errors, finite gradients."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import segmentation_models as sm
from segmentation_models import losses as L

import seg_reference as ref
from conftest import BACKEND, ON_TF
from helpers import pick


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """No models here: seeds only (clear_session costs ~1 s per test on TensorFlow)."""
    keras.utils.set_random_seed(0)
    yield


# (id, data kind, make_data options, loss options) shared by the region losses (Jaccard, Dice, Tversky)
REGION_CASES = [
    ("binary", "binary", {}, {}),
    ("binary-logits-ignore", "binary", dict(logits=True, ignore=255), dict(from_logits=True, ignore_index=255)),
    ("onehot-weights-per_image", "multiclass", {}, dict(class_weights=[0.1, 0.2, 0.3, 0.4], per_image=True)),
    (
        "int-ignore-indexes-weights",
        "multiclass",
        dict(ignore=255, target="int"),
        dict(ignore_index=255, class_indexes=[1, 3], class_weights=[1.0, 2.0]),
    ),
    (
        "int1-logits-per_image-ignore0",
        "multiclass",
        dict(logits=True, target="int1", ignore=0),
        dict(from_logits=True, per_image=True, ignore_index=0, smooth=0.5),
    ),
    (
        "multilabel-logits-ignore-index",
        "multilabel",
        dict(logits=True, ignore=-1),
        dict(mode="multilabel", from_logits=True, ignore_index=-1, class_indexes=2),
    ),
    ("onehot-ignore-smooth", "multiclass", dict(ignore=255), dict(ignore_index=255, smooth=1.0)),
]
BINARY_CASES = [
    ("binary", "binary", {}, {}),
    ("binary-logits-ignore", "binary", dict(logits=True, ignore=255), dict(from_logits=True, ignore_index=255)),
    ("multilabel", "multilabel", {}, dict(mode="multilabel")),
    (
        "multilabel-logits-ignore",
        "multilabel",
        dict(logits=True, ignore=-1),
        dict(mode="multilabel", from_logits=True, ignore_index=-1),
    ),
    ("onehot-as-multilabel", "multiclass", {}, {}),
]
CATEGORICAL_CASES = [
    ("onehot", "multiclass", {}, {}),
    ("onehot-weights", "multiclass", {}, dict(class_weights=[0.5, 1.0, 2.0, 0.1])),
    ("int-ignore-indexes", "multiclass", dict(ignore=255, target="int"), dict(ignore_index=255, class_indexes=[0, 2])),
    ("int1-logits", "multiclass", dict(logits=True, target="int1"), dict(from_logits=True)),
    ("onehot-logits-ignore", "multiclass", dict(logits=True, ignore=255), dict(from_logits=True, ignore_index=255)),
]


# JAX and torch run a subset in which every option still occurs (JAX compiles each eager op per new shape)
REGION_CASES = pick(REGION_CASES, [REGION_CASES[i] for i in (1, 3, 4, 5)])
BINARY_CASES = pick(BINARY_CASES, [BINARY_CASES[i] for i in (0, 3)])
CATEGORICAL_CASES = pick(CATEGORICAL_CASES, [CATEGORICAL_CASES[i] for i in (1, 2, 4)])


def _mode(kind, options, multi="multiclass"):
    return options.get("mode") or ("binary" if kind == "binary" else multi)


def _check(cases, make_loss, reference, multi="multiclass"):
    for case_id, kind, data_opts, options in cases:
        y, p = ref.make_data(kind, seed=hash(case_id) % 1000, **data_opts)
        got = float(make_loss(options)(y, p))
        want = reference(y, p, _mode(kind, options, multi), options)
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6, err_msg=case_id)


def _ref_opts(options, *keys):
    return {k: options[k] for k in keys if k in options}


REGION = ("class_weights", "class_indexes", "per_image", "smooth", "from_logits", "ignore_index")


def test_jaccard_dice_tversky_match_numpy():
    _check(
        REGION_CASES,
        lambda o: L.JaccardLoss(**o),
        lambda y, p, m, o: 1 - ref.score("iou", y, p, m, **_ref_opts(o, *REGION)),
    )
    _check(
        REGION_CASES,
        lambda o: L.DiceLoss(beta=2, **o),
        lambda y, p, m, o: 1 - ref.score("fscore", y, p, m, beta=2, **_ref_opts(o, *REGION)),
    )
    _check(
        REGION_CASES,
        lambda o: L.TverskyLoss(alpha=0.3, beta=0.7, gamma=1.5, **o),
        lambda y, p, m, o: (1 - ref.score("iou", y, p, m, tversky=(0.3, 0.7), **_ref_opts(o, *REGION))) ** 1.5,
    )


def test_binary_losses_match_numpy():
    def bce_opts(o):
        return dict(o, class_weights=[0.5, 1.0, 2.0]) if o.get("mode") == "multilabel" else o

    _check(
        BINARY_CASES,
        lambda o: L.BinaryCELoss(**bce_opts(o)),
        lambda y, p, m, o: ref.binary_crossentropy(
            y, p, m, **_ref_opts(bce_opts(o), "class_weights", "from_logits", "ignore_index")
        ),
        multi="multilabel",
    )
    _check(
        BINARY_CASES,
        lambda o: L.BinaryFocalLoss(alpha=0.3, gamma=1.5, **o),
        lambda y, p, m, o: ref.binary_focal(y, p, m, 0.3, 1.5, **_ref_opts(o, "from_logits", "ignore_index")),
        multi="multilabel",
    )
    _check(
        BINARY_CASES,
        lambda o: L.SoftBCELoss(smooth_factor=0.1, pos_weight=2.0, **o),
        lambda y, p, m, o: ref.soft_bce(y, p, m, 0.1, 2.0, **_ref_opts(o, "from_logits", "ignore_index")),
        multi="multilabel",
    )
    cases = [c for c in BINARY_CASES if c[1] != "multiclass"]
    for per_image in (False, True):
        _check(
            cases,
            lambda o: L.LovaszLoss(per_image=per_image, **o),  # noqa: B023  (called in this iteration)
            lambda y, p, m, o: ref.lovasz_hinge(y, p, m, per_image, **_ref_opts(o, "from_logits", "ignore_index")),  # noqa: B023  (called in this iteration)
            multi="multilabel",
        )


def test_categorical_losses_match_numpy():
    cat = ("class_weights", "class_indexes", "from_logits", "ignore_index")
    _check(
        CATEGORICAL_CASES,
        lambda o: L.CategoricalCELoss(**o),
        lambda y, p, m, o: ref.categorical_crossentropy(y, p, **_ref_opts(o, *cat)),
    )
    _check(
        CATEGORICAL_CASES,
        lambda o: L.CategoricalFocalLoss(alpha=0.5, gamma=1.0, **o),
        lambda y, p, m, o: ref.categorical_focal(y, p, 0.5, 1.0, **_ref_opts(o, *cat)),
    )
    soft = [c for c in CATEGORICAL_CASES if "class_indexes" not in c[3]]
    _check(
        soft,
        lambda o: L.SoftCELoss(smooth_factor=0.1, **o),
        lambda y, p, m, o: ref.soft_ce(y, p, 0.1, **_ref_opts(o, "class_weights", "from_logits", "ignore_index")),
    )
    for per_image in (False, True):
        _check(
            CATEGORICAL_CASES,
            lambda o: L.LovaszLoss(per_image=per_image, **_ref_opts(o, *cat[1:])),  # noqa: B023  (called in this iteration)
            lambda y, p, m, o: ref.lovasz_softmax(y, p, per_image, **_ref_opts(o, *cat[1:])),  # noqa: B023  (called in this iteration)
        )


def test_soft_labels_and_label_smoothing():
    y, p = ref.make_data("multiclass", seed=3, logits=True)
    soft = 0.8 * y + 0.05  # rows sum to 1
    np.testing.assert_allclose(
        float(L.SoftCELoss(smooth_factor=0.2, from_logits=True)(y, p)),
        float(L.SoftCELoss(from_logits=True)(soft, p)),
        rtol=1e-5,
    )
    assert float(L.CategoricalCELoss(from_logits=True)(soft, p)) > 0


def test_101_names_aliases_and_operators():
    expected = {
        "jaccard_loss": "jaccard_loss",
        "dice_loss": "dice_loss",
        "binary_focal_loss": "binary_focal_loss",
        "categorical_focal_loss": "focal_loss",
        "binary_crossentropy": "binary_crossentropy",
        "categorical_crossentropy": "categorical_crossentropy",
        "bce_dice_loss": "binary_crossentropy_plus_dice_loss",
        "bce_jaccard_loss": "binary_crossentropy_plus_jaccard_loss",
        "cce_dice_loss": "categorical_crossentropy_plus_dice_loss",
        "cce_jaccard_loss": "categorical_crossentropy_plus_jaccard_loss",
        "binary_focal_dice_loss": "binary_focal_loss_plus_dice_loss",
        "binary_focal_jaccard_loss": "binary_focal_loss_plus_jaccard_loss",
        "categorical_focal_dice_loss": "focal_loss_plus_dice_loss",
        "categorical_focal_jaccard_loss": "focal_loss_plus_jaccard_loss",
    }
    for attr, name in expected.items():
        obj = getattr(sm.losses, attr)
        assert obj.__name__ == name and obj.name == name, attr
        assert isinstance(obj, keras.losses.Loss) and isinstance(obj, sm.base.Loss)
    y, p = ref.make_data("multiclass", seed=4)
    combo = 0.5 * L.dice_loss + L.jaccard_loss * 2
    assert combo.name == "0.5dice_loss_plus_2jaccard_loss"
    np.testing.assert_allclose(
        float(combo(y, p)), 0.5 * float(L.dice_loss(y, p)) + 2 * float(L.jaccard_loss(y, p)), rtol=1e-6
    )
    assert sum([L.dice_loss, L.jaccard_loss]).name == "dice_loss_plus_jaccard_loss"
    with pytest.raises(ValueError, match="can be added"):
        L.dice_loss + "mse"
    with pytest.raises(ValueError, match="multiplied by a number"):
        L.dice_loss * L.dice_loss


def test_get_by_name_and_suggestions():
    assert L.get("bce_jaccard_loss").name == "binary_crossentropy_plus_jaccard_loss"
    assert L.get("binary_crossentropy_plus_jaccard_loss").name == "binary_crossentropy_plus_jaccard_loss"
    assert L.get("focal_loss").name == "focal_loss"
    assert isinstance(L.get("DiceLoss"), L.DiceLoss)
    assert L.get("jaccard_loss") is not L.jaccard_loss  # a copy: callers may change it
    assert L.get("mse") is not None  # Keras' own names still work
    with pytest.raises(ValueError, match="Did you mean 'jaccard_loss'"):
        L.get("jacard_loss")
    assert "bce_jaccard_loss" in L.available()


def test_config_round_trip_keeps_options():
    loss = L.JaccardLoss(
        class_weights=np.array([1.0, 2.0]),
        class_indexes=[0, 2],
        per_image=True,
        smooth=0.5,
        from_logits=True,
        ignore_index=255,
    ) + 0.3 * L.LovaszLoss(mode="multiclass")
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert copy.name == loss.name
    assert copy.l1.get_config() == loss.l1.get_config()
    assert copy.l1.class_weights == [1.0, 2.0] and copy.l2.multiplier == 0.3
    y, p = ref.make_data("multiclass", seed=5, logits=True, ignore=255, target="int")
    np.testing.assert_allclose(float(copy(y, p)), float(loss(y, p)), rtol=1e-6)


def test_clear_errors_name_the_shapes():
    y, p = ref.make_data("multiclass", seed=6)
    with pytest.raises(ValueError, match=r"y_true shape \(2, 6, 6, 3\) does not match y_pred shape \(2, 6, 6, 4\)"):
        L.dice_loss(y[..., :3], p)
    with pytest.raises(ValueError, match=r"\(2, 5, 6, 4\).*\(2, 6, 6, 4\).*batch/spatial"):
        L.dice_loss(y[:, :5], p)
    with pytest.raises(ValueError, match=r"class_indexes \[4\] out of range: y_pred has shape \(2, 6, 6, 4\)"):
        L.JaccardLoss(class_indexes=[0, 4])(y, p)
    with pytest.raises(ValueError, match=r"class_weights has 3 values but y_pred with shape \(2, 6, 6, 4\) has 4"):
        L.CategoricalCELoss(class_weights=[1, 2, 3])(y, p)
    with pytest.raises(ValueError, match=r"class_weights has 3 values.*2 classes selected by class_indexes=\[0, 1\]"):
        L.DiceLoss(class_weights=[1, 2, 3], class_indexes=[0, 1])(y, p)
    with pytest.raises(ValueError, match="integer class mask needs mode='multiclass'"):
        L.JaccardLoss(mode="multilabel")(y[..., :1], p)
    with pytest.raises(ValueError, match="mode must be one of"):
        L.DiceLoss(mode="multi")
    with pytest.raises(ValueError, match="class_indexes must be"):
        L.JaccardLoss(class_indexes=[-1])
    with pytest.raises(ValueError, match="smooth_factor"):
        L.SoftCELoss(smooth_factor=1.5)


# ---------------------------------------------------------------------------------------------------------
#   Gradients
# ---------------------------------------------------------------------------------------------------------


def _grad(fn, x):
    """d fn(x) / dx on the current backend."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        v = tf.Variable(x)
        with tf.GradientTape() as tape:
            out = fn(v)
        return np.asarray(tape.gradient(out, v), dtype=np.float64)
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(lambda t: fn(t).astype("float32"))(keras.ops.convert_to_tensor(x)), np.float64)

    t = keras.ops.convert_to_tensor(x).detach().requires_grad_(True)
    fn(t).backward()
    return t.grad.detach().float().numpy().astype(np.float64)


# the 1.0.1 combinations are sums of these, so their gradients are finite when these are
GRAD_LOSSES = {
    "jaccard": L.jaccard_loss,
    "dice": L.dice_loss,
    "bce": L.binary_crossentropy,
    "cce": L.categorical_crossentropy,
    "binary_focal": L.binary_focal_loss,
    "categorical_focal": L.categorical_focal_loss,
    "tversky_focal": L.TverskyLoss(alpha=0.7, beta=0.3, gamma=2.0),
    "lovasz_softmax": L.LovaszLoss(per_image=True),
    "lovasz_hinge": L.LovaszLoss(mode="multilabel"),
    "soft_bce": L.SoftBCELoss(smooth_factor=0.1),
    "soft_ce": L.SoftCELoss(smooth_factor=0.1),
    "jaccard_ignore": L.JaccardLoss(ignore_index=255, per_image=True),
    "soft_ce_ignore": L.SoftCELoss(ignore_index=255),
    "bce_ignore": L.BinaryCELoss(ignore_index=255),
}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_gradients_are_finite_on_edge_cases(dtype):
    shape = (2, 6, 6, 3)  # the shape of the multilabel test data: JAX compiles each op once per shape
    onehot = np.eye(3, dtype="float32")[np.random.default_rng(0).integers(0, 3, shape[:3])]
    empty, full, uniform = np.zeros(shape, "float32"), np.ones(shape, "float32"), np.full(shape, 1 / 3, "float32")
    pairs = {
        "empty-zeros": (empty, empty),
        "empty-ones": (empty, full),
        "full-ones": (full, full),
        "full-zeros": (full, empty),
        "onehot-exact": (onehot, onehot),
        "onehot-opposite": (onehot, 1 - onehot),
        "onehot-uniform": (onehot, uniform),
    }
    if dtype != "float32":  # mixed precision: a representative pair, the others are dtype independent
        pairs = {k: pairs[k] for k in pick(["onehot-exact", "onehot-uniform"], ["onehot-uniform"])}
    else:
        pairs = {
            k: pairs[k] for k in pick(list(pairs), ["empty-zeros", "full-ones", "onehot-exact", "onehot-opposite"])
        }
    bad = []
    for loss_name, loss in GRAD_LOSSES.items():
        cases = dict(pairs)
        if "ignore" in loss_name:
            cases["all-ignored"] = (np.full(shape, 255.0, "float32"), uniform)
        for case, (y, p) in cases.items():
            g = _grad(lambda v: loss(y, v), keras.ops.convert_to_tensor(p, dtype=dtype))  # noqa: B023  (called in this iteration)
            if not np.isfinite(g).all():
                bad.append((loss_name, case))
    assert not bad, f"non-finite gradients ({dtype}): {bad}"


def test_functional_accepts_and_ignores_backend_kwarg():
    y, p = ref.make_data("multiclass", seed=7)
    f = sm.base.functional
    assert float(f.iou_score(y, p, backend=keras.backend)) == pytest.approx(
        ref.score("iou", y, p, "multiclass"), rel=1e-5
    )
    assert float(f.f_score(y, p, beta=2, backend=None)) == pytest.approx(
        ref.score("fscore", y, p, "multiclass", beta=2), rel=1e-5
    )
    with pytest.raises(TypeError, match="unexpected keyword"):
        f.iou_score(y, p, bakend=None)


# ---------------------------------------------------------------------------------------------------------
#   Pixel weights: Keras' sample_weight acts inside the losses (CLI data: one-hot, zero rows at void, w)
# ---------------------------------------------------------------------------------------------------------


def _void_data(kind="multiclass", seed=11, junk_at_void=False):
    """(integer/255-marked targets, dense targets for the weights, predictions, pixel weights (B, H, W))."""
    if kind == "multiclass":
        labels, p = ref.make_data("multiclass", seed=seed, ignore=255, target="int")
        w = (labels != 255).astype("float32")
        # CLI format: all-zero rows at void; or any class there (padding with junk): weight 0 must drop it too
        filled = np.where(
            w > 0, labels, np.random.default_rng(seed).integers(0, 4, labels.shape) if junk_at_void else 0
        ).astype(int)
        dense = np.eye(4, dtype="float32")[filled] * (1.0 if junk_at_void else w[..., None])
        return labels, dense, p, w
    y, p = ref.make_data("binary", seed=seed, ignore=255)
    w = (y[..., 0] != 255).astype("float32")
    return y, np.where(y == 255, 1.0 if junk_at_void else 0.0, y).astype("float32"), p, w


def _multiclass_weight_cases():
    void = dict(ignore_index=255)
    cat = lambda y, p, **o: ref.categorical_crossentropy(y, p, **o)  # noqa: E731
    fscore = lambda y, p, **o: ref.score("fscore", y, p, "multiclass", **o)  # noqa: E731
    cases = [  # (id, loss from options, numpy reference on the void-marked labels)
        ("cce", lambda **o: L.CategoricalCELoss(**o), lambda y, p: cat(y, p, **void)),
        ("dice-beta2", lambda **o: L.DiceLoss(beta=2, **o), lambda y, p: 1 - fscore(y, p, beta=2, **void)),
        (
            "jaccard-per_image",
            lambda **o: L.JaccardLoss(per_image=True, **o),
            lambda y, p: 1 - ref.score("iou", y, p, "multiclass", per_image=True, **void),
        ),
        (
            "tversky",
            lambda **o: L.TverskyLoss(alpha=0.3, beta=0.7, gamma=1.5, **o),
            lambda y, p: (1 - ref.score("iou", y, p, "multiclass", tversky=(0.3, 0.7), **void)) ** 1.5,
        ),
        (
            "focal",
            lambda **o: L.CategoricalFocalLoss(alpha=0.5, gamma=1.0, **o),
            lambda y, p: ref.categorical_focal(y, p, 0.5, 1.0, **void),
        ),
        ("soft_ce", lambda **o: L.SoftCELoss(smooth_factor=0.1, **o), lambda y, p: ref.soft_ce(y, p, 0.1, **void)),
        (
            "lovasz-per_image",
            lambda **o: L.LovaszLoss(per_image=True, **o),
            lambda y, p: ref.lovasz_softmax(y, p, True, **void),
        ),
        (
            "cce+dice",
            lambda **o: L.CategoricalCELoss(**o) + L.DiceLoss(**o),
            lambda y, p: cat(y, p, **void) + 1 - fscore(y, p, **void),
        ),
        (
            "0.5lovasz+jaccard",
            lambda **o: 0.5 * L.LovaszLoss(**o) + L.JaccardLoss(**o),
            lambda y, p: 0.5 * ref.lovasz_softmax(y, p, **void) + 1 - ref.score("iou", y, p, "multiclass", **void),
        ),
    ]
    return pick(cases, [c for c in cases if c[0] in ("lovasz-per_image", "cce+dice")])


def test_pixel_weights_leave_void_out_like_ignore_index():
    """CE/Dice/... with void weighted 0 == the loss on the non-void pixels only (numpy) == ignore_index."""
    labels, dense, p, w = _void_data()
    _, junk, _, _ = _void_data(junk_at_void=True)
    for case_id, make, reference in _multiclass_weight_cases():
        want = reference(labels, p)
        got = {
            "zero-rows": float(make()(dense, p, sample_weight=w)),
            "junk-at-void": float(make()(junk, p, sample_weight=w[..., None])),  # (B, H, W, 1) weights
            "ignore_index": float(make(ignore_index=255)(labels, p)),
        }
        for how, value in got.items():
            np.testing.assert_allclose(value, want, rtol=2e-4, atol=2e-6, err_msg=f"{case_id} {how}")
    y, dense, p, w = _void_data("binary")
    _, junk, _, _ = _void_data("binary", junk_at_void=True)
    void = dict(ignore_index=255)
    binary = [
        ("bce", L.BinaryCELoss(), ref.binary_crossentropy(y, p, "binary", **void)),
        ("lovasz_hinge", L.LovaszLoss(), ref.lovasz_hinge(y, p, "binary", **void)),
    ]
    if ON_TF:  # JAX compiles each eager op per new shape: a subset elsewhere
        binary += [
            ("dice", L.DiceLoss(), 1 - ref.score("fscore", y, p, "binary", **void)),
            (
                "binary_focal",
                L.BinaryFocalLoss(alpha=0.3, gamma=1.5),
                ref.binary_focal(y, p, "binary", 0.3, 1.5, **void),
            ),
            ("soft_bce", L.SoftBCELoss(smooth_factor=0.1), ref.soft_bce(y, p, "binary", 0.1, **void)),
        ]
    targets = {"zeros": dense, "junk": junk}
    for case_id, loss, want in binary:
        for how in pick(targets, ["junk"]):
            np.testing.assert_allclose(
                float(loss(targets[how], p, sample_weight=w)), want, rtol=2e-4, atol=2e-6, err_msg=f"{case_id} {how}"
            )


def test_fractional_and_per_image_weights():
    labels, dense, p, void_w = _void_data(seed=12)
    w = void_w * np.random.default_rng(0).uniform(0.2, 2.0, void_w.shape).astype("float32")
    w64, gt, pr = w.astype(np.float64)[..., None], dense.astype(np.float64), p.astype(np.float64)
    # 1.0.1's CE is a mean over pixels and classes: sum(w * gt * log p) / (C * sum(w))
    want_ce = -np.sum(w64 * gt * np.log(np.clip(pr, 1e-7, 1 - 1e-7))) / (4 * w64.sum())
    tp = np.sum(w64 * gt * pr, axis=(0, 1, 2))
    fp, fn = np.sum(w64 * pr, axis=(0, 1, 2)) - tp, np.sum(w64 * gt, axis=(0, 1, 2)) - tp
    want_dice = 1 - np.mean((2 * tp + 1e-5) / (2 * tp + fp + fn + 1e-5))
    cce_dice = L.cce_dice_loss
    np.testing.assert_allclose(float(L.categorical_crossentropy(dense, p, sample_weight=w)), want_ce, rtol=1e-5)
    np.testing.assert_allclose(float(L.dice_loss(dense, p, sample_weight=w)), want_dice, rtol=1e-5)
    np.testing.assert_allclose(float(cce_dice(dense, p, sample_weight=3 * w)), want_ce + want_dice, rtol=1e-5)
    # per-image weights (B,) weigh every pixel of an image
    image_w = np.array([0.0, 2.0], "float32")
    np.testing.assert_allclose(
        float(cce_dice(dense, p, sample_weight=image_w)), float(cce_dice(dense[1:], p[1:])), rtol=1e-5
    )
    np.testing.assert_allclose(
        float(cce_dice(dense, p, sample_weight=image_w)),
        float(cce_dice(dense, p, sample_weight=np.broadcast_to(image_w[:, None, None], w.shape))),
        rtol=1e-6,
    )
    # everything ignored: 0 (CE) and a perfect score (Dice, by smoothing), finite gradients
    zeros = np.zeros_like(w)
    assert float(L.categorical_crossentropy(dense, p, sample_weight=zeros)) == 0.0
    assert float(L.dice_loss(dense, p, sample_weight=zeros)) == pytest.approx(0.0, abs=1e-6)
    for case in pick(["all-zero", "fractional"], ["fractional"]):
        weights = zeros if case == "all-zero" else w
        g = _grad(lambda v: cce_dice(dense, v, sample_weight=weights), keras.ops.convert_to_tensor(p))  # noqa: B023  (called in this iteration)
        assert np.isfinite(g).all() and (g[weights == 0] == 0).all()


def test_sample_weight_errors_and_user_losses_keep_keras_weighting():
    _, dense, p, w = _void_data()
    with pytest.raises(
        ValueError,
        match=r"sample_weight with shape \(2, 5\) does not fit y_pred with shape "
        r"\(2, 6, 6, 4\): give per-pixel weights \(B, H, W\)",
    ):
        L.dice_loss(dense, p, sample_weight=np.ones((2, 5), "float32"))
    with pytest.raises(ValueError, match=r"sample_weight with shape \(2, 6, 5\) does not fit"):
        L.categorical_crossentropy(dense, p, sample_weight=np.ones((2, 6, 5), "float32"))
    with pytest.raises(ValueError, match="lovasz_softmax needs per-pixel"):
        L.lovasz_loss(dense, p, sample_weight=np.ones(p.shape, "float32"))

    class MeanSquare(sm.base.Loss):  # a user loss whose call takes no sample_weight: Keras weights its value
        def call(self, y_true, y_pred):
            return keras.ops.mean(keras.ops.square(y_true - y_pred))

    plain = float(MeanSquare()(dense, p))
    np.testing.assert_allclose(float(MeanSquare()(dense, p, sample_weight=w)), plain * w.mean(), rtol=1e-5)
