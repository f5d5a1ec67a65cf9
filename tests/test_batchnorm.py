"""BatchNormalization statistics re-estimated from data (`segmentation_models.batchnorm`): exact population
statistics on every backend, frozen layers kept, mixed precision, the callback inside `fit`."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segmentation_models.batchnorm import BatchNormRecalibration, recalibrate_batchnorm
from segmentation_models.utils import recalibrate_batchnorm as utils_recalibrate_batchnorm


def _small_model(frozen: str | None = None) -> keras.Model:
    inputs = keras.Input((None, None, 3))
    x = keras.layers.BatchNormalization(name="bn_input", scale=False)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Dropout(0.5)(x)  # inference mode while statistics are taken: no effect
    x = keras.layers.Conv2D(5, 3, strides=2, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2", center=False)(x)
    x = keras.layers.UpSampling2D()(x)
    outputs = keras.layers.Conv2D(2, 1, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    for layer in model.layers:  # non-trivial gamma/beta, as after training
        if isinstance(layer, keras.layers.BatchNormalization):
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype("float32"))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.5, layer.beta.shape).astype("float32"))
    if frozen:
        model.get_layer(frozen).trainable = False
    return model


def _batches():
    rng = np.random.default_rng(0)
    # unequal batches and sizes: statistics are pooled by the number of values, not averaged per batch
    return [rng.normal(100, 30, (4, 8, 8, 3)).astype("float32") for _ in range(3)] + [
        rng.normal(90, 40, (2, 16, 8, 3)).astype("float32")
    ]


def _numpy_statistics(model: keras.Model, batches, frozen: str | None = None) -> dict[str, tuple]:
    """Population mean/variance of each BatchNormalization input over all batches, computed with NumPy while every
    (non-frozen) BatchNormalization normalises with its batch's statistics."""
    w = {layer.name: [keras.ops.convert_to_numpy(v).astype("float64") for v in layer.weights] for layer in model.layers}

    def bn(name, x):
        layer = model.get_layer(name)
        if name == frozen:
            gamma, beta, mean, var = w[name]
            return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta
        y = (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + layer.epsilon)
        params = list(w[name])
        if layer.scale:
            y = y * params.pop(0)
        if layer.center:
            y = y + params.pop(0)
        return y

    def conv(name, x, stride=1):
        return keras.ops.convert_to_numpy(model.get_layer(name)(x.astype("float32"))).astype("float64")

    inputs = {"bn_input": [], "bn1": [], "bn2": []}
    for x in batches:
        x = x.astype("float64")
        inputs["bn_input"].append(x)
        h = conv("conv1", bn("bn_input", x))
        inputs["bn1"].append(h)
        h = conv("conv2", np.maximum(bn("bn1", h), 0))
        inputs["bn2"].append(h)
    return {
        name: (
            np.concatenate([a.reshape(-1, a.shape[-1]) for a in arrays]).mean(0),
            np.concatenate([a.reshape(-1, a.shape[-1]) for a in arrays]).var(0),
        )
        for name, arrays in inputs.items()
    }


def _moving(model, name):
    layer = model.get_layer(name)
    return keras.ops.convert_to_numpy(layer.moving_mean), keras.ops.convert_to_numpy(layer.moving_variance)


def test_recalibration_equals_numpys_population_statistics():
    model, batches = _small_model(), _batches()
    expected = _numpy_statistics(model, batches)
    weights = [keras.ops.convert_to_numpy(v) for v in model.trainable_weights]
    assert recalibrate_batchnorm(model, batches, steps=10) == 4
    for name, (mean, var) in expected.items():
        got_mean, got_var = _moving(model, name)
        np.testing.assert_allclose(got_mean, mean, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(got_var, var, rtol=1e-4, atol=1e-4, err_msg=name)
    for before, after in zip(weights, model.trainable_weights):  # nothing else changes
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))
    # ``steps`` caps the batches; tuples give their first element; the utils name is the same function
    assert utils_recalibrate_batchnorm is recalibrate_batchnorm
    assert recalibrate_batchnorm(model, [(b, None) for b in batches], steps=2) == 2
    np.testing.assert_allclose(
        _moving(model, "bn_input")[0], np.concatenate([b.reshape(-1, 3) for b in batches[:2]]).mean(0), rtol=1e-5
    )


def test_frozen_batchnorm_keeps_its_statistics():
    model, batches = _small_model(), _batches()
    recalibrate_batchnorm(model, batches)  # then frozen: the next call must see it
    model.get_layer("bn1").trainable = False
    before = _moving(model, "bn1")
    expected = _numpy_statistics(model, batches, frozen="bn1")
    recalibrate_batchnorm(model, batches)
    np.testing.assert_array_equal(_moving(model, "bn1")[0], before[0])
    np.testing.assert_array_equal(_moving(model, "bn1")[1], before[1])
    np.testing.assert_allclose(_moving(model, "bn2")[1], expected["bn2"][1], rtol=1e-4, atol=1e-4)


def test_mixed_precision_statistics_in_float32():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _small_model()
    finally:
        keras.config.set_dtype_policy("float32")
    batches = [b / 50 for b in _batches()]  # float16 range
    reference = _small_model()
    reference.set_weights(model.get_weights())
    expected = _numpy_statistics(reference, batches)
    recalibrate_batchnorm(model, batches)
    for name, (mean, var) in expected.items():
        got_mean, got_var = _moving(model, name)
        assert got_mean.dtype == np.float32
        np.testing.assert_allclose(got_mean, mean, rtol=2e-2, atol=2e-2, err_msg=name)
        np.testing.assert_allclose(got_var, var, rtol=2e-2, atol=2e-2, err_msg=name)


def test_nested_and_sequential_models_and_clear_errors():
    inner = _small_model()
    inputs = keras.Input((None, None, 3))
    outer = keras.Model(inputs, inner(inputs))
    batches = _batches()
    expected = _numpy_statistics(inner, batches)
    recalibrate_batchnorm(outer, batches)
    np.testing.assert_allclose(_moving(inner, "bn2")[1], expected["bn2"][1], rtol=1e-4, atol=1e-4)

    sequential = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.BatchNormalization(name="bn")])
    recalibrate_batchnorm(sequential, [b[:, :4, :4] for b in batches])
    np.testing.assert_allclose(
        _moving(sequential, "bn")[0], np.concatenate([b[:, :4, :4].reshape(-1, 3) for b in batches]).mean(0), rtol=1e-5
    )

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="Functional or Sequential"):
        recalibrate_batchnorm(Subclassed(), batches)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        recalibrate_batchnorm(outer, batches, steps=0)
    with pytest.raises(ValueError, match="not one array"):
        recalibrate_batchnorm(outer, batches[0])
    with pytest.raises(ValueError, match="no batch"):
        recalibrate_batchnorm(outer, [])


def test_callback_recalibrates_before_validation_and_at_the_end():
    model = _small_model()
    rng = np.random.default_rng(2)
    x = rng.normal(100, 30, (16, 8, 8, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 2, (16, 8, 8)), 2)
    model.compile("adam", "categorical_crossentropy")
    batches = [x[i : i + 4] for i in range(0, 16, 4)]
    seen = []

    class ValidationStatistics(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):  # runs after the recalibration (callbacks run in order)
            seen.append(_moving(self.model, "bn_input")[0].copy())

    history = model.fit(
        x,
        y,
        batch_size=4,
        epochs=2,
        verbose=0,
        validation_data=(x, y),
        callbacks=[BatchNormRecalibration(batches, steps=4), ValidationStatistics()],
    )
    population = x.reshape(-1, 3).mean(0)
    assert len(seen) == 2
    for mean in seen:  # Keras' moving average after 4 steps would still be ~96% zeros
        np.testing.assert_allclose(mean, population, rtol=1e-4)
    # the reported validation loss is the one of the final, recalibrated model
    np.testing.assert_allclose(
        history.history["val_loss"][-1], model.evaluate(x, y, batch_size=4, verbose=0), rtol=1e-4
    )
    with pytest.raises(ValueError, match="steps"):
        BatchNormRecalibration(batches, steps=-1)
