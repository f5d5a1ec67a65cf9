"""One helper that runs the same checks for every model, plus writers of published weight formats."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import h5py
import keras
import numpy as np

from conftest import BACKEND, ON_TF

# One representative per backbone family on JAX and torch; everything on TensorFlow.
def pick(all_items: Sequence, representatives: Sequence) -> list:
    """All items on TensorFlow, only ``representatives`` on the other backends."""
    return list(all_items) if ON_TF else [x for x in all_items if x in representatives]


def _targets(rng: np.random.Generator, shape, classes: int, activation) -> np.ndarray:
    h, w = shape
    if classes == 1 or activation == "sigmoid":
        return (rng.random((2, h, w, classes)) > 0.5).astype("float32")
    labels = rng.integers(0, classes, size=(2, h, w))
    return np.eye(classes, dtype="float32")[labels]


def _loss_for(activation, classes: int) -> str:
    if activation == "softmax":
        return "categorical_crossentropy"
    return "binary_crossentropy"


def check_model(
    build: Callable[[], keras.Model],
    input_shape: tuple,
    classes: int,
    tmp_path: Path,
    reload_checker=None,
    activation: str = "sigmoid",
    train: bool = True,
    steps: int = 4,
    output_shape: tuple | None = None,
    label: str = "",
) -> keras.Model:
    """Build, forward shape, a few train steps lower the loss, `.keras` save/reload equality.

    ``reload_checker`` (the session fixture) additionally reloads the saved file in a fresh process
    that imports only keras and segmentation_models.
    """
    model = build()
    assert isinstance(model, keras.Model)
    h, w, c = input_shape
    expected = output_shape or (h, w, classes)
    assert tuple(model.output_shape[1:]) == tuple(x if x is not None else None for x in expected) or h is None, model.output_shape
    rng = np.random.default_rng(0)
    x = rng.random((2, h, w, c)).astype("float32")
    y_pred = keras.ops.convert_to_numpy(model(x, training=False))
    assert y_pred.shape == (2,) + tuple(expected), y_pred.shape
    assert np.isfinite(y_pred).all()
    if not train:
        return model
    y = _targets(rng, (h, w), classes, activation)
    # run_eagerly: no graph tracing/compilation, which dominates the cost of a few steps on small inputs
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=_loss_for(activation, classes), run_eagerly=True)
    losses = [float(model.train_on_batch(x, y)) for _ in range(steps)]
    assert np.isfinite(losses).all(), losses
    assert losses[-1] < losses[0], f"loss did not fall over {steps} steps: {losses}"

    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    ref = keras.ops.convert_to_numpy(model(x, training=False))
    out = keras.ops.convert_to_numpy(reloaded(x, training=False))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    if reload_checker is not None:
        reload_checker.add(path, x, ref, label or model.name)
    return model


# ---- published weight formats --------------------------------------------------------------
def keras2_weight_names(layer: keras.layers.Layer) -> list[str]:
    """Keras 2 style variable names (``conv0/kernel:0``) of a layer's weights."""
    return [f"{layer.name}/{v.name.split('/')[-1]}:0" for v in layer.weights]


def write_keras2_h5(path: Path, layer_weights: Mapping[str, Sequence[np.ndarray]],
                    weight_names: Mapping[str, Sequence[str]] | None = None,
                    extra_layers: Sequence[str] = ()) -> Path:
    """Write a Keras 2 ``save_weights`` HDF5 file (the format of image-classifiers/keras-applications files)."""
    with h5py.File(path, "w") as f:
        names = list(extra_layers) + list(layer_weights)
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for name in names:
            g = f.create_group(name)
            arrays = layer_weights.get(name, [])
            wnames = list(weight_names[name]) if weight_names and name in weight_names else [f"{name}/w{i}:0" for i in range(len(arrays))]
            g.attrs["weight_names"] = np.array([w.encode() for w in wnames])
            for wn, arr in zip(wnames, arrays):
                g.create_dataset(wn, data=np.asarray(arr))
    return path


def write_model_as_keras2_h5(model: keras.Model, path: Path) -> Path:
    """Save every weighted layer of ``model`` in the Keras 2 HDF5 layout."""
    weights, names = {}, {}
    for layer in model.layers:
        if layer.weights:
            weights[layer.name] = [keras.ops.convert_to_numpy(v) for v in layer.weights]
            names[layer.name] = keras2_weight_names(layer)
    extra = [l.name for l in model.layers if not l.weights]
    return write_keras2_h5(path, weights, names, extra)


def randomize_batchnorm(model: keras.Model, seed: int = 0) -> None:
    """Give BatchNormalization layers non-trivial statistics so that equivalence tests mean something."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            new = []
            for v in layer.weights:
                n = v.name.split("/")[-1]
                shape = tuple(v.shape)
                if n == "moving_variance":
                    new.append(rng.uniform(0.5, 1.5, shape).astype("float32"))
                elif n == "gamma":
                    new.append(rng.uniform(0.5, 1.5, shape).astype("float32"))
                else:
                    new.append(rng.normal(0, 0.1, shape).astype("float32"))
            layer.set_weights(new)


# ---- keras.applications published files ------------------------------------------------------
def write_keras_applications_h5(model: keras.Model, path: Path) -> Path:
    """Write ``model`` (a keras.applications model) the way its published ``_notop.h5`` files are laid
    out and the way Keras's legacy ``save_weights`` writes them: one group per top-level layer (a nested
    ``Sequential`` is one group), weights trainable first, listed in ``layer_names``/``weight_names``."""
    weights, names = {}, {}
    for layer in model.layers:
        variables = list(layer.trainable_weights) + list(layer.non_trainable_weights)
        if variables:
            weights[layer.name] = [keras.ops.convert_to_numpy(v) for v in variables]
            names[layer.name] = [f"{layer.name}/{v.path.replace('/', '_')}:0" for v in variables]
    extra = [l.name for l in model.layers if not l.weights]
    return write_keras2_h5(path, weights, names, extra)


def randomize_weights(model: keras.Model, seed: int = 0) -> None:
    """Small random values everywhere (positive variances), so that loading tests compare something."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        shape = tuple(v.shape)
        if "variance" in v.path:
            v.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif v.path.endswith("count"):
            continue
        else:
            v.assign(rng.normal(0, 0.1, shape).astype("float32"))
