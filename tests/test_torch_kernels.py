"""The torch-backend fast paths (segmentation_models/accel: torch_ops, graph, recompute, optimizer) compute what
Keras' own code does. Every test runs under ``accel.scope()``, so that models built here take them too; the
``keras_kernels`` runner gives Keras' own."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND
from helpers import check_stateless_batch_norm_statistics, with_keras_kernels

pytestmark = pytest.mark.skipif(BACKEND != "torch", reason="the fast kernels replace torch-backend kernels only")

import segmentation_models as sm  # noqa: E402
from segmentation_models import accel  # noqa: E402
from segmentation_models.accel import (  # noqa: E402
    _patches,
    graph,
    optimizer as accel_optimizer,
    recompute,
    tables,
    torch_ops,
)


@pytest.fixture(autouse=True)
def _fast_paths():
    """Every model of these tests takes the fast paths (not only the package's)."""
    with accel.scope():
        yield


@pytest.fixture
def keras_kernels():
    """Run a block with Keras' own code."""
    return with_keras_kernels()


def _np(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def test_installed_by_the_first_model_and_reversible():
    from keras.src.backend.torch import nn as torch_nn

    sm.Unet("resnet18", input_shape=(32, 32, 3), classes=1, encoder_weights=None)
    assert "conv" in accel.status()["installed"]
    fast = torch_nn.conv
    accel.disable()
    assert not accel.status()["installed"] and torch_nn.conv is not fast
    assert "conv" in accel.enable()["installed"] and torch_nn.conv is not fast


def test_env_switch_turns_them_off():
    code = (
        "import segmentation_models as sm, keras.src.backend.torch.nn as n; "
        "sm.Unet('resnet18', input_shape=(32, 32, 3), classes=1, encoder_weights=None); "
        "print(bool(sm.accel.status()['installed']), n.conv.__module__)"
    )
    env = dict(os.environ, KERAS_BACKEND="torch", SM_TORCH_FAST_OPS="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "keras.src.backend.torch.nn"]


@pytest.mark.parametrize(
    "layer",
    [
        dict(cls="Conv2D", filters=5, kernel_size=3, padding="same"),
        dict(cls="Conv2D", filters=5, kernel_size=3, strides=2, padding="same"),  # asymmetric 'same' padding
        dict(cls="Conv2D", filters=4, kernel_size=(1, 3), strides=(2, 1), padding="valid"),
        dict(cls="Conv2D", filters=6, kernel_size=3, dilation_rate=2, padding="same", use_bias=True),
        dict(cls="Conv2D", filters=6, kernel_size=3, groups=3, padding="same"),
        dict(cls="DepthwiseConv2D", kernel_size=3, depth_multiplier=2, padding="same"),
        dict(cls="SeparableConv2D", filters=7, kernel_size=3, dilation_rate=2, padding="same"),
        dict(cls="UpSampling2D", size=(2, 3)),
        dict(cls="UpSampling2D", size=2, interpolation="bilinear"),
        dict(cls="MaxPooling2D", pool_size=3, strides=2, padding="same"),  # pooling on a channels-last view
        dict(cls="AveragePooling2D", pool_size=3, strides=2, padding="same"),
        dict(cls="AveragePooling2D", pool_size=2),
        dict(cls="Conv2DTranspose", filters=3, kernel_size=3, strides=2, padding="same"),
    ],
)
def test_layer_forward_and_gradients_match_keras(layer, keras_kernels):
    import torch

    kwargs = dict(layer)
    cls = getattr(keras.layers, kwargs.pop("cls"))
    keras.utils.set_random_seed(1)
    lay = cls(**kwargs)
    x = np.random.default_rng(0).standard_normal((2, 11, 10, 6)).astype("float32")
    lay.build(x.shape)

    def run():
        xt = torch.tensor(x, requires_grad=True)
        y = lay(xt)
        (y * torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape).cos()).sum().backward()
        grads = [_np(w.value.grad) for w in lay.trainable_weights]
        for w in lay.trainable_weights:
            w.value.grad = None
        return _np(y.detach()), _np(xt.grad), grads

    fast, ref = run(), keras_kernels(run)
    assert fast[0].shape == ref[0].shape
    np.testing.assert_allclose(fast[0], ref[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast[1], ref[1], rtol=1e-4, atol=1e-4)
    for g, h in zip(fast[2], ref[2]):
        np.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # inference: cached weights give the same result, also after a weight update
        np.testing.assert_allclose(_np(lay(x)), ref[0], rtol=1e-5, atol=1e-5)
        if lay.weights:
            lay.weights[0].assign(lay.weights[0] * 0.5)
            expected = keras_kernels(lambda: _np(lay(x)))
            np.testing.assert_allclose(_np(lay(x)), expected, rtol=1e-5, atol=1e-5)


def test_block_average_pooling_keeps_no_copy_of_its_input():
    """AveragePooling2D with stride = pool size (SegFormer's stride-2 map) saves nothing input-sized for the
    backward pass (torch's avg_pool2d keeps its input), and its gradient is Keras' (odd sizes: zeros on the
    rows and columns pooling drops)."""
    import torch

    x = torch.tensor(np.random.default_rng(0).standard_normal((2, 9, 8, 5)).astype("float32"), requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        y = keras.layers.AveragePooling2D(2)(x)
    assert tuple(y.shape) == (2, 4, 4, 5) and not [s for s in saved if np.prod(s) >= x.numel()], saved
    weights = torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape).cos()
    (y * weights).sum().backward()
    expected = np.zeros((2, 9, 8, 5), "float32")
    expected[:, :8] = np.repeat(np.repeat(weights.numpy() / 4, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_upsampling_gradient_through_a_concatenate_matches_keras(dtype, keras_kernels):
    """A Unet decoder's upsampling gets a channel slice of the Concatenate's gradient (not contiguous): the
    fast backward (views and adds in NHWC) gives Keras' gradient, for equal and unequal factors."""
    import torch

    inputs = keras.Input((5, 4, 3), dtype=dtype)
    skip = keras.Input((10, 12, 2), dtype=dtype)
    up = keras.layers.UpSampling2D((2, 3), dtype=dtype)(inputs)
    out = keras.layers.Concatenate(dtype=dtype)([skip, up, up])
    model = keras.Model([inputs, skip], out)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4, 3)).astype("float32")
    s = rng.standard_normal((2, 10, 12, 2)).astype("float32")

    def run():
        xt = torch.tensor(x, dtype=getattr(torch, dtype), requires_grad=True)
        y = model([xt, torch.tensor(s, dtype=getattr(torch, dtype))])
        (y.float() * torch.arange(y.numel()).reshape(y.shape).cos()).sum().backward()
        return _np(y.detach().float()), _np(xt.grad.float())

    fast, ref = run(), keras_kernels(run)
    np.testing.assert_array_equal(fast[0], ref[0])
    tol = 1e-5 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(fast[1], ref[1], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("shape", [(4, 6, 5, 3), (16, 3)])
def test_batch_norm_training_matches_keras(dtype, shape, keras_kernels):
    import torch

    x = (np.random.default_rng(2).standard_normal(shape) * 3 + 1).astype("float32")
    bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, dtype=dtype)
    bn.build(shape)
    bn.gamma.assign(np.linspace(0.5, 2.0, shape[-1]))
    bn.beta.assign(np.linspace(-1.0, 1.0, shape[-1]))
    initial = [w.numpy() for w in bn.weights]

    def run():
        for w, v in zip(bn.weights, initial):
            w.assign(v)
        xt = torch.tensor(x).to(getattr(torch, bn.compute_dtype)).requires_grad_(True)
        y = bn(xt, training=True)
        (y.float() * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        out = (
            _np(y.detach().float()),
            _np(xt.grad.float()),
            [_np(w.value.grad) for w in bn.trainable_weights],
            [w.numpy() for w in bn.non_trainable_weights],
        )
        for w in bn.trainable_weights:
            w.value.grad = None
        return out

    fast, ref = run(), keras_kernels(run)
    tol = 1e-4 if dtype == "float32" else 3e-2
    np.testing.assert_allclose(fast[0], ref[0], rtol=tol, atol=tol)
    np.testing.assert_allclose(fast[1], ref[1], rtol=tol, atol=tol)
    for g, h in zip(fast[2], ref[2]):
        np.testing.assert_allclose(g, h, rtol=tol, atol=tol * 10)
    for m, n in zip(fast[3], ref[3]):  # moving mean and (biased) moving variance
        np.testing.assert_allclose(m, n, rtol=tol / 10, atol=tol / 10)
    assert not np.allclose(fast[3][1], 1.0)  # the moving variance did move
    inference = bn(x, training=False)  # moving statistics, addcmul path
    expected = keras_kernels(lambda: _np(bn(x, training=False)))
    np.testing.assert_allclose(_np(inference), expected, rtol=tol, atol=tol)


def test_batch_norm_inference_cache_follows_the_variables():
    """In inference the (scale, shift) factors are cached per variable version: every kind of update shows.
    (Checked against the formula: reinstalling the kernels for a Keras reference would empty the cache.)"""
    import torch

    x = np.random.default_rng(4).standard_normal((2, 5, 4, 3)).astype("float32")
    inputs = keras.Input((5, 4, 3))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(inputs))
    model.compile(optimizer="sgd", loss="mse")
    bn = model.layers[-1]

    def check():
        with torch.no_grad():
            fast = _np(model.predict_on_batch(x))
        gamma, beta, mean, variance = bn.get_weights()
        expected = gamma * (x - mean) / np.sqrt(variance + bn.epsilon) + beta
        np.testing.assert_allclose(fast, expected, rtol=1e-5, atol=1e-5)

    check()
    check()  # from the cache
    for i, w in enumerate(bn.weights):  # gamma, beta, moving mean, moving variance: in-place assign
        w.assign(np.full((3,), 0.5 + i, "float32"))
        check()
    model.fit(x, x, epochs=1, batch_size=2, verbose=0)  # an optimizer step and moving-statistics updates
    check()
    model.set_weights([np.full((3,), v, "float32") for v in (2.0, -1.0, 0.25, 4.0)])
    check()


@pytest.mark.parametrize(
    "conv",
    [
        dict(cls="Conv2D", filters=5, kernel_size=3, padding="valid", use_bias=True),  # after a fused ZeroPadding2D
        dict(cls="Conv2D", filters=6, kernel_size=3, strides=2, padding="same", groups=3, use_bias=False),
        dict(cls="DepthwiseConv2D", kernel_size=3, depth_multiplier=2, padding="same", use_bias=True),
    ],
)
@pytest.mark.parametrize("bn", [dict(), dict(scale=False, center=False)])
def test_inference_folds_batch_norm_into_the_convolution(conv, bn, keras_kernels):
    """In inference a convolution followed only by a BatchNormalization runs as one convolution with the BN folded
    into its kernel and bias; the result is Keras' (to float32 rounding) and follows every weight update; training
    calls are not folded."""
    import torch

    kwargs = dict(conv)
    cls = getattr(keras.layers, kwargs.pop("cls"))
    keras.utils.set_random_seed(5)
    inputs = keras.Input((9, 8, 3))
    x = keras.layers.ZeroPadding2D(1)(keras.layers.ReLU()(inputs)) if kwargs["padding"] == "valid" else inputs
    conv_layer = cls(**kwargs)
    bn_layer = keras.layers.BatchNormalization(**bn)
    model = keras.Model(inputs, keras.layers.ReLU()(bn_layer(conv_layer(x))))
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(6)
    channels = bn_layer.moving_mean.shape[0]
    bn_layer.moving_mean.assign(rng.normal(0, 0.5, channels))
    bn_layer.moving_variance.assign(rng.uniform(0.2, 3.0, channels))
    if bn_layer.scale:
        bn_layer.gamma.assign(rng.uniform(0.5, 2.0, channels))
        bn_layer.beta.assign(rng.normal(0, 0.5, channels))
    data = rng.standard_normal((2, 9, 8, 3)).astype("float32")

    def predict():
        with torch.no_grad():
            return _np(model.predict_on_batch(data))

    reference = keras_kernels(predict)
    np.testing.assert_allclose(predict(), reference, rtol=1e-5, atol=1e-5)
    assert id(conv_layer) in graph._FOLD_CACHE and len(graph._FOLDS[model]) == 1
    model.fit(data, np.zeros((2,) + model.output_shape[1:], "float32"), epochs=1, verbose=0)  # weights change
    np.testing.assert_allclose(predict(), keras_kernels(predict), rtol=1e-5, atol=1e-5)
    training = model(data, training=True)  # batch statistics, not folded
    expected = keras_kernels(lambda: model(data, training=True))
    np.testing.assert_allclose(_np(training.detach()), _np(expected.detach()), rtol=1e-5, atol=1e-5)


def test_model_train_steps_match_keras(keras_kernels):
    keras.utils.set_random_seed(0)
    model = sm.Unet(
        "resnet18",
        input_shape=(64, 64, 3),
        classes=3,
        activation="softmax",
        encoder_weights=None,
        decoder_block_type="upsampling",
    )
    rng = np.random.default_rng(0)
    x = rng.random((2, 64, 64, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, (2, 64, 64))]
    start = model.get_weights()

    def train():
        model.set_weights(start)
        model.compile(keras.optimizers.SGD(1e-2), "categorical_crossentropy")
        return [float(model.train_on_batch(x, y))], model.get_weights()

    (fast_losses, fast_w), (ref_losses, ref_w) = train(), keras_kernels(train)
    np.testing.assert_allclose(fast_losses, ref_losses, rtol=1e-4)
    # The same update up to float32 rounding (measured: at most 1%, median 0.2% of each tensor's update).
    # Over several steps the two drift further apart: Keras' own E[x^2] - E[x]^2 batch statistics round
    # at float32 precision (see test_batch_norm_is_exact_in_float64), the fused kernel does not.
    ratios = [np.abs(a - b).max() / (np.abs(b - w0).max() + 1e-7) for a, b, w0 in zip(fast_w, ref_w, start)]
    assert max(ratios) < 0.05 and np.median(ratios) < 0.01, (max(ratios), np.median(ratios))


def test_batch_norm_is_exact_in_float64():
    import torch

    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3)) * 3 + 1
    bn = keras.layers.BatchNormalization(dtype="float64")
    bn.build(x.shape)
    exact = (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + bn.epsilon)
    np.testing.assert_allclose(_np(bn(torch.tensor(x), training=True).detach()), exact, rtol=0, atol=1e-12)


def _graphs():
    """Functional graphs with the shapes Keras' graph execution must handle."""
    inp = keras.Input((8, 8, 3))
    other = keras.Input((8, 8, 3))
    shared = keras.layers.Conv2D(4, 3, padding="same")
    a, b = shared(inp), shared(other)  # a layer used twice
    branch = keras.layers.Conv2D(2, 1)(a)  # a dead end: computed, not an output
    inner_in = keras.Input((8, 8, 4))
    inner = keras.Model(inner_in, keras.layers.ReLU()(inner_in))  # a nested model
    merged = keras.layers.Add()([inner(a), b])
    out1 = keras.layers.Conv2D(3, 3, padding="same")(merged)
    out2 = keras.layers.GlobalAveragePooling2D()(merged)
    yield keras.Model([inp, other], {"map": out1, "vec": out2, "skip": a}), 2
    yield keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()]), 1
    del branch


@pytest.mark.parametrize("index", [0, 1])
def test_graph_execution_matches_keras(index, keras_kernels):
    model, n_inputs = list(_graphs())[index]
    rng = np.random.default_rng(index)
    xs = [rng.standard_normal((2, 8, 8, 3)).astype("float32") for _ in range(n_inputs)]
    xs = xs if n_inputs > 1 else xs[0]
    fast, ref = model(xs, training=True), keras_kernels(lambda: model(xs, training=True))
    for a, b in zip(keras.tree.flatten(fast), keras.tree.flatten(ref)):
        np.testing.assert_allclose(_np(a.detach()), _np(b.detach()), rtol=1e-5, atol=1e-5)
    assert keras.tree.flatten(fast)[0].shape == keras.tree.flatten(ref)[0].shape


def test_argument_fillers_give_what_keras_fill_in_gives():
    """Every node of the library's models (and of the mixed graphs above) gets the same arguments from its
    precomputed filler as from Keras' ``SymbolicArguments.fill_in``: the same objects in the same containers."""
    models = [m for m, _ in _graphs()] + [
        sm.PAN("resnet18", input_shape=(64, 64, 3), classes=2, encoder_weights=None),
        sm.Unet("efficientnetb0", input_shape=(64, 64, 3), classes=2, encoder_weights=None),
        sm.DeepLabV3Plus("resnet18", input_shape=(64, 64, 3), classes=2, encoder_weights=None),
    ]
    fast_paths = 0
    for model in models:
        schedule = graph._schedule(model)
        if schedule is None:  # Keras' own execution: no fillers
            continue
        for (node, *_), fill in zip(schedule, graph._FILLERS[model]):
            values = {id(x): object() for x in node.arguments.keras_tensors}
            (args, kwargs), (want_args, want_kwargs) = fill(values), node.arguments.fill_in(values)
            assert type(args) is type(want_args) and len(args) == len(want_args), node.operation.name
            for a, b in zip(args, want_args):
                assert type(a) is type(b), node.operation.name
                if type(a) in (list, tuple):
                    assert len(a) == len(b) and all(x is y for x, y in zip(a, b)), node.operation.name
                else:
                    assert a is b, node.operation.name
            assert kwargs == want_kwargs, node.operation.name
            fast_paths += fill != node.arguments.fill_in
    assert fast_paths > 20  # the nodes with recorded keyword arguments (mask=None, training=None) and lists


@keras.saving.register_keras_serializable(package="test_torch_kernels")
class _Probe(keras.layers.Layer):
    """Identity that records whether the tensors in ``_Probe.watch`` are still alive when it runs."""

    watch: list = []
    alive: list = []

    def call(self, x):
        _Probe.alive.append([ref() is not None for ref in _Probe.watch])
        return x


@keras.saving.register_keras_serializable(package="test_torch_kernels")
class _Watch(keras.layers.Layer):
    """Identity whose output (a fresh tensor) is watched by weak reference."""

    def call(self, x):
        import weakref

        y = x * 1.0
        _Probe.watch.append(weakref.ref(y))
        return y


def test_graph_execution_drops_tensors_after_their_last_use(keras_kernels):
    inp = keras.Input((4, 4, 2))
    x = _Watch()(inp)
    x = keras.layers.Conv2D(2, 1)(x)  # the watched tensor's last consumer
    out = _Probe()(keras.layers.ReLU()(x))
    model = keras.Model(inp, out)
    data = np.ones((1, 4, 4, 2), "float32")
    _Probe.watch.clear(), _Probe.alive.clear()
    model.predict_on_batch(data)
    assert _Probe.alive[-1] == [False]  # freed before the end of the call
    _Probe.watch.clear()
    keras_kernels(lambda: model.predict_on_batch(data))
    assert _Probe.alive[-1] == [True]  # Keras' own execution keeps every intermediate until it returns


def test_scatter_and_mean_iou_match_keras(keras_kernels):
    rng = np.random.default_rng(3)
    indices = rng.integers(0, 4, (300, 2))  # many duplicates: they add up
    values = rng.random(300).astype("float32")
    fast = _np(keras.ops.scatter(indices, values, (4, 4)))
    ref = keras_kernels(lambda: _np(keras.ops.scatter(indices, values, (4, 4))))
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5)
    rows = rng.integers(0, 3, (5, 1))  # slices: values of shape (5, 6) into rows of a (3, 6) matrix
    slices = rng.random((5, 6)).astype("float32")
    np.testing.assert_allclose(
        _np(keras.ops.scatter(rows, slices, (3, 6))),
        keras_kernels(lambda: _np(keras.ops.scatter(rows, slices, (3, 6)))),
        rtol=1e-6,
    )
    y = np.eye(5, dtype="float32")[rng.integers(0, 5, (2, 16, 16))]
    p = rng.random((2, 16, 16, 5)).astype("float32")

    def miou():
        metric = keras.metrics.OneHotMeanIoU(num_classes=5)
        metric.update_state(y, p, sample_weight=(rng.random((2, 16, 16)) > 0.2).astype("float32"))
        return float(metric.result())

    rng = np.random.default_rng(4)
    fast_iou = miou()
    rng = np.random.default_rng(4)
    assert fast_iou == pytest.approx(keras_kernels(miou), abs=1e-6)


def _forward_backward(model, x, training=True):
    """Outputs, input gradient and weight gradients (then cleared) of one pass, and the input afterwards."""
    import torch

    xt = torch.tensor(x, requires_grad=True)
    outs = model(xt, training=training)
    sum((o.float() * torch.linspace(-1, 1, o.numel()).reshape(o.shape)).sum() for o in outs).backward()
    grads = [_np(w.value.grad) for w in model.trainable_weights]
    for w in model.trainable_weights:
        w.value.grad = None
    return [_np(o.detach().float()) for o in outs], _np(xt.grad), grads, _np(xt.detach())


def _padded_graph():
    """ZeroPadding2D in every position: fused into the next kernel where that is exact, else kept."""
    inp = keras.Input((13, 12, 3))
    x = keras.layers.ZeroPadding2D(3)(inp)
    x = keras.layers.Conv2D(6, 7, strides=2)(x)  # fused (the 1.0.1 ResNet stem)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.ZeroPadding2D(1)(x)
    x = keras.layers.MaxPooling2D(3, strides=2)(x)  # fused: its input is a ReLU output
    x = keras.layers.ZeroPadding2D(((1, 1), (2, 2)))(x)
    x = keras.layers.DepthwiseConv2D((3, 5))(x)  # fused, different rows and columns
    neg = keras.layers.ZeroPadding2D(1)(x)
    neg = keras.layers.MaxPooling2D(3, strides=1)(neg)  # not fused: negative inputs (zeros can be the maximum)
    asym = keras.layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
    asym = keras.layers.Conv2D(6, 3, strides=2)(asym)  # not fused: asymmetric
    twice = keras.layers.ZeroPadding2D(1)(x)
    a = keras.layers.Conv2D(6, 3)(twice)  # not fused: two consumers
    b = keras.layers.Conv2D(6, 3, dilation_rate=1)(twice)
    same = keras.layers.Conv2D(6, 3, padding="same")(keras.layers.ZeroPadding2D(1)(x))  # not fused: 'same'
    out = keras.layers.ZeroPadding2D(1)(x)  # not fused: a model output
    merged = keras.layers.Add()([a, b, neg])
    return keras.Model(inp, [merged, asym, same, out])


def test_zero_padding_is_fused_into_the_next_kernel(keras_kernels):
    import torch

    keras.utils.set_random_seed(5)
    model = _padded_graph()
    fusions = [f for _, _, f, _ in graph._schedule(model)]
    assert fusions.count("skip") == 3 and sum(isinstance(f, tuple) for f in fusions) == 3
    x = np.random.default_rng(5).standard_normal((2, 13, 12, 3)).astype("float32")

    def run():
        return _forward_backward(model, x)[:3]

    fast, ref = run(), keras_kernels(run)
    for a, b in zip(fast[0], ref[0]):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast[1], ref[1], rtol=1e-4, atol=1e-4)
    for g, h in zip(fast[2], ref[2]):
        np.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # inference (cached weights) through the fused path
        for a, b in zip(model.predict_on_batch(x), keras_kernels(lambda: model.predict_on_batch(x))):
            np.testing.assert_allclose(_np(a), _np(b), rtol=1e-4, atol=1e-5)


def _relu_graph():
    """ReLUs that may overwrite their input (names "inplace_*") and ReLUs that must not."""
    layers = keras.layers
    inp = keras.Input((9, 8, 4))
    x = layers.Conv2D(6, 3, padding="same", use_bias=False)(inp)
    a = layers.ReLU(name="inplace_bn")(layers.BatchNormalization()(x))
    b = layers.Activation("relu", name="inplace_conv_view")(layers.Conv2D(6, 3, padding="same", use_bias=False)(a))
    c = layers.Activation("relu", name="inplace_conv_bias")(layers.Conv2D(6, 1)(b))
    d = layers.ReLU(name="inplace_add")(layers.Add()([b, c]))
    e = layers.Activation("relu", name="inplace_concat")(layers.Concatenate()([d, a]))
    shared = layers.BatchNormalization()(e)
    f = layers.ReLU(name="shared_input")(shared)  # its input has another consumer
    linear = layers.Activation("linear")(layers.Add()([f, shared]))  # returns its input itself
    g = layers.ReLU(name="after_identity")(linear)
    capped = layers.ReLU(max_value=6.0, name="capped")(layers.BatchNormalization()(g))  # not max(x, 0)
    on_input = layers.ReLU(name="on_input")(inp)
    out_bn = layers.BatchNormalization()(capped)
    after_output = layers.ReLU(name="after_output")(out_bn)  # its input is a model output
    return keras.Model(inp, [after_output, out_bn, on_input])


def test_relu_overwrites_its_input_only_where_safe(keras_kernels, monkeypatch):
    import torch

    keras.utils.set_random_seed(7)
    model = _relu_graph()
    marked = sorted(node.operation.name for node, _, fusion, _ in graph._schedule(model) if fusion == "relu_")
    assert marked == sorted(layer.name for layer in model.layers if layer.name.startswith("inplace_"))
    overwritten = []
    relu_ = torch.relu_
    monkeypatch.setattr(torch, "relu_", lambda t: overwritten.append(t.shape) or relu_(t))
    x = np.random.default_rng(7).standard_normal((2, 9, 8, 4)).astype("float32")

    def run(training):
        return _forward_backward(model, x, training)

    for training in (True, False):  # BatchNormalization's fused training kernel (a view) and its inference one
        overwritten.clear()
        fast = run(training)
        assert len(overwritten) == len(marked)
        ref = keras_kernels(lambda: run(training))  # noqa: B023  (called in this iteration)
        np.testing.assert_array_equal(fast[3], x)  # the model input is never overwritten
        for a, b in zip(fast[0] + [fast[1]] + fast[2], ref[0] + [ref[1]] + ref[2]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    overwritten.clear()
    with torch.no_grad():
        for a, b in zip(model.predict_on_batch(x), keras_kernels(lambda: model.predict_on_batch(x))):
            np.testing.assert_allclose(_np(a), _np(b), rtol=1e-4, atol=1e-5)
    assert len(overwritten) == len(marked)


def test_relu_in_place_in_the_library_models():
    """Every ReLU of a 1.0.1-style ResNet Unet follows a BatchNormalization that is its input's only user."""
    model = sm.Unet("resnet18", input_shape=(64, 64, 3), classes=1, encoder_weights=None)
    schedule = graph._schedule(model)
    relus = [fusion for node, _, fusion, _ in schedule if tables.is_plain_relu(node.operation)]
    assert len(relus) > 20 and set(relus) == {"relu_"}


def test_train_step_releases_last_steps_gradients_before_the_forward_pass(keras_kernels):
    seen, holder = [], []

    class Probe(keras.layers.Layer):
        def call(self, x):
            if holder:  # not while the model is built
                seen.append(any(w.value.grad is not None for w in holder[-1].trainable_weights))
            return x

    def train():
        keras.utils.set_random_seed(3)
        inp = keras.Input((4,))
        out = keras.layers.Dense(1)(Probe()(keras.layers.Dense(3)(inp)))
        model = keras.Model(inp, out)
        holder.append(model)
        model.compile(optimizer="adam", loss="mse")
        x, y = np.arange(8, dtype="float32").reshape(2, 4), np.ones((2, 1), "float32")
        losses = [float(model.train_on_batch(x, y)) for _ in range(3)]
        return losses, [_np(w.value.grad) for w in model.trainable_weights]

    losses, grads = train()
    assert len(seen) >= 3 and not any(seen)  # Keras frees them after the forward pass
    ref_losses, ref_grads = keras_kernels(train)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
    for g, h in zip(grads, ref_grads):  # the last step's gradients are still there afterwards, as in Keras
        np.testing.assert_allclose(g, h, rtol=1e-6)


def test_resnet_padding_is_fused_and_keeps_less_for_backward(keras_kernels):
    """1.0.1's ResNet pads before every 3x3 convolution: fused, autograd keeps ~40% fewer activation bytes."""
    import torch

    model = sm.Unet("resnet18", input_shape=(64, 64, 3), classes=1, encoder_weights=None)
    fusions = [f for _, _, f, _ in graph._schedule(model)]
    pads = [layer for layer in model.layers if isinstance(layer, keras.layers.ZeroPadding2D)]
    assert fusions.count("skip") == len(pads) > 8

    def saved_bytes():  # activations kept for the backward pass (parameters and their copies aside)
        storages, weights = {}, {w.value.untyped_storage().data_ptr() for w in model.weights}

        def pack(t):
            if t.ndim == 4 and t.shape[0] == 2 and t.untyped_storage().data_ptr() not in weights:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.rand(2, 64, 64, 3), training=True)
        return sum(storages.values())

    fast, ref = saved_bytes(), keras_kernels(saved_bytes)
    assert fast < 0.7 * ref, (fast, ref)  # measured: 10.6 MB against 18.4 MB


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: keras.optimizers.Adam(1e-2),
        lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1),
        lambda: keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-2, 10), beta_1=0.5),
        lambda: keras.optimizers.Adam(1e-2, amsgrad=True),  # Keras' own step
    ],
)
def test_adam_steps_match_keras(optimizer, keras_kernels, monkeypatch):
    import torch

    monkeypatch.setattr(accel_optimizer, "_ADAM_CHUNK", 50)  # several chunks, one tensor larger than a chunk
    shapes = [(3, 3, 4, 8), (8,), (20, 5), (2,)]
    rng = np.random.default_rng(7)
    start = [rng.standard_normal(s).astype("float32") for s in shapes]
    grads = [[rng.standard_normal(s).astype("float32") for s in shapes] for _ in range(4)]

    def run():
        variables = [keras.Variable(v) for v in start]
        opt = optimizer()
        for step in grads:
            opt.apply([torch.tensor(g) for g in step], variables)
        return [v.numpy() for v in variables]

    fast, ref = run(), keras_kernels(run)
    for a, b, w0 in zip(fast, ref, start):
        assert not np.allclose(b, w0)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_batch_norm_moving_statistics_in_stateless_calls(keras_kernels):
    check_stateless_batch_norm_statistics(keras_kernels)


def test_conv_kernels_are_stored_in_torch_layout(tmp_path):
    """A conv kernel keeps its Keras shape and values; its memory takes torch's channels-last OIHW order."""
    import torch

    keras.utils.set_random_seed(9)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(5, 3, padding="same")])
    kernel = model.layers[0].kernel
    before = kernel.numpy().copy()
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    x, y = np.ones((2, 8, 8, 3), "float32"), np.zeros((2, 8, 8, 5), "float32")
    model.train_on_batch(x, y)
    param = kernel.value
    assert tuple(param.shape) == (3, 3, 3, 5)
    assert param.permute(3, 2, 0, 1).is_contiguous(memory_format=torch.channels_last)
    assert param.grad is None or param.grad.stride() == param.stride()
    moments = [v.value for v in model.optimizer.variables if tuple(v.shape) == (3, 3, 3, 5)]
    assert moments and all(m.stride() == param.stride() for m in moments)
    assert not np.allclose(kernel.numpy(), before)  # trained, and still read back as HWIO
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(again.layers[0].kernel.numpy(), kernel.numpy())
    np.testing.assert_allclose(_np(again(x)), _np(model(x)), rtol=1e-6, atol=1e-6)


def _bn_graph(dtype="float32"):
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", dtype=dtype)(inp)
    x = keras.layers.BatchNormalization(momentum=0.5, dtype=dtype)(x)  # direct call: training from the context
    frozen = keras.layers.BatchNormalization(momentum=0.5, dtype=dtype)(x, training=False)  # explicit: Keras' call
    inner_in = keras.Input((6, 6, 4))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(momentum=0.5, dtype=dtype)(inner_in))
    out = keras.layers.Add(dtype=dtype)([keras.layers.Activation("relu", dtype=dtype)(inner(x)), frozen])
    return keras.Model(inp, out)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("training", [True, False, None])
def test_direct_layer_calls_match_keras(dtype, training, keras_kernels, monkeypatch):
    """Built-in layers skip Layer.__call__ in eager graph runs; outputs and moving statistics stay Keras'."""
    keras.utils.set_random_seed(10)
    model = _bn_graph(dtype)
    x = (np.random.default_rng(10).standard_normal((3, 6, 6, 3)) * 2 + 1).astype("float32")
    start = model.get_weights()

    def run():
        model.set_weights(start)
        out = model(x, training=training)
        return _np(keras.ops.cast(out, "float32")), [w.numpy() for w in model.non_trainable_weights]

    calls = []
    original = keras.layers.Layer.__call__
    monkeypatch.setattr(
        keras.layers.Layer, "__call__", lambda self, *a, **k: calls.append(self) or original(self, *a, **k)
    )
    fast = run()
    keras_calls = len(calls)
    monkeypatch.undo()
    ref = keras_kernels(run)
    tol = 1e-5 if dtype == "float32" else 3e-2
    np.testing.assert_allclose(fast[0], ref[0], rtol=tol, atol=tol)
    for a, b in zip(fast[1], ref[1]):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    moving_mean = fast[1][0]
    assert np.allclose(moving_mean, 0.0) == (training is not True)  # batch statistics only when training
    if dtype == "float32":  # the model, the explicit-training BN and the nested model still go through Keras
        assert keras_calls == 3, [layer.name for layer in calls]
    else:  # mixed precision: every layer through Keras' __call__ (autocast)
        assert keras_calls == 1 + (len(model.layers) - 1) + 1, [layer.name for layer in calls]


def test_the_packages_stateless_layers_are_called_directly(keras_kernels, monkeypatch):
    """Resizes, grid/adaptive pooling and the pad/crop pair skip Layer.__call__ as the built-in layers do (only
    the model itself goes through it); outputs stay those of Keras' own execution."""
    keras.utils.set_random_seed(3)
    models = [
        sm.PAN("resnet18", input_shape=(64, 64, 3), classes=2, encoder_weights=None),
        sm.PSPNet("resnet18", input_shape=(96, 96, 3), classes=2, encoder_weights=None),
        sm.Unet("resnet18", input_shape=(None, None, 3), classes=2, encoder_weights=None),
    ]
    names = {"ResizeToMatch", "GridPooling2D", "PadToMultiple", "CropToInput"}
    assert names <= {type(layer).__name__ for m in models for layer in m.layers}
    x = np.random.default_rng(3).random((2, 96, 96, 3)).astype("float32")
    for model in models:
        batch = x[:, : model.input_shape[1] or 70, : model.input_shape[2] or 70]  # Unet: 70x70, padded to 96
        calls = []
        original = keras.layers.Layer.__call__
        monkeypatch.setattr(
            keras.layers.Layer,
            "__call__",
            lambda self, *a, **k: calls.append(self) or original(self, *a, **k),  # noqa: B023  (called in this iteration)
        )
        fast = _np(model(batch, training=False))
        monkeypatch.undo()
        assert [layer.name for layer in calls] == [model.name]
        np.testing.assert_allclose(fast, keras_kernels(lambda: _np(model(batch, training=False))), rtol=1e-5, atol=1e-5)  # noqa: B023  (called in this iteration)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_direct_calls_under_a_mixed_precision_model(policy, keras_kernels, monkeypatch):
    """With a global mixed policy the model's autocast scope is the layers' own: after the first layer (which
    casts the float32 input) the built-in layers are called directly; results stay Keras'."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(11)
        model = _relu_graph()
    finally:
        keras.config.set_dtype_policy(previous)
    x = np.random.default_rng(11).standard_normal((2, 9, 8, 4)).astype("float32")
    start = model.get_weights()

    def run():
        model.set_weights(start)
        outs, _, grads, _ = _forward_backward(model, x)
        return outs, grads, [w.numpy() for w in model.non_trainable_weights]

    calls = []
    original = keras.layers.Layer.__call__
    monkeypatch.setattr(
        keras.layers.Layer, "__call__", lambda self, *a, **k: calls.append(self.name) or original(self, *a, **k)
    )
    fast = run()
    monkeypatch.setattr(keras.layers.Layer, "__call__", original)
    ref = keras_kernels(run)
    # the model, and the layers fed the float32 input (Keras casts it to the compute dtype)
    assert sorted(calls) == sorted([model.name, "on_input", model.layers[1].name]), calls
    for a, b in zip(fast[0] + fast[1] + fast[2], ref[0] + ref[1] + ref[2]):
        np.testing.assert_allclose(a, b, rtol=3e-2, atol=3e-2)


def test_jit_compile_traces_keras_own_kernels():
    """Keras' jit_compile=True (torch.compile) traces Keras' kernels: the fast ones (parameter re-layouts,
    in-place views) do not trace. Eager and compiled training give the same losses."""
    x = np.random.default_rng(12).standard_normal((2, 9, 8, 4)).astype("float32")
    losses = {}
    for jit in (False, True):
        keras.utils.set_random_seed(12)
        model = _relu_graph()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=["mse", "mse", "mse"], jit_compile=jit)
        targets = [np.zeros((2,) + tuple(o.shape[1:]), "float32") for o in model.outputs]
        losses[jit] = [float(model.train_on_batch(x, targets)[0]) for _ in range(3)]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)
    assert "conv" in accel.status()["installed"]


def test_targets_missing_from_this_keras_warn_and_are_skipped(monkeypatch):
    """A Keras version without one of the replaced functions keeps its own, with a warning naming it; the others
    are still installed."""
    from keras.src.backend.torch import nn as torch_nn

    paths = dict(torch_ops.TARGET_PATHS)
    paths["absent"] = ("keras.src.backend.torch.nn", None, "no_such_function")
    paths["absent_module"] = ("keras.src.no_such_module", None, "anything")
    del paths["max_pool"]
    accel.disable()
    monkeypatch.setattr(torch_ops, "TARGET_PATHS", paths)
    try:
        with pytest.warns(RuntimeWarning, match="no_such_function") as record:
            installed = accel.enable()["installed"]
        assert len([w for w in record if "is not in this Keras" in str(w.message)]) == 2
        assert "conv" in installed and "absent" not in installed and "max_pool" not in _patches.ORIGINAL
        assert torch_nn.max_pool.__module__ == "keras.src.backend.torch.nn"  # Keras' own
        assert torch_nn.conv.__module__ == "segmentation_models.accel.torch_ops"
        inp = keras.Input((8, 8, 3))
        x = keras.layers.MaxPooling2D(3, 2)(keras.layers.ZeroPadding2D(1)(keras.layers.ReLU()(inp)))
        model = keras.Model(inp, x)
        assert [f for _, _, f, _ in graph._schedule(model)].count("skip") == 0  # no fused max pooling
        data = np.random.default_rng(0).standard_normal((1, 8, 8, 3)).astype("float32")
        padded = np.pad(np.maximum(data, 0), ((0, 0), (1, 1), (1, 1), (0, 0)))
        expected = np.stack(
            [
                np.stack([padded[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max((0, 1)) for j in range(4)])
                for i in range(4)
            ]
        )[None]
        np.testing.assert_allclose(_np(model(data)), expected, rtol=1e-6)
    finally:
        accel.disable()
        monkeypatch.undo()
        accel.enable()
    assert "max_pool" in _patches.ORIGINAL


def _with_and_without_recompute(model, monkeypatch, step):
    """``step()`` with SM_TORCH_RECOMPUTE=1, then =0, from the same moving statistics (and dropout seeds)."""
    state = [v.value.detach().clone() for v in model.non_trainable_variables]
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv("SM_TORCH_RECOMPUTE", flag)
        for v, saved in zip(model.non_trainable_variables, state):
            v.value.data.copy_(saved)
        results.append(step())
    return results


def _recompute_graph():
    """BatchNormalization outputs, activations, upsamplings and concatenations of them in every position the
    recompute scope meets."""
    layers = keras.layers
    inp = keras.Input((10, 9, 4))
    x = layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", use_bias=False)(inp))
    x = layers.Activation("swish")(x)  # saves its input (a recipe) and its output (a recipe of swish)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))  # in place: its result, at the next version, is a recipe
    y = layers.Conv2D(8, 1)(x)
    z = layers.Conv2D(8, 3, padding="same")(x)  # two consumers of the ReLU output
    shared = layers.BatchNormalization(center=False, scale=False)(layers.Add()([y, z]))
    a = layers.Activation("relu6")(shared)  # its input has another consumer: a new tensor, both recipes
    b = layers.Activation("sigmoid")(shared)
    c = layers.Activation("tanh")(layers.BatchNormalization()(layers.Multiply()([a, b])))  # not recomputed
    up = layers.UpSampling2D(2)(c)  # of a tensor without recipe: the recipe keeps that (a quarter of the size)
    bilinear = layers.UpSampling2D(2, interpolation="bilinear")(a)
    cat = layers.Concatenate()([bilinear, layers.UpSampling2D(2)(x), up])  # of recipes: a recipe
    d = layers.Conv2D(4, 3, padding="same")(cat)
    out_bn = layers.BatchNormalization()(layers.Conv2D(3, 1)(d))
    return keras.Model(inp, [layers.ReLU()(out_bn), out_bn])  # a BN output that is also a model output


@pytest.mark.parametrize(
    "build, kept_at_most",
    [
        (_recompute_graph, 0.5),  # measured 0.40
        (_relu_graph, 0.9),  # 0.83: most of its ReLUs follow convolutions, Add or Concatenate
        (lambda: sm.Unet("resnet18", input_shape=(64, 64, 3), classes=1, encoder_weights=None), 0.5),  # 0.38
        (lambda: sm.FPN("efficientnetb0", input_shape=(64, 64, 3), classes=2, encoder_weights=None), 0.5),  # 0.42
    ],
    ids=["graph", "relu_graph", "unet_resnet18", "fpn_efficientnetb0"],
)
def test_training_recomputes_batch_norm_outputs_with_the_same_gradients(build, kept_at_most, monkeypatch):
    """BN outputs (relu/swish/relu6/sigmoid of them, upsampled, concatenated) are saved as recipes: the same
    outputs and gradients as when autograd keeps them, and fewer bytes kept for the backward pass."""
    import torch

    keras.utils.set_random_seed(5)
    model = build()
    shape = (2, *model.input_shape[1:])
    x = np.random.default_rng(5).standard_normal(shape).astype("float32")

    def run():
        outs, x_grad, grads, _ = _forward_backward(model, x)
        return outs + [x_grad] + grads + [_np(v.value) for v in model.non_trainable_variables]

    recomputed, kept = _with_and_without_recompute(model, monkeypatch, run)
    for a, b in zip(recomputed, kept):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    forward = lambda: model(torch.tensor(x), training=True)  # noqa: E731
    with_recipes = recompute.bytes_kept_for_backward(forward)
    without = recompute.bytes_kept_for_backward(forward, recompute=False)
    params = sum(w.value.numel() * w.value.element_size() for w in model.trainable_weights)
    assert with_recipes - params < kept_at_most * (without - params), (with_recipes, without, params)


class _ChannelPeak(keras.layers.Layer):
    """A user's layer: the maximum over height and width (a gradient that compares inputs with the maximum)."""

    def call(self, x):
        return keras.ops.max(x, axis=(1, 2))


def _max_reduction_graph():
    """BN(-ReLU) outputs, which would be recipes, into max reductions: GlobalMaxPooling2D, GridPooling2D(max) and
    a user's layer; the same tensors also into layers that take recipes."""
    from segmentation_models.decoders.pspnet import GridPooling2D

    layers = keras.layers
    # trained-like scales and offsets: with gamma 1 and beta 0 the recomputation happens to be bit-exact

    def bn():
        return layers.BatchNormalization(
            gamma_initializer=keras.initializers.RandomUniform(0.5, 1.5),
            beta_initializer=keras.initializers.RandomNormal(),
        )

    inp = keras.Input((16, 16, 8))
    x = layers.ReLU()(bn()(layers.Conv2D(64, 3, padding="same", use_bias=False)(inp)))
    y = bn()(layers.Conv2D(64, 3, padding="same", use_bias=False)(x))
    grid = layers.Flatten()(GridPooling2D(2, pooling="max")(y))
    avg = layers.Flatten()(GridPooling2D(2)(y))
    peaks = layers.Concatenate()([layers.GlobalMaxPooling2D()(x), _ChannelPeak()(y), grid, avg])
    return keras.Model(inp, [layers.Dense(3)(peaks), layers.Conv2D(2, 1)(x)])


def test_max_reductions_keep_their_inputs_instead_of_recipes(monkeypatch):
    """A recomputed tensor may differ in the last bit, and a max reduction's gradient goes to the inputs equal to
    its saved maximum (none: 0/0). Layers not known to take recipes keep what they save: the same gradients with
    recompute on as off (before: NaN weights after one step of a DeepLabV3 with a max-pooling aux head)."""
    from segmentation_models.decoders.pspnet import GridPooling2D

    assert not tables.takes_recipes(keras.layers.GlobalMaxPooling2D())
    assert not tables.takes_recipes(GridPooling2D(2, pooling="max")) and not tables.takes_recipes(_ChannelPeak())
    assert tables.takes_recipes(GridPooling2D(2)) and tables.takes_recipes(keras.layers.Conv2D(2, 1))
    assert not tables.takes_recipes(keras.layers.Activation(lambda t: t - keras.ops.max(t)))
    keras.utils.set_random_seed(3)
    model = _max_reduction_graph()
    x = np.random.default_rng(3).standard_normal((2, 16, 16, 8)).astype("float32")

    def run():
        outs, x_grad, grads, _ = _forward_backward(model, x)
        return outs + [x_grad] + grads

    for a, b in zip(*_with_and_without_recompute(model, monkeypatch, run)):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_double_backward_through_recipes_gives_the_same_second_order_gradients(monkeypatch):
    """A gradient penalty (``create_graph=True``): autograd re-attaches each unpacked recipe value to the saved
    tensor's place in the graph, so second-order gradients through recomputed BN outputs and swish match."""
    import torch

    keras.utils.set_random_seed(1)
    layers = keras.layers
    inp = keras.Input((8, 8, 3))
    x = layers.Activation("swish")(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(inp)))
    out = layers.Conv2D(2, 1)(layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(x))))
    model = keras.Model(inp, out)
    data = torch.tensor(np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32"))
    unpacked, unpack = [], recompute._unpack_saved
    monkeypatch.setattr(recompute, "_unpack_saved", lambda p: unpacked.append(type(p) is tuple) or unpack(p))

    def penalty_gradients():
        xt = data.clone().requires_grad_(True)
        y = model(xt, training=True)
        (g,) = torch.autograd.grad((y * y).sum(), xt, create_graph=True)
        return [_np(t) for t in torch.autograd.grad((g**2).sum(), [w.value for w in model.trainable_weights])]

    results = _with_and_without_recompute(model, monkeypatch, penalty_gradients)
    assert sum(unpacked) >= 4  # recipes were unpacked (with recompute on)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_recompute_stays_out_of_callers_hooks_inference_and_mixed_precision(monkeypatch):
    import torch

    monkeypatch.delenv("SM_TORCH_RECOMPUTE", raising=False)  # on by default
    model = sm.Unet("resnet18", input_shape=(64, 64, 3), classes=1, encoder_weights=None)
    x = torch.rand(2, 64, 64, 3)
    scopes = []
    scope = recompute._recompute_scope
    monkeypatch.setattr(recompute, "_recompute_scope", lambda training: scopes.append(scope(training)))
    model(x, training=True)
    assert scopes[-1] is not None  # the outermost training pass opens it
    seen = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: seen.append(t) or t, lambda t: t):
        model(x, training=True)  # the caller's hooks see every tensor (e.g. save_on_cpu): none opened
    assert scopes[-1] is None and len(seen) > 50
    with torch.no_grad():
        model(x, training=True)
    model(x, training=False)
    monkeypatch.setenv("SM_TORCH_RECOMPUTE", "0")
    model(x, training=True)
    assert scopes[-3:] == [None, None, None]
    monkeypatch.setenv("SM_TORCH_RECOMPUTE", "1")
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = sm.Unet("resnet18", input_shape=(64, 64, 3), classes=1, encoder_weights=None)
    finally:
        keras.config.set_dtype_policy("float32")
    mixed(x, training=True)
    assert scopes[-1] is None  # autocast: the BN outputs are bfloat16, not recomputed
    assert getattr(recompute._RECOMPUTE, "registry", None) is None


def _float64_unet_gradients(x, split_on: bool, monkeypatch):
    """Output and gradients of one float64 training forward of a Unet-resnet18 (bn_data's beta randomised)."""
    if not split_on:
        monkeypatch.setattr(torch_ops, "_center_split", lambda inputs: None)
    keras.config.set_floatx("float64")
    try:
        keras.utils.set_random_seed(0)
        model = sm.Unet("resnet18", input_shape=(64, 64, 3), classes=1, encoder_weights=None)
    finally:
        keras.config.set_floatx("float32")
    model.get_layer("bn_data").beta.assign(np.array([0.3, -0.5, 1.2]))
    out = model(x, training=True)
    (out**2).mean().backward()
    monkeypatch.undo()
    return _np(out.detach()), {v.path: _np(v.value.grad) for v in model.trainable_variables}


def test_input_batch_norm_splits_the_first_convolution_with_the_same_gradients(monkeypatch):
    """1.0.1's ResNets normalise the image with BatchNormalization(scale=False) ('bn_data'): the first convolution
    takes conv(x_hat) + conv(beta) instead of conv(x_hat + beta), so its backward pass computes no input
    gradient over the batch. Same output and gradients (float64: to rounding; float32 rounding makes an untrained
    network's gradients move by ~1% either way, as a 1e-6 change of the input does)."""
    import torch

    x = torch.from_numpy(np.random.default_rng(0).random((2, 64, 64, 3)) * 5)
    used = []
    split = torch_ops._center_split
    monkeypatch.setattr(torch_ops, "_center_split", lambda inputs: used.append(split(inputs)) or used[-1])
    out, grads = _float64_unet_gradients(x, True, monkeypatch)
    assert sum(u is not None for u in used) == 1  # bn_data -> (fused zero padding) -> conv0, only there
    ref_out, ref_grads = _float64_unet_gradients(x, False, monkeypatch)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-12)
    assert grads.keys() == ref_grads.keys() and np.abs(grads["bn_data/beta"]).max() > 1e-4
    for name, ref in ref_grads.items():
        assert np.abs(grads[name] - ref).max() <= 1e-10 * (np.abs(ref).max() + 1e-12), name


def test_input_batch_norm_split_only_for_an_unchanged_output_with_autograd():
    import torch

    bn = keras.layers.BatchNormalization(scale=False)
    x = torch.rand(2, 8, 8, 3)
    y = bn(x, training=True)
    assert torch_ops._center_split(y) is not None
    with torch.no_grad():
        assert torch_ops._center_split(y) is None  # nothing to save a gradient for
    y.add_(1.0)  # changed in place (an in-place ReLU, say): no longer x_hat + beta
    assert torch_ops._center_split(y) is None
    assert torch_ops._center_split(bn(x.requires_grad_(), training=True)) is None  # x needs its gradient
    scaled = keras.layers.BatchNormalization()
    assert torch_ops._center_split(scaled(torch.rand(2, 8, 8, 3), training=True)) is None


@pytest.mark.parametrize("scale", [True, False])  # False: 1.0.1's bn_data (center only, the split path)
@pytest.mark.parametrize("channels", [3, 4, 8])  # 2-7 channels without input gradient: statistics from an NCHW copy
def test_batch_norm_of_an_image_matches_keras(channels, scale, keras_kernels):
    import torch

    x = torch.from_numpy((np.random.default_rng(3).random((4, 16, 12, channels)) * 255).astype("float32"))
    bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=2e-5, scale=scale)
    bn.build(x.shape)
    initial = [w.numpy() + 0.5 for w in bn.weights]

    def run():
        for w, v in zip(bn.weights, initial):
            w.assign(v)
        y = bn(x, training=True)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        grads = [_np(w.value.grad) for w in bn.trainable_weights]
        for w in bn.trainable_weights:
            w.value.grad = None
        return _np(y.detach()), grads, [w.numpy() for w in bn.non_trainable_weights]

    fast, ref = run(), keras_kernels(run)
    np.testing.assert_allclose(fast[0], ref[0], rtol=1e-4, atol=1e-4)
    for g, h in zip(fast[1], ref[1]):
        np.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-3)
    for m, n in zip(fast[2], ref[2]):
        np.testing.assert_allclose(m, n, rtol=1e-5)


def test_small_channel_batch_norm_takes_the_copy_only_without_input_gradient(monkeypatch):
    """The NCHW-copy statistics serve inputs that need no gradient; an input that does keeps torch's kernel."""
    import torch

    x = torch.rand(2, 8, 8, 3).permute(0, 3, 1, 2)  # NCHW view of NHWC memory
    gamma, beta = torch.rand(3, requires_grad=True), torch.rand(3, requires_grad=True)
    y, mean, inv_std = torch_ops._training_batch_norm(x, gamma, beta, 1e-3)
    ref = torch.native_batch_norm(x, gamma, beta, None, None, True, 0.0, 1e-3)
    for a, b in zip((y, mean, inv_std), ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert y.is_contiguous(memory_format=torch.channels_last)
    calls = []
    native = torch.native_batch_norm
    monkeypatch.setattr(torch, "native_batch_norm", lambda t, *a: calls.append(t.is_contiguous()) or native(t, *a))
    torch_ops._training_batch_norm(x, gamma, beta, 1e-3)
    torch_ops._training_batch_norm(x.detach().requires_grad_(), gamma, beta, 1e-3)
    assert calls == [True, False]  # the contiguous copy, then the channels-last input itself
