"""Models saved by earlier versions of the package load with today's code, without custom_objects.

The files under tests/data/saved_models/ were written by tests/data/saved_models/make.py with an earlier
version (written_by.json): one per architecture plus backbone families, compiled with the package's losses and
metrics. Reloading them must give the same weights, the same losses and metrics, and the same output.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest

import segmentation_models as sm

from helpers import forward, pick

HERE = Path(__file__).resolve().parent / "data" / "saved_models"


def _maker():
    spec = importlib.util.spec_from_file_location("saved_models_make", HERE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = _maker()
STEMS = pick(list(MAKE.MODELS), ["unet_resnet18", "deeplabv3plus_resnet18", "segformer_mit_b0"])


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # saved before any training step
@pytest.mark.parametrize("stem", STEMS)
def test_model_saved_by_an_earlier_version_loads(stem):
    model = keras.saving.load_model(HERE / f"{stem}.keras")  # no custom_objects

    for variable in model.variables:
        want = MAKE.pattern_value(variable)
        if want is None or variable.path.endswith(("moving_mean", "moving_variance")):
            continue  # seed states; statistics re-estimated by the writer (checked through the output below)
        got = keras.ops.convert_to_numpy(variable)
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=variable.path)

    loss = model.loss[0] if isinstance(model.loss, (list, tuple)) else model.loss
    assert isinstance(loss, sm.losses.SumOfLosses), loss
    assert [type(part) for part in (loss.l1, loss.l2)] == [sm.losses.DiceLoss, sm.losses.CategoricalFocalLoss]
    saved_metrics = model.get_compile_config()["metrics"]
    saved_metrics = saved_metrics[0] if isinstance(saved_metrics[0], list) else saved_metrics  # aux head: [mask, []]
    metrics = [keras.saving.deserialize_keras_object(config) for config in saved_metrics]
    assert [type(m) for m in metrics] == [sm.metrics.IOUScore, sm.metrics.FScore]
    assert metrics[0].threshold == 0.5

    size = model.input_shape[1]
    out = forward(model, MAKE.example_input(size))
    out = out[0] if isinstance(out, list) else out
    expected = np.load(HERE / "expected.npz")[stem]
    np.testing.assert_allclose(out[:, ::4, ::4], expected, rtol=0, atol=5e-3)  # probabilities; float32 kernels differ
