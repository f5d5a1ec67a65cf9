"""Population statistics for BatchNormalization: re-estimated from data after training ("precise BN").

Keras' BatchNormalization normalises with the batch's statistics while training and keeps moving averages
(``momentum`` 0.99) for inference. After a few hundred steps from scratch those averages still hold a large
share of their initial values (mean 0, variance 1: 0.99^114 = 32% after 114 steps) and lag behind the weights,
so a model that is good in training mode predicts badly in inference mode: in ``evaluate``, ``predict`` and
every export. :func:`recalibrate_batchnorm` replaces the moving statistics of every trainable
BatchNormalization layer by the exact population statistics of its inputs over a few batches, computed in one
forward pass per batch in which every recalibrated layer normalises with its batch statistics (as in training)
and every other layer runs in inference mode (no dropout). :class:`BatchNormRecalibration` does it inside
``fit``: before each validation and at the end of every epoch in which the model was trained.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = ["recalibrate_batchnorm", "BatchNormRecalibration", "DEFAULT_STEPS"]

# Batches used by default: measured on the demo and CamVid (docs/camvid.md, "Batch-norm statistics"): the
# validation mIoU stops moving at 5-10 batches of 8; each batch costs a forward pass (~1/3 of a training step).
DEFAULT_STEPS = 10

_PROBES: weakref.WeakKeyDictionary[keras.Model, tuple] = weakref.WeakKeyDictionary()


class _BatchStatistics(keras.layers.Layer):
    """Stands in for one BatchNormalization layer in the probe model: normalises with the batch's statistics
    (as the layer does in training) and also returns them, shaped (1, 3, channels): mean, biased variance and
    the number of values each channel's statistics were taken over. It owns no variables: it reads the layer's
    ``gamma`` and ``beta``."""

    def __init__(self, layer: keras.layers.BatchNormalization, **kwargs):
        super().__init__(dtype=layer.dtype_policy, name=f"{layer.name}_statistics", **kwargs)
        self.layer = layer

    def call(self, inputs):
        layer = self.layer
        rank = len(inputs.shape)
        axis = layer.axis if layer.axis >= 0 else rank + layer.axis
        reduced = [i for i in range(rank) if i != axis]
        x = ops.cast(inputs, "float32")
        mean, variance = ops.moments(x, axes=reduced)
        shape = ops.shape(x)
        count = 1
        for i in reduced:
            count = count * shape[i]
        count = ops.cast(count, "float32")
        broadcast = [1] * rank
        broadcast[axis] = -1
        scale = ops.rsqrt(variance + layer.epsilon)
        if layer.scale:
            scale = scale * ops.cast(layer.gamma, "float32")
        offset = -mean * scale
        if layer.center:
            offset = offset + ops.cast(layer.beta, "float32")
        outputs = x * ops.reshape(scale, broadcast) + ops.reshape(offset, broadcast)
        stats = ops.stack([mean, variance, ops.ones_like(mean) * count])[None]
        return ops.cast(outputs, inputs.dtype), stats

    def compute_output_spec(self, inputs):
        channels = inputs.shape[self.layer.axis]
        return (
            keras.KerasTensor(inputs.shape, dtype=inputs.dtype),
            keras.KerasTensor((1, 3, channels), dtype="float32"),
        )


def _recalibrated_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The BatchNormalization layers that train with batch statistics: trainable ones (Keras 3 runs a frozen
    BatchNormalization in inference mode even while training, so its statistics stay as they are)."""
    return [
        layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(_all_layers(layer))
    return out


def _probe(model: keras.Model) -> tuple[keras.Model, list[keras.layers.BatchNormalization]]:
    """A model sharing ``model``'s layers whose outputs are the batch statistics of every recalibrated layer's
    input (one output per call of such a layer); cached per model."""
    targets = {id(layer) for layer in _recalibrated_layers(model)}
    cached = _PROBES.get(model)
    if cached is not None and cached[0] == targets:  # rebuilt when layers were frozen or unfrozen since
        return cached[1], cached[2]
    stats, owners = [], []

    def call_function(layer, *args, **kwargs):
        if isinstance(layer, keras.Model) and any(id(inner) in targets for inner in _all_layers(layer)):
            # a nested model is traced inline, so that its statistics are connected to the outer inputs
            return _trace(layer, args[0]).output
        if id(layer) not in targets:
            return layer(*args, **kwargs)
        outputs, batch_stats = _BatchStatistics(layer)(args[0])
        stats.append(batch_stats)
        owners.append(layer)
        return outputs

    def _trace(graph: keras.Model, inputs=None) -> keras.Model:
        return keras.models.clone_model(
            _functional(graph), input_tensors=inputs, clone_function=lambda layer: layer, call_function=call_function
        )

    traced = _trace(model)
    probe = keras.Model(traced.input, stats, name=f"{model.name}_batchnorm_probe") if stats else None
    _PROBES[model] = (targets, probe, owners)
    return probe, owners


def _functional(model: keras.Model) -> keras.Model:
    """``model`` as a Functional model (a Sequential one rewired; its layers are shared)."""
    if isinstance(model, keras.Sequential):
        if not model.built or not getattr(model, "outputs", None):
            raise ValueError("recalibrate_batchnorm: build the Sequential model first (give it an Input)")
        return keras.Model(model.inputs, model.outputs)
    if isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth"):
        return model
    raise ValueError(
        f"recalibrate_batchnorm needs a Functional or Sequential Keras model, got "
        f"{type(model).__name__} (a subclassed model's layers cannot be traced)"
    )


def _batches(data: Any, steps: int) -> Iterable:
    """Up to ``steps`` model inputs from ``data``: a PyDataset or anything indexable with a length, or any
    iterable of batches; a batch ``(x, y, ...)`` gives ``x``."""
    if isinstance(data, np.ndarray):
        raise ValueError(
            "recalibrate_batchnorm takes batches (a PyDataset, a list of arrays, a generator or a "
            "tf.data.Dataset), not one array: pass e.g. np.array_split(x, len(x) // 8)"
        )
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (list, tuple)):
        source = (data[i] for i in range(min(steps, len(data))))
    else:
        source = iter(data)
    for i, batch in enumerate(source):
        if i >= steps:
            break
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def recalibrate_batchnorm(model: keras.Model, data: Any, steps: int = DEFAULT_STEPS, verbose: int = 0) -> int:
    """Set the moving mean and variance of every trainable BatchNormalization layer of ``model`` to the
    population statistics of its inputs over ``steps`` batches of ``data``; returns the batches used.

    ``data`` gives model inputs, or ``(x, y[, weights])`` tuples: a ``keras.utils.PyDataset``, a list of arrays,
    a generator or a ``tf.data.Dataset``; use training images without augmentation for the closest match to
    inference. The statistics are exact averages over all batches (weighted by the number of values: pooled
    mean and variance, as NumPy computes them over the concatenated inputs), taken while every recalibrated layer
    normalises with its batch statistics and the rest of the model runs in inference mode; nothing else
    changes. Frozen BatchNormalization layers (``trainable=False``, which Keras runs in inference mode) keep
    their statistics. Works on the TensorFlow, JAX and torch backends, with mixed precision (statistics in
    float32).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    probe, owners = _probe(model)
    if probe is None:
        return 0
    sums: list[np.ndarray | None] = [None] * len(owners)
    used = 0
    for x in _batches(data, steps):
        outputs = probe.predict_on_batch(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for k, out in enumerate(outputs):
            # one (mean, variance, count) per replica that ran a part of the batch (tf.distribute concatenates
            # them; one device or JAX's DataParallel give one): pooled like the batches
            for mean, variance, count in np.asarray(out, "float64"):
                # running sums of n, n*mean and n*(variance + mean^2): pooled statistics without cancellation
                # issues beyond float64's
                row = np.stack([count, count * mean, count * (variance + mean * mean)])
                sums[k] = row if sums[k] is None else sums[k] + row
        used += 1
        if verbose:
            print(f"\rbatch-norm statistics: {used}/{steps} batches", end="", flush=True)
    if verbose:
        print()
    if not used:
        raise ValueError("recalibrate_batchnorm: the data gave no batch")
    pooled: dict[int, np.ndarray] = {}
    for layer, row in zip(owners, sums):  # a layer called more than once pools over all its calls
        pooled[id(layer)] = row if id(layer) not in pooled else pooled[id(layer)] + row
    for layer in {id(layer): layer for layer in owners}.values():
        n, total, squares = pooled[id(layer)]
        mean = total / n
        variance = np.maximum(squares / n - mean * mean, 0.0)
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    return used


class BatchNormRecalibration(keras.callbacks.Callback):
    """Recalibrates the model's BatchNormalization statistics (:func:`recalibrate_batchnorm`) during ``fit``:
    before each validation and at the end of each epoch (and of training), whenever the model was trained since
    the last time. Put it first in ``callbacks`` so that checkpoints written by later callbacks get the
    recalibrated statistics.

    ``data`` is what :func:`recalibrate_batchnorm` takes, e.g. the training images without augmentation.
    """

    def __init__(self, data: Any, steps: int = DEFAULT_STEPS, verbose: int = 0):
        super().__init__()
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        self.data = data
        self.steps = steps
        self.verbose = verbose
        self._trained = False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._trained = True

    def _recalibrate(self) -> None:
        if self._trained:
            recalibrate_batchnorm(self.model, self.data, self.steps, verbose=self.verbose)
            self._trained = False

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._recalibrate()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._recalibrate()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._recalibrate()
