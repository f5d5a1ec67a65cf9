"""Values and names equal segmentation_models 1.0.1's (one oracle subprocess computes every case)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import segmentation_models as sm

import seg_reference as ref
from conftest import ON_TF, run_oracle

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(not ON_TF, reason="oracle comparisons run once, on the TensorFlow pass"),
]

DATA = {"binary": 1, "multiclass": 4, "multilabel": 3}


def _cases() -> list[tuple[str, str]]:
    """(data kind, expression) pairs; expressions use gt, pr, np, F (functional), L (losses), M (metrics)."""
    cases = []
    for kind, c in DATA.items():
        w = f"np.array({[round(0.25 * (i + 1), 2) for i in range(c)]})"
        idx = "[0, 2]" if c > 2 else "0"
        w_idx = "np.array([2.0, 0.5])" if c > 2 else "np.array([2.0])"
        for fn in ("iou_score", "f_score", "precision", "recall"):
            for opts in (
                "",
                "per_image=True",
                f"class_weights={w}",
                f"class_indexes={idx}",
                f"class_indexes={idx}, class_weights={w_idx}",
                "threshold=0.5",
                "smooth=1.0",
                "per_image=True, threshold=0.3, smooth=0.1",
            ):
                cases.append((kind, f"F.{fn}(gt, pr, {opts})"))
        cases += [
            (kind, "F.f_score(gt, pr, beta=2, per_image=True)"),
            (kind, "F.binary_crossentropy(gt, pr)"),
            (kind, "F.binary_focal_loss(gt, pr, gamma=1.5, alpha=0.4)"),
        ]
        for name in (
            "jaccard_loss",
            "dice_loss",
            "binary_focal_loss",
            "binary_crossentropy",
            "bce_dice_loss",
            "bce_jaccard_loss",
            "binary_focal_dice_loss",
            "binary_focal_jaccard_loss",
        ):
            cases.append((kind, f"L.{name}"))
        for name in ("iou_score", "f1_score", "f2_score", "precision", "recall"):
            cases.append((kind, f"M.{name}"))
        cases += [
            (kind, f"L.JaccardLoss(class_weights={w}, per_image=True)"),
            (kind, f"L.DiceLoss(beta=2, class_indexes={idx}, smooth=1.0)"),
            (kind, "L.BinaryFocalLoss(alpha=0.5, gamma=1.0)"),
            (kind, "0.5 * L.dice_loss + L.binary_crossentropy * 2"),
            (kind, f"M.IOUScore(class_weights={w}, threshold=0.5, per_image=True, name='iou_w')"),
            (kind, f"M.FScore(beta=3, class_indexes={idx})"),
        ]
        if kind == "multiclass":
            for name in (
                "categorical_focal_loss",
                "categorical_crossentropy",
                "cce_dice_loss",
                "cce_jaccard_loss",
                "categorical_focal_dice_loss",
                "categorical_focal_jaccard_loss",
            ):
                cases.append((kind, f"L.{name}"))
            cases += [
                (kind, f"F.categorical_crossentropy(gt, pr, class_weights={w})"),
                (kind, f"L.CategoricalCELoss(class_weights={w_idx}, class_indexes={idx})"),
                (kind, f"L.CategoricalFocalLoss(alpha=0.5, gamma=1.0, class_indexes={idx})"),
                (kind, "F.categorical_focal_loss(gt, pr, gamma=3.0, alpha=0.1)"),
            ]
    return cases


def _evaluate(expr, gt, pr, F, L, M):
    obj = eval(expr)  # noqa: S307 - test-defined expressions
    if callable(obj):
        return float(obj(gt, pr)), obj.__name__
    return float(obj), None


@pytest.fixture(scope="module")
def oracle_values(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oracle_losses")
    data = {}
    for i, kind in enumerate(DATA):
        y, p = ref.make_data(kind, seed=10 + i, batch=3, size=8)
        if kind == "binary":  # some empty and some full images: the smooth terms matter
            y[0], y[1] = 0.0, 1.0
        data[f"{kind}_gt"], data[f"{kind}_pr"] = y, p
    np.savez(folder / "data.npz", **data)
    (folder / "cases.json").write_text(json.dumps(_cases()))
    out = run_oracle(
        """
        import functools, json, types
        import numpy as np
        import keras
        from keras.src.legacy import backend as legacy
        import segmentation_models as sm
        # 1.0.1 calls keras.backend.sum & co, which Keras 3 dropped: give it the legacy tf.keras backend functions
        B = types.SimpleNamespace(**{n: getattr(legacy, n) for n in dir(legacy) if not n.startswith('_')})
        B.floatx, B.epsilon = keras.config.floatx, keras.config.epsilon
        B.image_data_format = keras.config.image_data_format
        sm.base.KerasObject.set_submodules(backend=B, layers=keras.layers, models=keras.models, utils=keras.utils)
        F = types.SimpleNamespace(**{n: functools.partial(getattr(sm.base.functional, n), backend=B)
                                     for n in dir(sm.base.functional) if callable(getattr(sm.base.functional, n))})
        L, M = sm.losses, sm.metrics
        data = np.load('data.npz')
        results = []
        for kind, expr in json.load(open('cases.json')):
            gt, pr = data[kind + '_gt'], data[kind + '_pr']
            obj = eval(expr)
            results.append((float(obj(gt, pr)), obj.__name__) if callable(obj) else (float(obj), None))
        print(json.dumps(results))
        """,
        folder,
    )
    return dict(data), json.loads(out.strip().splitlines()[-1])


def test_values_and_names_equal_101(oracle_values):
    data, expected = oracle_values
    F, L, M = sm.base.functional, sm.losses, sm.metrics
    bad = []
    for (kind, expr), (want, want_name) in zip(_cases(), expected):
        got, name = _evaluate(expr, data[f"{kind}_gt"], data[f"{kind}_pr"], F, L, M)
        if not np.isclose(got, want, rtol=1e-5, atol=1e-6) or name != want_name:
            bad.append((kind, expr, got, want, name, want_name))
    assert len(expected) == len(_cases()) > 150
    assert not bad, f"{len(bad)} cases differ from 1.0.1: {bad[:5]}"
