"""One helper that runs the same checks for every model, plus writers of published weight formats."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import h5py
import keras
import numpy as np

from conftest import BACKEND, ON_TF

EAGER_TRAINING = BACKEND != "jax"


def forward(model: keras.Model, x: np.ndarray):
    """Inference output(s) as numpy, the way each backend does it cheapest in a test.

    TensorFlow and torch call the model eagerly (tracing a graph costs more than one call). JAX compiles the
    whole model once with ``predict_on_batch``: its eager mode compiles every op separately for every new
    input shape (a Unet-MobileNetV3 at 64x64: 9.0 s eagerly vs 1.0 s compiled). The fresh-process reload
    (conftest) uses the same function, so stored and reloaded predictions come from the same computation.
    """
    if BACKEND == "jax":
        out = model.predict_on_batch(x)
        return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)
    return _to_numpy(model(x, training=False))


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
    steps: int = 3,
    output_shape: tuple | None = None,
    label: str = "",
    aux_classes: int | None = None,
    learning_rate: float | None = None,
    optimizer: Callable[[], keras.optimizers.Optimizer] | None = None,
) -> keras.Model:
    """Build, forward shape, a few train steps lower the loss, `.keras` save/reload equality.

    ``reload_checker`` (the session fixture) additionally reloads the saved file in a fresh process
    that imports only keras and segmentation_models. ``aux_classes``: the model has an auxiliary
    classification head and returns ``(mask, labels)``; it is trained with two losses.
    Training: ``steps`` train_on_batch calls on one fixed batch; a loss reported after the first update must
    be below the first loss. ``learning_rate`` given: Adam at that rate (transformer
    encoders such as MiT need 1e-4: their 0.02-std initialisation overshoots at 1e-3); otherwise SGD
    (1e-2, momentum 0.9), whose first steps follow the gradient (Adam's sign-like first steps make the loss
    of pyramid decoders with batch-2 batch norm jump) and whose update is a few ops per variable (eager Adam
    on TensorFlow costs ~10 ms per variable and step: 2 s a step for a ResNet-50 Unet).
    With ``reload_checker`` the `.keras` file is reloaded only in the fresh process (same 1e-6 check).
    """
    model = build()
    assert isinstance(model, keras.Model)
    h, w, c = input_shape
    expected = output_shape or (h, w, classes)
    mask_output_shape = model.output_shape[0] if aux_classes else model.output_shape
    # a model built with unknown (None) sizes matches any expected size there
    assert all(m is None or m == e for m, e in zip(mask_output_shape[1:], expected)), model.output_shape
    rng = np.random.default_rng(0)
    x = rng.random((2, h, w, c)).astype("float32")
    outputs = forward(model, x)
    y_pred = outputs[0] if aux_classes else outputs
    assert y_pred.shape == (2,) + tuple(expected), y_pred.shape
    assert np.isfinite(y_pred).all()
    if aux_classes:
        assert len(outputs) == 2 and outputs[1].shape == (2, aux_classes), [o.shape for o in outputs]
    if not train:
        return model
    y = _targets(rng, (h, w), classes, activation)
    loss = _loss_for(activation, classes)
    if aux_classes:
        y = [y, np.eye(aux_classes, dtype="float32")[rng.integers(0, aux_classes, size=2)]]
        loss = [loss, keras.losses.CategoricalCrossentropy(from_logits=True)]
    # TF/torch: run eagerly (tracing costs more than a few steps on small inputs); JAX: jit, since its eager
    # mode compiles every op separately (3 steps of a Unet: ~3x slower than one compiled train step)
    if optimizer is None:
        optimizer = (
            (lambda: keras.optimizers.Adam(learning_rate))
            if learning_rate
            else (lambda: keras.optimizers.SGD(1e-2, momentum=0.9))
        )
    model.compile(optimizer=optimizer(), loss=loss, run_eagerly=EAGER_TRAINING)
    losses = [float(np.atleast_1d(model.train_on_batch(x, y))[0]) for _ in range(steps)]
    assert np.isfinite(losses).all(), losses
    # the loss must fall below the first; momentum may carry the last step past a minimum of this tiny batch
    assert min(losses[1:]) < losses[0], f"loss did not fall over {steps} steps: {losses}"

    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    ref = forward(model, x)
    if reload_checker is not None:
        reload_checker.add(path, x, ref, label or model.name)
        return model
    out = forward(keras.saving.load_model(path, safe_mode=True), x)
    for r, o in zip(ref if aux_classes else [ref], out if aux_classes else [out]):
        np.testing.assert_allclose(o, r, rtol=0, atol=1e-6)
    return model


def _to_numpy(outputs):
    """A model's output(s) as a numpy array, or a list of them for several outputs."""
    if isinstance(outputs, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in outputs]
    return keras.ops.convert_to_numpy(outputs)


# ---- published weight formats --------------------------------------------------------------
def keras2_weight_names(layer: keras.layers.Layer) -> list[str]:
    """Keras 2 style variable names (``conv0/kernel:0``) of a layer's weights."""
    return [f"{layer.name}/{v.name.split('/')[-1]}:0" for v in layer.weights]


def write_keras2_h5(
    path: Path,
    layer_weights: Mapping[str, Sequence[np.ndarray]],
    weight_names: Mapping[str, Sequence[str]] | None = None,
    extra_layers: Sequence[str] = (),
) -> Path:
    """Write a Keras 2 ``save_weights`` HDF5 file (the format of image-classifiers/keras-applications files)."""
    with h5py.File(path, "w") as f:
        names = list(extra_layers) + list(layer_weights)
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for name in names:
            g = f.create_group(name)
            arrays = layer_weights.get(name, [])
            wnames = (
                list(weight_names[name])
                if weight_names and name in weight_names
                else [f"{name}/w{i}:0" for i in range(len(arrays))]
            )
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
    extra = [layer.name for layer in model.layers if not layer.weights]
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


# ---- the check every architecture passes -------------------------------------------------------------
ODD_SIZES = ((65, 97), (97, 65))


def check_architecture(
    builder: Callable[..., keras.Model],
    backbone: str,
    tmp_path: Path,
    reload_checker=None,
    classes: int = 2,
    activation: str = "softmax",
    train: bool = True,
    odd_sizes: Sequence[tuple[int, int]] | None = None,
    **kwargs,
) -> keras.Model:
    """`check_model` on ``builder(backbone, input_shape=(None, None, 3), ...)`` at 64x64 (build, train with
    falling loss, exact save/reload, fresh-process reload), then the mask has the input's size for each
    of ``odd_sizes`` (heights/widths that are not multiples of 32), in one model built once.
    """
    label = f"{getattr(builder, '__name__', 'model')}-{backbone}-" + "-".join(
        f"{k}={v}" for k, v in sorted(kwargs.items())
    )
    model = check_model(
        lambda: builder(
            backbone,
            input_shape=(None, None, 3),
            classes=classes,
            activation=activation,
            encoder_weights=None,
            **kwargs,
        ),
        (64, 64, 3),
        classes,
        tmp_path,
        reload_checker,
        activation=activation,
        train=train,
        label=label,
    )
    rng = np.random.default_rng(1)
    # JAX compiles every op again for each new input shape: one odd size there (test_input_size has the rest)
    for h, w in odd_sizes if odd_sizes is not None else ODD_SIZES[: 1 if BACKEND == "jax" else None]:
        out = forward(model, rng.random((1, h, w, 3)).astype("float32"))
        assert out.shape == (1, h, w, classes), (label, (h, w), out.shape)
        assert np.isfinite(out).all(), label
        if activation == "softmax":
            np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-4, err_msg=label)
    return model


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
    extra = [layer.name for layer in model.layers if not layer.weights]
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


def with_keras_kernels() -> Callable:
    """A runner of ``fn()`` with Keras' own code (``segmentation_models.accel.disabled()``), the package's models
    included."""
    from segmentation_models import accel

    def run(fn):
        with accel.disabled():
            return fn()

    return run


def check_stateless_batch_norm_statistics(keras_kernels: Callable) -> None:
    """A training ``stateless_call`` returns the moving statistics Keras' own kernels give, and leaves the model's
    variables unchanged."""
    x = (np.random.default_rng(8).standard_normal((4, 5, 5, 3)) * 2 + 1).astype("float32")
    model = keras.Sequential([keras.Input((5, 5, 3)), keras.layers.BatchNormalization(momentum=0.5)])

    def run():
        _, non_trainable = model.stateless_call(
            model.trainable_variables, model.non_trainable_variables, x, training=True
        )
        returned = [keras.ops.convert_to_numpy(v) for v in non_trainable]
        return returned, [v.numpy() for v in model.non_trainable_variables]

    fast, ref = run(), keras_kernels(run)
    for a, b in zip(fast[0], ref[0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(fast[0][0], 0.0)  # the returned moving mean moved ...
    for v, w in zip(fast[1], ref[1]):
        np.testing.assert_array_equal(v, w)  # ... and the model's own variables did not
