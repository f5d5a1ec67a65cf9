"""TensorFlow's fused batch normalisation for the package's models (see ``segmentation_models.accel``).

Keras 3 runs ``BatchNormalization`` on TensorFlow as separate ops: ``tf.nn.moments`` (a mean, a squared
difference and a second mean over the batch) and ``tf.nn.batch_normalization`` (subtract, multiply, add), each a
pass over the activation, and as many again for their gradients. TensorFlow's ``FusedBatchNormV3`` kernel (oneDNN
on CPU, cuDNN on GPU) does the forward pass in one op and the backward pass in one more. Keras 2 used it for every
4D batch normalisation, so segmentation_models 1.0.1 trained with it, and lost it with Keras 3.

Inside the package's models (traced while their graph runs: see :func:`run_through_graph`),
``keras.layers.BatchNormalization.call`` runs a 4D channels-last input through ``FusedBatchNormV3``, with the same
mathematics as Keras': the batch's biased variance normalises the batch in training and goes into the moving
variance (the kernel's own batch variance carries Bessel's correction, which is taken out), the moving statistics
get Keras' update (``momentum``, through the variables' ``assign``, so stateless calls record them too), and
inference normalises with the moving statistics. Half-precision inputs are upcast to float32 first, as Keras does.

Measured on a 2-core CPU (Intel Xeon, TensorFlow 2.21), Unet at 256x256, batch 8, interleaved: a training step
1.15x as fast on resnet34 and 1.23x on efficientnetb0, inference 1.04-1.06x (docs/benchmarks.md).

Everything else goes to Keras' own implementation: masks, renorm, synchronized batch normalisation, a symbolic
``training`` flag, inputs that are not 4D with the channels last, float64, an epsilon below 1.001e-5 (cuDNN's
minimum; 1.0.1's SE-ResNets use 1e-5), and functions compiled by XLA (see :func:`_xla_compilation_check`). Saved
models are plain Keras models: nothing here is serialized. Any other model's batch normalisation is Keras' own.
This is backend code beside Keras', like ``torch_ops``: model, loss and metric code stays ``keras.ops`` only.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from . import _context
from ._patches import original

MIN_EPSILON = 1.001e-5  # cuDNN's CUDNN_BN_MIN_EPSILON (with margin, as Keras 2's fused path)
_FUSED_DTYPES = ("float32", "float16", "bfloat16")


def _xla_compilation_check():
    """A function telling whether TensorFlow traces for XLA right now (Keras' ``jit_compile=True``, the default on GPU).

    XLA lowers FusedBatchNormV3 to its own batch normalisation, whose variance is E[x^2] - E[x]^2 (measured: twice
    Keras' rounding error on the updates), while it fuses Keras' separate ops by itself: there the fused kernel
    gains nothing, so Keras' path stays. Resolved once, at import: the check runs on every batch-norm call.
    """
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - depends on the TensorFlow version
        return lambda: False
    return lambda: bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))


def _fusable(layer, inputs, training, mask, in_xla_compilation) -> bool:
    """Whether this call can take FusedBatchNormV3 with Keras' exact semantics."""
    return (
        mask is None
        and not layer.renorm
        and not getattr(layer, "synchronized", False)
        and isinstance(training, (bool, type(None)))
        and len(inputs.shape) == 4
        and layer.axis in (3, -1)
        and layer.epsilon >= MIN_EPSILON
        and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
        and not in_xla_compilation()
    )


_IN_XLA_COMPILATION = _xla_compilation_check()


def bn_call(self, inputs, training=None, mask=None):
    """Keras' BatchNormalization call as one FusedBatchNormV3 (traced inside a package model)."""
    if not _fusable(self, inputs, training, mask, _IN_XLA_COMPILATION):
        return original("bn_call")(self, inputs, training=training, mask=mask)
    _context.COUNTERS["fused_batch_norm"] += 1
    x = ops.cast(inputs, "float32")
    channels = x.shape[-1]
    gamma = ops.cast(self.gamma, "float32") if self.scale else tf.ones((channels,), tf.float32)
    beta = ops.cast(self.beta, "float32") if self.center else tf.zeros((channels,), tf.float32)
    if training and self.trainable:
        # made here, not at import: an eager tensor at import would start TensorFlow's runtime before a
        # MultiWorkerMirroredStrategy can configure its collectives
        empty = tf.zeros((0,), tf.float32)
        y, batch_mean, batch_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=gamma,
            offset=beta,
            mean=empty,
            variance=empty,
            epsilon=self.epsilon,
            exponential_avg_factor=1.0,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the batch variance times n / max(n - 1, 1); Keras' moments give the biased one.
        count = ops.cast(ops.size(x) // channels, "float32")
        batch_variance = batch_variance * (ops.maximum(count - 1.0, 1.0) / count)
        m = self.momentum
        self.moving_mean.assign(ops.cast(self.moving_mean, "float32") * m + batch_mean * (1.0 - m))
        self.moving_variance.assign(ops.cast(self.moving_variance, "float32") * m + batch_variance * (1.0 - m))
    else:
        y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=gamma,
            offset=beta,
            mean=ops.cast(self.moving_mean, "float32"),
            variance=ops.cast(self.moving_variance, "float32"),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=False,
        )
    return ops.cast(y, self.compute_dtype)


def run_through_graph(self, inputs, operation_fn=lambda op: op, call_fn=None):
    """Keras' own graph execution; a package model's with the fused path on (while tf.function traces it)."""
    keras_run = original("run_through_graph")
    if not _context.wants(self):
        return keras_run(self, inputs, operation_fn=operation_fn, call_fn=call_fn)
    return _context.run_in_mode(True, keras_run, self, inputs, operation_fn=operation_fn, call_fn=call_fn)


TARGET_PATHS = {
    "bn_call": ("keras.src.layers.normalization.batch_normalization", "BatchNormalization", "call"),
    "run_through_graph": ("keras.src.ops.function", "Function", "_run_through_graph"),
}
REPLACEMENTS = {"bn_call": bn_call}
ENTRIES = {"run_through_graph": run_through_graph}
