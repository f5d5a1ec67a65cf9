"""The torch backend's training step for the package's models: a leaner Adam update, gradients released early.

- Keras' torch ``Adam``/``AdamW`` step runs in place and in chunks, instead of making four parameter-sized
  temporaries per step (~400 MB for a Unet-resnet34, which the allocator then keeps);
- the torch trainer's ``train_step`` releases last step's gradients before the forward pass (Keras releases them
  after it, so a parameter-sized set of tensors stays alive through the step's peak).

Both act only for the package's models: their ``train_step``/``test_step`` run with the fast paths on (so do the
optimizer step and the metrics inside them, e.g. ``MeanIoU``'s scatter); any other model's steps are Keras' own.
"""

from __future__ import annotations

import keras
import torch

from . import _context
from ._patches import original

_ADAM_CHUNK = 1 << 22  # elements (16 MB of float32) per in-place Adam pass


def _chunks(sizes: list[int], limit: int) -> list[list[int]]:
    """Consecutive index groups whose sizes add up to at most ``limit`` (a larger single item: alone)."""
    groups, current, total = [], [], 0
    for i, size in enumerate(sizes):
        if current and total + size > limit:
            groups.append(current)
            current, total = [], 0
        current.append(i)
        total += size
    if current:
        groups.append(current)
    return groups


def adam_update(self, grads, variables, learning_rate):
    """Keras' Adam step, in place and in chunks of at most _ADAM_CHUNK elements.

    Keras' own step makes four full-size temporaries per call (m * alpha, sqrt(v), + eps, the quotient):
    4x the parameter memory at once (~400 MB for a Unet-resnet34), which the allocator then keeps. This
    one makes one temporary the size of a chunk; the update is the same to float32 rounding.
    """
    if self.amsgrad or not variables:
        return original("adam_update")(self, grads, variables, learning_rate)
    ops = keras.ops
    params = [v.value for v in variables]
    dtype = params[0].dtype
    step = ops.cast(self.iterations + 1, dtype)
    beta_1_power = ops.power(ops.cast(self.beta_1, dtype), step)
    beta_2_power = ops.power(ops.cast(self.beta_2, dtype), step)
    alpha = ops.cast(learning_rate, dtype) * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
    m_all = [self._momentums[self._get_variable_index(v)].value for v in variables]
    v_all = [self._velocities[self._get_variable_index(v)].value for v in variables]
    for p, m, v in zip(params, m_all, v_all):
        if m.stride() != p.stride():  # the moments in the parameter's memory layout (see torch_ops.torch_weight)
            m.data = torch.empty_like(p).copy_(m)
            v.data = torch.empty_like(p).copy_(v)
    for chunk in _chunks([p.numel() for p in params], _ADAM_CHUNK):
        p, g = [params[i] for i in chunk], [grads[i] for i in chunk]
        m, v = [m_all[i] for i in chunk], [v_all[i] for i in chunk]
        torch._foreach_mul_(m, self.beta_1)
        torch._foreach_add_(m, g, alpha=1 - self.beta_1)
        torch._foreach_mul_(v, self.beta_2)
        torch._foreach_addcmul_(v, g, g, value=1 - self.beta_2)
        denominator = torch._foreach_sqrt(v)
        torch._foreach_add_(denominator, self.epsilon)
        torch._foreach_div_(denominator, alpha)
        torch._foreach_addcdiv_(p, m, denominator, value=-1.0)  # p -= alpha * m / (sqrt(v) + eps)
        del denominator


def train_step(self, data):
    """Keras' train step; for the package's models with the fast paths on and the previous step's gradients
    released before the forward pass.

    Keras calls ``zero_grad()`` after the forward pass, so last step's gradients (the size of the parameters,
    ~100 MB for a Unet-resnet34) stay alive through it, at the peak of the step's memory.
    """
    keras_step = original("train_step")
    if not _context.wants(self) or _COMPILING():
        return keras_step(self, data)
    _context.COUNTERS["train_step"] += 1
    self.zero_grad()
    return _context.run_in_mode(True, keras_step, self, data)


def test_step(self, data):
    """Keras' test step; for the package's models with the fast paths on (their metrics included)."""
    keras_step = original("test_step")
    if not _context.wants(self) or _COMPILING():
        return keras_step(self, data)
    return _context.run_in_mode(True, keras_step, self, data)


_COMPILING = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
TARGET_PATHS = {
    "adam_update": ("keras.src.backend.torch.optimizers.torch_adam", "Adam", "_parallel_update_step"),
    "train_step": ("keras.src.backend.torch.trainer", "TorchTrainer", "train_step"),
    "test_step": ("keras.src.backend.torch.trainer", "TorchTrainer", "test_step"),
}
REPLACEMENTS = {"adam_update": adam_update}  # scoped: runs inside a package model's step
ENTRIES = {"train_step": train_step, "test_step": test_step}  # decide themselves whose step it is
