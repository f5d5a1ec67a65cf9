"""The TensorFlow-backend fused batch normalisation (segmentation_models/accel/tf_ops.py) computes what Keras' does.
Every test runs under ``accel.scope()``, so that layers and models built here take it too; the ``keras_kernels``
runner gives Keras' own."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND
from helpers import check_stateless_batch_norm_statistics, with_keras_kernels

pytestmark = pytest.mark.skipif(BACKEND != "tensorflow", reason="the fused kernels replace a TensorFlow-backend path")

import segmentation_models as sm  # noqa: E402
from segmentation_models import accel  # noqa: E402


@pytest.fixture(autouse=True)
def _fast_paths():
    """Every layer and model of these tests takes the fused path (not only the package's)."""
    with accel.scope():
        yield


@pytest.fixture
def keras_kernels():
    """Run a block with Keras' own code."""
    return with_keras_kernels()


def _fused_ops_in(fn, *args) -> set:
    """Op types of the graph `fn` traces to (inside tf.function, as Keras' fit/predict run it)."""
    import tensorflow as tf

    graph = tf.function(fn).get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


def test_installed_by_the_first_model_and_reversible():
    from keras.src.layers.normalization.batch_normalization import BatchNormalization

    sm.Unet("resnet18", input_shape=(32, 32, 3), classes=1, encoder_weights=None)
    assert "bn_call" in accel.status()["installed"]
    fused = BatchNormalization.call
    accel.disable()
    assert not accel.status()["installed"] and BatchNormalization.call is not fused
    assert "bn_call" in accel.enable()["installed"] and BatchNormalization.call is not fused


def test_env_switch_turns_them_off():
    code = (
        "import segmentation_models as sm; "
        "sm.Unet('resnet18', input_shape=(32, 32, 3), classes=1, encoder_weights=None); "
        "print(bool(sm.accel.status()['installed']))"
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow", SM_TF_FAST_OPS="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "False"


def _batch_norm_run(bn, x, training: bool):
    """Output, gradients (input, gamma, beta) of a weighted sum, and the moving statistics after one call."""
    import tensorflow as tf

    xt = tf.constant(x)
    weights = tf.constant(np.cos(np.arange(x.size)).reshape(x.shape), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = bn(xt, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
    grads = tape.gradient(loss, [xt, bn.gamma.value, bn.beta.value])
    return [np.asarray(y, "float32")] + [g.numpy() for g in grads] + [w.numpy() for w in bn.non_trainable_weights]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("shape", [(4, 9, 7, 5), (2, 3, 3, 6), (1, 1, 1, 3)])  # (1, 1, 1, 3): a batch of one value
def test_batch_norm_matches_keras(shape, dtype, training, keras_kernels):
    x = (np.random.default_rng(2).standard_normal(shape) * 3 + 2).astype("float32")
    bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, dtype=dtype)
    bn.build(shape)
    initial = [
        np.linspace(0.5, 2.0, shape[-1]),
        np.linspace(-1.0, 1.0, shape[-1]),
        np.linspace(-0.3, 0.3, shape[-1]),
        np.full(shape[-1], 1.5),
    ]  # gamma, beta, moving mean, variance

    def run():
        for w, v in zip(bn.weights, initial):
            w.assign(v.astype("float32"))
        return _batch_norm_run(bn, x, training)

    fast, ref = run(), keras_kernels(run)
    tol = 1e-5 if dtype == "float32" else 2e-2
    for name, a, b in zip(
        ["output", "input grad", "gamma grad", "beta grad", "moving mean", "moving variance"], fast, ref
    ):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())), err_msg=name)
    if training and shape[0] > 1:
        assert not np.allclose(fast[5], 1.5)  # the (biased) moving variance did move


def test_the_fused_kernel_runs_in_training_and_inference():
    import tensorflow as tf

    bn = keras.layers.BatchNormalization()
    x = tf.ones((2, 4, 4, 3))
    bn.build(x.shape)
    assert "FusedBatchNormV3" in _fused_ops_in(lambda t: bn(t, training=True), x)
    assert "FusedBatchNormV3" in _fused_ops_in(lambda t: bn(t, training=False), x)
    # Under XLA (jit_compile=True), Keras' own ops: XLA fuses them itself, and its lowering of the fused kernel
    # computes the variance as E[x^2] - E[x]^2.
    graph = tf.function(lambda t: bn(t, training=True), jit_compile=True).get_concrete_function(x).graph
    assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("case", ["mask", "channels_first", "float64", "small_epsilon", "renorm", "2d", "synchronized"])
def test_other_batch_norms_keep_keras_own_path(case, keras_kernels):
    import tensorflow as tf

    shape, kwargs, dtype, mask = (2, 4, 4, 3), {}, "float32", None
    if case == "channels_first":
        kwargs["axis"] = 1
    elif case == "float64":
        dtype = "float64"
    elif case == "small_epsilon":
        kwargs["epsilon"] = 1e-5  # below cuDNN's minimum: 1.0.1's SE-ResNets use it
    elif case == "renorm":
        kwargs["renorm"] = True
    elif case == "2d":
        shape = (6, 3)
    elif case == "synchronized":
        kwargs["synchronized"] = True
    elif case == "mask":
        mask = tf.constant(np.ones(shape[:-1], bool))
    bn = keras.layers.BatchNormalization(dtype=dtype, **kwargs)
    x = tf.constant(np.random.default_rng(0).standard_normal(shape), dtype)
    bn.build(shape)
    ops = _fused_ops_in(lambda t: bn(t, training=True, mask=mask), x)
    assert "FusedBatchNormV3" not in ops
    y = np.asarray(bn(x, training=True, mask=mask))
    for w in bn.non_trainable_weights:
        w.assign(np.zeros(w.shape) if "mean" in w.path else np.ones(w.shape))
    expected = keras_kernels(lambda: np.asarray(bn(x, training=True, mask=mask)))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_batch_norm_moving_statistics_in_stateless_calls(keras_kernels):
    check_stateless_batch_norm_statistics(keras_kernels)


def _unet(dtype: str = "float32"):
    keras.config.set_dtype_policy(dtype)
    try:
        keras.utils.set_random_seed(0)
        return sm.Unet(
            "resnet18",
            input_shape=(64, 64, 3),
            classes=3,
            activation="softmax",
            encoder_weights=None,
            decoder_block_type="upsampling",
        )
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("jit_compile", [False, True])
def test_model_train_steps_are_as_accurate_as_keras(jit_compile, keras_kernels):
    """fit's compiled step (also under XLA): Keras' losses, and updates at least as close to float64 as Keras' own.

    Two steps on a batch of two 64x64 images leave deep BatchNormalizations a few values per channel, so float32
    rounding moves some updates by up to ~30% whichever kernel runs (measured against float64: Keras' own max
    0.29 / median 0.05 of each tensor's change, the fused one 0.28 / 0.035); the fused kernel must not be worse.
    """
    rng = np.random.default_rng(0)
    x = rng.random((2, 64, 64, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, (2, 64, 64))]
    model = _unet()
    start = model.get_weights()

    def train(model, jit=jit_compile):
        model.set_weights([w.astype(v.dtype) for w, v in zip(start, model.weights)])
        model.compile(keras.optimizers.SGD(1e-2), "categorical_crossentropy", jit_compile=jit)
        dtype = model.weights[0].dtype
        losses = [float(model.train_on_batch(x.astype(dtype), y.astype(dtype))) for _ in range(2)]
        return losses, model.get_weights(), np.asarray(model.predict_on_batch(x.astype(dtype)), "float64")

    fused, ref = train(model), keras_kernels(lambda: train(model))
    exact = keras_kernels(lambda: train(_unet("float64"), jit=False))
    np.testing.assert_allclose(fused[0], ref[0], rtol=1e-4)
    # Inference with the moving statistics: as close to float64's predictions as Keras' own.
    assert np.abs(fused[2] - exact[2]).max() <= 1.5 * np.abs(ref[2] - exact[2]).max() + 1e-6

    def errors(run):
        return [np.abs(a - b).max() / (np.abs(b - w0).max() + 1e-12) for a, b, w0 in zip(run[1], exact[1], start)]

    fused_err, keras_err = errors(fused), errors(ref)
    assert max(fused_err) <= 1.5 * max(keras_err), (max(fused_err), max(keras_err))
    assert np.median(fused_err) <= 1.5 * np.median(keras_err), (np.median(fused_err), np.median(keras_err))


def test_saved_model_has_plain_keras_batch_norm(tmp_path):
    """Nothing of the fused path is serialized: the file loads and predicts the same with Keras' own kernels."""
    model = sm.Unet("resnet18", input_shape=(64, 64, 3), classes=2, encoder_weights=None)
    x = np.random.default_rng(1).random((1, 64, 64, 3)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    code = (
        "import sys, numpy as np, keras; m = keras.saving.load_model(sys.argv[1]); "
        "x = np.random.default_rng(1).random((1, 64, 64, 3)).astype('float32'); "
        "np.save(sys.argv[2], np.asarray(m.predict_on_batch(x)))"
    )
    out = tmp_path / "p.npy"
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    subprocess.run([sys.executable, "-c", code, str(path), str(out)], env=env, check=True, capture_output=True)
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x)), np.load(out), atol=1e-5)
