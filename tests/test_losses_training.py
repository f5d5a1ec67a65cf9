"""fit / evaluate / save with the losses and metrics on this backend; compiled reload in a fresh process."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import segmentation_models as sm
from segmentation_models import losses as L, metrics as M

import seg_reference as ref
from conftest import BACKEND, ON_TF, run_fresh_python


def _tiny_model(classes: int, activation: str) -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(classes, 1, activation=activation)(x))


def _data(classes: int, n: int = 4):
    rng = np.random.default_rng(0)
    x = rng.random((n, 16, 16, 3)).astype("float32")
    if classes == 1:
        return x, (x[..., :1] > 0.5).astype("float32")
    labels = np.digitize(x[..., 0], [0.33, 0.66]).astype("float32")  # (n, H, W) integer mask
    labels[x[..., 1] > 0.9] = 255  # void pixels
    return x, labels


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Models saved by the tests below, reloaded together in one fresh process by the last test."""
    return {"folder": tmp_path_factory.mktemp("compiled_models"), "items": []}


def _fit_evaluate_save(model, loss, metrics, x, y, references, saved, tag):
    model.compile(keras.optimizers.Adam(1e-2), loss=loss, metrics=metrics)  # compiled (jit / tf.function)
    history = model.fit(x, y, batch_size=2, epochs=3 if ON_TF else 2, verbose=0, shuffle=False).history
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0], history["loss"]
    logs = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)  # 2 batches accumulated
    pred = keras.ops.convert_to_numpy(model(x, training=False))
    for name, reference in references.items():
        np.testing.assert_allclose(logs[name], reference(y, pred), rtol=2e-4, atol=1e-6, err_msg=name)
    path = saved["folder"] / f"{tag}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.loss.name == loss.name and type(reloaded.loss) is type(loss)
    assert reloaded.loss.get_config() == loss.get_config()
    if ON_TF:  # elsewhere the fresh-process test below evaluates the reloaded model (one compilation less)
        again = reloaded.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
        np.testing.assert_allclose([again[k] for k in sorted(logs)], [logs[k] for k in sorted(logs)], rtol=1e-5)
    np.save(saved["folder"] / f"{tag}_x.npy", x)
    np.save(saved["folder"] / f"{tag}_y.npy", y)
    saved["items"].append((str(path), tag, loss.name, logs))


def test_fit_evaluate_save_binary_with_every_binary_loss_and_metric(saved):
    loss = sum(
        [
            L.jaccard_loss,
            L.dice_loss,
            L.binary_crossentropy,
            L.binary_focal_loss,
            L.bce_dice_loss,
            L.bce_jaccard_loss,
            L.binary_focal_dice_loss,
            L.binary_focal_jaccard_loss,
            L.TverskyLoss(alpha=0.7, beta=0.3, gamma=1.5),
            L.LovaszLoss(per_image=True),
            0.5 * L.SoftBCELoss(smooth_factor=0.1),
        ]
    )
    metrics = [
        M.iou_score,
        M.f1_score,
        M.f2_score,
        M.precision,
        M.recall,
        M.IOUScore(threshold=0.5, per_image=True, name="iou_per_image"),
    ]
    references = {
        "iou_score": lambda y, p: ref.score("iou", y, p, "binary"),
        "f1-score": lambda y, p: ref.score("fscore", y, p, "binary"),
        "f2-score": lambda y, p: ref.score("fscore", y, p, "binary", beta=2),
        "precision": lambda y, p: ref.score("precision", y, p, "binary"),
        "recall": lambda y, p: ref.score("recall", y, p, "binary"),
        "iou_per_image": lambda y, p: ref.score("iou", y, p, "binary", threshold=0.5, per_image=True),
    }
    x, y = _data(1)
    _fit_evaluate_save(_tiny_model(1, "sigmoid"), loss, metrics, x, y, references, saved, "binary")


def test_fit_evaluate_save_multiclass_integer_masks_with_ignore_index(saved):
    void = dict(ignore_index=255)
    loss = sum(
        [
            L.CategoricalCELoss(**void),
            L.CategoricalFocalLoss(**void),
            L.JaccardLoss(**void),
            L.DiceLoss(class_weights=[0.5, 1.0, 2.0], **void),
            L.LovaszLoss(**void),
            L.SoftCELoss(smooth_factor=0.1, **void),
            L.TverskyLoss(class_indexes=[1, 2], **void),
        ]
    )
    metrics = [
        M.IOUScore(threshold=0.5, **void),
        M.FScore(class_indexes=[1, 2], **void, name="f1_12"),
        M.Precision(per_image=True, **void),
        M.Recall(class_weights=[1.0, 0.0, 1.0], **void),
    ]
    references = {
        "iou_score": lambda y, p: ref.score("iou", y, p, "multiclass", threshold=0.5, ignore_index=255),
        "f1_12": lambda y, p: ref.score("fscore", y, p, "multiclass", class_indexes=[1, 2], ignore_index=255),
        "precision": lambda y, p: ref.score("precision", y, p, "multiclass", per_image=True, ignore_index=255),
        "recall": lambda y, p: ref.score("recall", y, p, "multiclass", class_weights=[1, 0, 1], ignore_index=255),
    }
    x, y = _data(3)
    _fit_evaluate_save(_tiny_model(3, "softmax"), loss, metrics, x, y, references, saved, "multiclass")


def test_fit_with_pixel_weights_reports_the_loss_of_the_non_void_pixels():
    """The CLI's data: (x, one-hot y with zero rows at void, pixel weights w with 0 at void). The loss that fit and
    evaluate report is the loss on the non-void pixels alone (numpy), not scaled by the void fraction."""
    x, labels = _data(3, n=2)
    w = (labels != 255).astype("float32")
    assert (w == 0).any()
    y = np.eye(3, dtype="float32")[np.where(w > 0, labels, 0).astype(int)] * w[..., None]
    model = _tiny_model(3, "softmax")
    void = dict(ignore_index=255)
    if ON_TF:  # elsewhere the plain sum, cheaper to compile on JAX (Lovasz has its unit tests on every backend)
        loss, lovasz = L.cce_dice_loss + 0.5 * L.lovasz_loss, lambda pred: ref.lovasz_softmax(labels, pred, **void)
    else:
        loss, lovasz = L.cce_dice_loss, lambda pred: 0.0
    model.compile(keras.optimizers.SGD(1e-3), loss=loss)

    def reference(pred):
        return (
            ref.categorical_crossentropy(labels, pred, **void)
            + 1
            - ref.score("fscore", labels, pred, "multiclass", **void)
            + 0.5 * lovasz(pred)
        )

    before = reference(keras.ops.convert_to_numpy(model(x, training=False)))
    history = model.fit(x, y, sample_weight=w, batch_size=2, epochs=1, verbose=0, shuffle=False).history
    np.testing.assert_allclose(history["loss"][0], before, rtol=2e-4)  # one batch: the loss before the update
    if BACKEND != "jax":
        logs = model.evaluate(x, y, sample_weight=w, batch_size=2, verbose=0, return_dict=True)
        np.testing.assert_allclose(
            logs["loss"], reference(keras.ops.convert_to_numpy(model(x, training=False))), rtol=2e-4
        )


def test_unet_with_bce_jaccard_and_iou_reloads_compiled_in_fresh_process(saved):
    """The Unet part runs on TensorFlow and torch: on JAX its train-step compilation alone costs more than this
    module's budget (the tiny models above are reloaded on every backend)."""
    items = list(saved["items"])
    if BACKEND == "tensorflow":
        model = sm.Unet("resnet18", input_shape=(64, 64, 3), classes=1, activation="sigmoid", encoder_weights=None)
        model.compile("adam", loss=sm.losses.bce_jaccard_loss, metrics=[sm.metrics.iou_score], run_eagerly=True)
        rng = np.random.default_rng(1)
        x = rng.random((2, 64, 64, 3)).astype("float32")
        y = (rng.random((2, 64, 64, 1)) > 0.5).astype("float32")
        model.fit(x, y, epochs=1, batch_size=2, verbose=0)
        logs = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
        path = saved["folder"] / "unet.keras"
        model.save(path)
        np.save(saved["folder"] / "unet_x.npy", x)
        np.save(saved["folder"] / "unet_y.npy", y)
        items.append((str(path), "unet", "binary_crossentropy_plus_jaccard_loss", logs))
    if not items:
        pytest.skip("nothing saved (the tests above were deselected)")
    (saved["folder"] / "items.json").write_text(json.dumps(items))
    out = run_fresh_python(
        """
        import json
        import numpy as np
        import keras
        import segmentation_models  # noqa: F401  (registers the losses and metrics)
        result = {}
        for path, tag, loss_name, logs in json.load(open('items.json')):
            model = keras.saving.load_model(path)  # safe_mode on, no custom_objects
            model.run_eagerly = keras.backend.backend() != 'jax'  # cheapest way on each backend
            x, y = np.load(tag + '_x.npy'), np.load(tag + '_y.npy')
            again = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
            result[tag] = [model.loss.name, {k: again[k] for k in logs}]
        print(json.dumps(result))
        """,
        cwd=saved["folder"],
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert set(result) == {tag for _, tag, _, _ in items}
    for _, tag, loss_name, logs in items:
        got_name, got_logs = result[tag]
        assert got_name == loss_name, tag
        np.testing.assert_allclose(
            [got_logs[k] for k in sorted(logs)], [logs[k] for k in sorted(logs)], rtol=1e-4, err_msg=tag
        )
