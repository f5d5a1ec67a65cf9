"""segmentation_models.accel: the fast paths act in the package's models only; the rest of Keras and the process
behave as without the package."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import segmentation_models as sm  # noqa: E402
from segmentation_models import accel  # noqa: E402

from conftest import BACKEND, ROOT

# A user's model (no package layer), trained with fit and predicted, its weights set from numpy (not from Keras'
# seed state, which building a package model first advances). Argument 1: import the package and build one of its
# models first (the fast paths are then installed). Records every mallopt/malloc_trim lookup in glibc.
_USER_MODEL = """
import ctypes, sys
lookups = []
_getattr = ctypes.CDLL.__getattr__
ctypes.CDLL.__getattr__ = lambda self, name: lookups.append(name) or _getattr(self, name)
import numpy as np, keras
if sys.argv[1] == "1":
    import segmentation_models as sm
    sm.Unet("resnet18", input_shape=(32, 32, 3), classes=1, encoder_weights=None)
    assert sm.accel.status()["installed"] or keras.backend.backend() == "jax"
inp = keras.Input((16, 16, 3))
x = keras.layers.ZeroPadding2D(1)(inp)
x = keras.layers.Conv2D(4, 3)(x)
x = keras.layers.BatchNormalization()(x)
x = keras.layers.ReLU()(x)
x = keras.layers.MaxPooling2D(2)(x)
x = keras.layers.UpSampling2D(2)(x)
out = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
model = keras.Model(inp, out)
rng = np.random.default_rng(0)
model.set_weights([np.ones(w.shape, "float32") if "variance" in w.path else
                   rng.normal(0, 0.3, w.shape).astype("float32") for w in model.weights])
model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
xs = rng.random((4, 16, 16, 3)).astype("float32")
ys = (rng.random((4, 16, 16, 1)) > 0.5).astype("float32")
losses = [float(model.train_on_batch(xs, ys)) for _ in range(2)]
losses += model.fit(xs, ys, batch_size=2, epochs=1, shuffle=False, verbose=0).history["loss"]
np.savez(sys.argv[2], losses=np.array(losses), pred=np.asarray(model.predict(xs, verbose=0)),
         **{f"w{i}": w for i, w in enumerate(model.get_weights())})
print("GLIBC_MALLOC_LOOKUPS", [n for n in lookups if n in ("mallopt", "malloc_trim")])
"""


def _run_user_model(tmp_path, with_package: bool):
    out = tmp_path / f"user_{int(with_package)}.npz"
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", _USER_MODEL, str(int(with_package)), str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lookups = [line for line in proc.stdout.splitlines() if line.startswith("GLIBC_MALLOC_LOOKUPS")][-1]
    return dict(np.load(out)), lookups


def test_a_users_model_is_bitwise_unchanged_and_no_mallopt(tmp_path):
    """Losses, predictions and weights of a user's model: bitwise the same in a process that imported the package
    and built one of its models (fast paths installed) as in one without it; no mallopt on import or build."""
    plain, _ = _run_user_model(tmp_path, with_package=False)
    with_package, lookups = _run_user_model(tmp_path, with_package=True)
    assert lookups == "GLIBC_MALLOC_LOOKUPS []"
    assert plain.keys() == with_package.keys()
    for key in plain:
        np.testing.assert_array_equal(with_package[key], plain[key], err_msg=key)


def _user_model():
    inp = keras.Input((32, 32, 3))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, padding="same")(inp))
    return keras.Model(inp, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))


def test_the_packages_models_take_the_fast_paths_by_default():
    """Counted entries: a package model's predict/fit enter the fast paths, a user's model in the same process not."""
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    y = np.ones((2, 32, 32, 1), "float32")
    counted = {"torch": ("graph", "train_step"), "tensorflow": ("fused_batch_norm",)}.get(BACKEND, ())

    def counts(model):
        before = dict(accel.status()["counters"])
        model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
        model.train_on_batch(x, y)
        model.predict_on_batch(x)
        after = accel.status()["counters"]
        return {key: after.get(key, 0) - before.get(key, 0) for key in counted}

    package = counts(sm.Unet("resnet18", input_shape=(32, 32, 3), classes=1, encoder_weights=None))
    user = counts(_user_model())
    assert all(n > 0 for n in package.values()), package
    assert not any(user.values()), user
    status = accel.status()
    assert status["everywhere"] is False and status["allocator"] is False
    if BACKEND == "jax":
        assert status["installed"] == [] and status["counters"] == {}


def test_adopt_and_disabled():
    """A model loaded from a file takes the fast paths once adopted; ``disabled()`` runs Keras' own code."""
    if BACKEND == "jax":
        pytest.skip("no fast paths on JAX")
    x = np.random.default_rng(0).random((1, 32, 32, 3)).astype("float32")
    key = "graph" if BACKEND == "torch" else "fused_batch_norm"
    model = accel.adopt(_user_model())

    def entered(fn):
        before = accel.status()["counters"].get(key, 0)
        fn()
        return accel.status()["counters"].get(key, 0) - before

    assert entered(lambda: model.compile(keras.optimizers.SGD(), "mse") or model.train_on_batch(x, x[..., :1])) > 0
    model.compile(keras.optimizers.SGD(), "mse")  # a fresh train function (TensorFlow traces again)
    with accel.disabled():
        assert entered(lambda: model.train_on_batch(x, x[..., :1])) == 0


_FAKE_VERSION = """
import warnings, keras
keras.__version__ = "3.99.0"
import segmentation_models as sm
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for _ in range(2):
        sm.Unet("resnet18", input_shape=(32, 32, 3), classes=1, encoder_weights=None)
    off = sm.accel.status()["installed"]
    forced = sm.accel.enable(force=True)["installed"]
messages = [str(w.message) for w in caught if "verified" in str(w.message)]
print("RESULT", len(messages), bool(off), bool(forced))
print("MESSAGE", messages[0] if messages else "")
"""


def test_an_unverified_keras_version_turns_the_fast_paths_off_with_one_warning():
    if BACKEND == "jax":
        pytest.skip("no fast paths on JAX: nothing to turn off")
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=str(ROOT))
    env.pop("SM_ACCEL_FORCE", None)
    proc = subprocess.run(
        [sys.executable, "-c", _FAKE_VERSION], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("RESULT", "MESSAGE")))
    assert lines["RESULT"] == "1 False True"  # one warning, off; enable(force=True) turns them on
    assert "3.99.0" in lines["MESSAGE"] and "SM_ACCEL_FORCE=1" in lines["MESSAGE"] and "force=True" in lines["MESSAGE"]


def test_the_command_line_enables_them_for_its_run_only(monkeypatch):
    """train/evaluate/predict run with every model on the fast paths (and the allocator setting on torch); the
    process is given back as it was when the command returns."""
    from segmentation_models import cli

    parser_calls = []
    original = cli.build_parser

    def build_parser():
        parser = original()
        for action in parser._subparsers._group_actions[0].choices.values():
            action.set_defaults(func=lambda args: parser_calls.append((args.command, accel.status()["everywhere"])))
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    assert cli.main(["info"]) == 0
    assert cli.main(["evaluate", "nowhere"]) == 0
    installed = bool(accel.status()["installed"])
    assert parser_calls == [("info", False), ("evaluate", installed)]
    assert accel.status()["everywhere"] is False
