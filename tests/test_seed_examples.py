"""The seed's three examples run unchanged; their losses/metrics ported to keras.ops train on every backend."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import segmentation_models as sm

from conftest import ON_TF, ROOT, SHARED
from helpers import write_model_as_keras2_h5

SEED = SHARED / "seed"
EXAMPLES = ["example1_custom_loss.py", "example2_custom_metric.py", "example3_backend_constants.py"]


@pytest.fixture(scope="module")
def imagenet_registry(tmp_path_factory):
    """resnet34 'imagenet' weights made here in the published layout, offered through SM_WEIGHTS_REGISTRY."""
    from segmentation_models.weights import file_hash

    folder = tmp_path_factory.mktemp("seed_weights")
    backbone = sm.Backbones.get_backbone("resnet34", input_shape=(64, 64, 3), weights=None)
    path = write_model_as_keras2_h5(backbone, folder / "resnet34_imagenet_1000_no_top.h5")
    registry = folder / "registry.json"
    registry.write_text(
        json.dumps([{"backbone": "resnet34", "name": "imagenet", "url": str(path), "hash": file_hash(path)}])
    )
    keras.backend.clear_session()
    return registry


@pytest.mark.skipif(not ON_TF, reason="the seed examples import tensorflow.keras: TensorFlow backend")
@pytest.mark.parametrize("example", EXAMPLES)
def test_seed_example_runs_unchanged(example, imagenet_registry, tmp_path):
    script = SEED / example
    if not script.exists():
        pytest.skip(f"{script} is absent (../shared is only beside the project's checkout)")
    env = dict(
        os.environ,
        KERAS_BACKEND="tensorflow",
        PYTHONPATH=str(ROOT),
        SM_WEIGHTS_REGISTRY=str(imagenet_registry),
        KERAS_HOME=str(tmp_path / "keras_home"),
        SM_WEIGHTS_MIRROR="",
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(("Dice Loss implemented", "Jaccard Index implemented", "Backend variables retrieved"))
    assert not (tmp_path / "keras_home").exists() or not any((tmp_path / "keras_home").rglob("*.h5")), (
        "nothing downloaded"
    )


# --- the seed's dice loss and Jaccard metric, ported to keras.ops ---------------------------
def dice_coefficient(y_true, y_pred, smooth=1.0):
    y_true_f = keras.ops.reshape(y_true, (-1,))
    y_pred_f = keras.ops.reshape(y_pred, (-1,))
    intersection = keras.ops.sum(y_true_f * y_pred_f)
    return (2.0 * intersection + smooth) / (keras.ops.sum(y_true_f) + keras.ops.sum(y_pred_f) + smooth)


def dice_loss(y_true, y_pred):
    return 1.0 - dice_coefficient(y_true, y_pred)


def jaccard_index(y_true, y_pred, smooth=1.0):
    y_true_f = keras.ops.reshape(y_true, (-1,))
    y_pred_f = keras.ops.reshape(y_pred, (-1,))
    intersection = keras.ops.sum(y_true_f * y_pred_f)
    union = keras.ops.sum(y_true_f) + keras.ops.sum(y_pred_f) - intersection
    return (intersection + smooth) / (union + smooth)


def test_ported_dice_and_jaccard_train_unet_on_this_backend():
    model = sm.Unet("resnet34", input_shape=(64, 64, 3), classes=2, encoder_weights=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=dice_loss, metrics=[jaccard_index])
    rng = np.random.default_rng(0)
    x = rng.random((2, 64, 64, 3)).astype("float32")
    y = rng.integers(0, 2, (2, 64, 64, 2)).astype("float32")
    history = model.fit(x, y, epochs=4, batch_size=2, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert 0.0 <= history.history["jaccard_index"][-1] <= 1.0
    # the values equal a numpy computation of the same formulas
    pred = keras.ops.convert_to_numpy(model(x, training=False))
    inter = (y * pred).sum()
    expected = 1 - (2 * inter + 1) / (y.sum() + pred.sum() + 1)
    np.testing.assert_allclose(float(dice_loss(y, pred)), expected, rtol=1e-4)
